"""The task every sweep runs: train and evaluate one configuration, log it, return the objective.

Order matters for "nothing is lost": the model and data are built (and so validated) before a
tracking run exists; the run is closed with its true status in a ``finally`` even when the job
fails; the checkpoint and metrics.jsonl in the job's output dir survive any tracker outage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import subprocess
import time
from pathlib import Path

import hydra
import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from data import BatchAugment, load_dataset
from sweep.experiment_notes import DESCRIPTION
from sweep.mlflow_parent import job_parent_run_id
from sweep.run_name import run_name
from sweep.termination import sigterm_raises
from sweep.validate import check_config
from tracking import MlflowTracker, NullTracker, Tracker, TrackingError, resolve_tracking_uri
from training import Trainer, TrainerConfig
from training.device import resolve_device
from training.distributed import init_distributed

log = logging.getLogger("sweep")
RUN_ID_FILE = "mlflow_run_id"

# Config keys that do not change what is trained: excluded from the checkpoint fingerprint,
# so e.g. moving a job to a tracking server does not invalidate its checkpoint.
_NOT_TRAINING = ("tracking", "optuna", "run_name", "sweep_name", "objective")
_NOT_TRAINING_TRAINER = ("progress", "resume", "checkpoint", "eval_batch_size", "device",
                         "devices", "dist_timeout_s")


def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as flat MLflow params: model.*, data.*, trainer.*, seed, ..."""
    out: dict[str, str] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "_target_":
                    walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = json.dumps(node) if isinstance(node, list) else str(node)

    container = OmegaConf.to_container(cfg, resolve=True)
    for key in ("model", "data", "trainer", "seed", "objective", "sweep_name"):
        walk({key: container[key]}, "")
    if cfg.optuna.trial is not None:
        out["optuna.trial"] = str(cfg.optuna.trial)
    return out


def fingerprint(cfg: DictConfig) -> str:
    """Hash of the configuration that determines the training trajectory."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_TRAINING:
        c.pop(key, None)
    for key in _NOT_TRAINING_TRAINER:
        c["trainer"].pop(key, None)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def _tags(cfg: DictConfig, out_dir: Path) -> dict[str, str]:
    tags = {
        "model": str(cfg.model.name),
        "sweep_name": str(cfg.sweep_name),
        "git_commit": _git_commit(),
        "host": socket.gethostname(),
        "output_dir": str(out_dir.resolve()),
        "mlflow.note.content": f"python sweep/run.py {' '.join(HydraConfig.get().overrides.task)}",
    }
    for env, tag in (("SLURM_JOB_ID", "slurm_job_id"), ("SLURM_ARRAY_JOB_ID", "slurm_array_job_id"),
                     ("SLURM_ARRAY_TASK_ID", "slurm_array_task_id")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    if cfg.optuna.trial is not None:
        tags["optuna_trial"] = str(cfg.optuna.trial)
    return tags


def build_tracker(cfg: DictConfig) -> Tracker:
    t = cfg.tracking
    if not t.enabled:
        return NullTracker()
    uri = resolve_tracking_uri(t.uri, HydraConfig.get().runtime.cwd)
    return MlflowTracker(uri, t.experiment, retries=int(t.retries),
                         retry_backoff_s=float(t.retry_backoff_s),
                         description=t.description or DESCRIPTION)


def objective_value(cfg: DictConfig, final: dict[str, float]) -> float | list[float]:
    names = list(cfg.objective) if OmegaConf.is_list(cfg.objective) else [cfg.objective]
    missing = [n for n in names if n not in final]
    if missing:
        raise ValueError(f"objective={missing} is not a final metric; valid: {sorted(final)}")
    values = [float(final[n]) for n in names]
    return values if OmegaConf.is_list(cfg.objective) else values[0]


def run_task(cfg: DictConfig) -> float | list[float]:
    """Train one configuration; returns ``cfg.objective`` of the final epoch. SIGTERM while it
    runs closes its tracking run as KILLED (sweep/termination.py)."""
    with sigterm_raises():
        return _run_task(cfg)


def _run_task(cfg: DictConfig) -> float | list[float]:
    t_start = time.perf_counter()
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    check_config(cfg)
    # Build (and so validate) everything before a tracking run exists.
    torch.manual_seed(int(cfg.seed))  # the model's initial weights
    model = hydra.utils.instantiate(cfg.model)
    d = cfg.data
    data = load_dataset(d.name, root=d.root, image_size=d.image_size,
                        val_fraction=d.val_fraction, seed=cfg.seed, cache_dir=d.cache_dir,
                        max_train=d.get("max_train"), max_test=d.get("max_test"),
                        num_classes=d.num_classes, channels=d.channels)
    trainer_cfg = TrainerConfig(**OmegaConf.to_container(cfg.trainer, resolve=True))
    augment = BatchAugment(**OmegaConf.to_container(d.augment, resolve=True),
                           label_smoothing=trainer_cfg.label_smoothing,
                           num_classes=data.num_classes)
    # data-parallel: join the job's processes; only rank 0 tracks, and all use its output dir
    dist_env = init_distributed(resolve_device(trainer_cfg.device), trainer_cfg.dist_timeout_s,
                                trainer_cfg.devices)
    out_dir = Path(dist_env.broadcast(str(out_dir)))
    tracker = build_tracker(cfg) if dist_env.is_main else NullTracker()
    callbacks = []
    reporter = None
    if cfg.optuna.trial is not None:  # an Optuna trial: report each epoch, maybe get pruned
        from sweep.trial_reporter import TrialReporter

        reporter = TrialReporter.from_config(cfg)
    if reporter is not None:
        objective = str(cfg.objective)
        callbacks.append(lambda epoch, m: reporter.report(m[objective], epoch))
    trainer = Trainer(model, data, trainer_cfg, augment, tracker, out_dir, seed=int(cfg.seed),
                      fingerprint=fingerprint(cfg), callbacks=callbacks, dist=dist_env)

    # A job restarted before its first checkpoint reuses the run it had already created.
    run_id_file = out_dir / RUN_ID_FILE
    resume_id = trainer.resumed_run_id
    if resume_id is None and trainer_cfg.resume and run_id_file.exists():
        resume_id = run_id_file.read_text().strip() or None
    tracker.start(run_name=cfg.run_name or run_name(cfg), params=flat_params(cfg),
                  tags=_tags(cfg, out_dir), resume_run_id=resume_id,
                  parent_run_id=job_parent_run_id(cfg))
    if tracker.run_id:
        run_id_file.write_text(tracker.run_id)
    status, tags = "FAILED", {}
    try:
        final = trainer.fit()
        value = objective_value(cfg, final)
        bad = [v for v in (value if isinstance(value, list) else [value]) if not math.isfinite(v)]
        if bad:
            raise ValueError(f"objective {cfg.objective} is not finite: {value}")
        job_time = time.perf_counter() - t_start
        tracker.log_metrics({"final_test_acc": final["test_acc"],
                             "best_test_acc": final["best_test_acc"],
                             "num_params": final["num_params"],
                             "job_time_s": job_time,
                             "overhead_s": job_time - final["compute_time_s"]},
                            step=trainer.epoch)
        hydra_dir = out_dir / ".hydra"
        if hydra_dir.exists():
            tracker.log_artifact(str(hydra_dir), "config")
        if cfg.tracking.log_checkpoint and trainer.ckpt_path.exists():
            tracker.log_artifact(str(trainer.ckpt_path), "checkpoint")
        status = "FINISHED"
        return value
    except optuna.TrialPruned:
        status, tags = "KILLED", {"optuna_state": "PRUNED"}
        raise
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (JobTerminated)
        status, tags = "KILLED", {"error": f"interrupted: {err}" if str(err) else "interrupted"}
        raise
    except BaseException as err:
        tags = {"error": f"{type(err).__name__}: {err}"[:5000]}
        if isinstance(err, TrackingError):
            log.error("the tracking server is unreachable (%s); training results are safe in %s "
                      "(checkpoint.pt, metrics.jsonl): rerun the same command once it is back "
                      "to resume and log the missed epochs", cfg.tracking.uri, out_dir)
        raise
    finally:
        _close(tracker, status, tags)


def _close(tracker: Tracker, status: str, tags: dict[str, str]) -> None:
    """Set the final status; a tracker failure here is reported, never allowed to mask the
    job's own error or lose its result (the checkpoint and metrics.jsonl are on disk)."""
    try:
        if tags:
            tracker.set_tags(tags)
        tracker.finish(status)
    except Exception as err:  # noqa: BLE001
        log.error("could not set the tracking run's status to %s: %s", status, err)
