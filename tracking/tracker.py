"""The tracker interface the training loop talks to (never to MLflow directly)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch


class Tracker(Protocol):
    """Where a run's params, per-epoch metrics, tags and artifacts go.

    Statuses follow MLflow's: RUNNING, FINISHED, FAILED, KILLED.
    """

    run_id: str | None

    def start(
        self,
        *,
        run_name: str,
        params: dict[str, str],
        tags: dict[str, str],
        resume_run_id: str | None = None,
        parent_run_id: str | None = None,
        match_tags: Sequence[str] = (),
    ) -> str | None:
        """Create (or reopen, when ``resume_run_id`` is given) the run; returns its id. A
        reopened run must already carry each tag in ``match_tags`` with the value in ``tags``
        (e.g. its config fingerprint), else nothing is logged to it and an error is raised."""
        ...

    def log_metrics(self, metrics: dict[str, float], step: int,
                    model_id: str | None = None) -> None:
        """All metrics of one step in one call (with ``model_id``: also that logged model's)."""
        ...

    def last_step(self, key: str) -> int | None:
        """The largest step logged for ``key`` (None if none): lets a resumed job re-log
        exactly the epochs the tracker missed."""
        ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None: ...

    def finish(self, status: str) -> None:
        """Set the terminal status: FINISHED, FAILED or KILLED (after ``close``)."""
        ...

    # The job's records besides the training loop's (sweep/task.py logs them)
    def log_dataset(self, name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    source: str | None = None) -> None:
        """The dataset as run inputs: ``splits`` maps train / val / test to (images, labels)."""
        ...

    def log_model(self, model: torch.nn.Module, example: torch.Tensor, step: int,
                  metadata: Mapping[str, Any]) -> Any:
        """The trained model (``example``: normalised input images); its info, or None."""
        ...

    def close(self) -> None:
        """Release what the run holds open (a sampling thread); idempotent."""
        ...


class NullTracker:
    """tracking.enabled=false: records nothing."""

    run_id: str | None = None

    def start(self, **_: object) -> str | None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int,
                    model_id: str | None = None) -> None:
        pass

    def last_step(self, key: str) -> int | None:
        return None

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_artifact(self, path: str, artifact_path: str | None = None) -> None:
        pass

    def finish(self, status: str) -> None:
        pass

    def log_dataset(self, name: str, splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
                    source: str | None = None) -> None:
        pass

    def log_model(self, model: torch.nn.Module, example: torch.Tensor, step: int,
                  metadata: Mapping[str, Any]) -> None:
        return None

    def close(self) -> None:
        pass
