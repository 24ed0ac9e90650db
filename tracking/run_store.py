"""The read side of a tracking store, for analysis/ and benchmarks/: experiments, runs as plain
records, metric histories and artifacts of finished runs (and logging result files to a run).

Every call goes through a retried TrackingClient (tracking/client.py). Analysis code never sees
an MLflow object: runs come back as :class:`RunRecord`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tracking.client import open_client
from tracking.retry import DEFAULT_BACKOFF_S, DEFAULT_RETRIES

# a download's progress bar would fill the analysis scripts' output
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@dataclass(frozen=True)
class RunRecord:
    """One run: times in ms since the epoch (None while unset); ``metrics`` holds each
    metric's latest value."""

    run_id: str
    run_name: str
    status: str
    start_time: int | None
    end_time: int | None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class RunStore:
    """Runs, metrics and artifacts of the store at ``uri``."""

    def __init__(self, uri: str, retries: int = DEFAULT_RETRIES,
                 backoff_s: float = DEFAULT_BACKOFF_S) -> None:
        self.uri = uri
        self.client = open_client(uri, retries, backoff_s)

    def experiment_id(self, name: str) -> str | None:
        """Id of experiment ``name``; None when there is no such experiment."""
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else exp.experiment_id

    def experiment_names(self) -> list[str]:
        """Names of the store's (active) experiments, sorted."""
        return sorted(e.name for e in self.client.search_experiments())

    def runs(self, experiment_id: str, filter_string: str = "") -> list[RunRecord]:
        """Every active run of the experiment matching ``filter_string`` (MLflow's search
        syntax, e.g. ``tags.sweep = 'true'``), all result pages."""
        out: list[RunRecord] = []
        token = None
        while True:
            page = self.client.call("search runs", lambda c, t=token: c.search_runs(
                [experiment_id], filter_string, max_results=1000, page_token=t))
            out.extend(RunRecord(
                run_id=r.info.run_id, run_name=r.info.run_name, status=r.info.status,
                start_time=r.info.start_time, end_time=r.info.end_time,
                params=dict(r.data.params), metrics=dict(r.data.metrics),
                tags=dict(r.data.tags)) for r in page)
            token = page.token
            if not token:
                return out

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """Every logged ``(step, value)`` of metric ``key``, in logging order."""
        return [(m.step, m.value) for m in self.client.get_metric_history(run_id, key)]

    def download_artifact(self, run_id: str, path: str, dest: str | Path) -> Path | None:
        """Download the run's artifact ``path`` (e.g. ``checkpoint/checkpoint.pt``) into
        ``dest``; None when the run has no such artifact."""
        folder, _, _ = path.rpartition("/")
        if not any(a.path == path for a in self.client.list_artifacts(run_id, folder or None)):
            return None
        return Path(self.client.download_artifacts(run_id, path, str(dest)))

    def log_artifacts(self, run_id: str, files: list[Path], artifact_path: str) -> None:
        """Attach ``files`` to the run under ``artifact_path``."""
        for path in files:
            self.client.log_artifact(run_id, str(path), artifact_path)
