"""The task every sweep runs: train and evaluate one configuration, log it, return the objective.

Config to objects: each ``build_*`` function passes one config node's keys as keyword
arguments to one constructor (the model's constructor is its ``_target_``, so a config group
can pick another class); the few keys that are not constructor arguments (``data.augment``,
``tracking.enabled``, ``tracking.log_checkpoint``) are read by name where they are used.

Order matters for "nothing is lost": the model and data are built (and so validated) before a
tracking run exists; the run is closed with its true status in a ``finally`` even when the job
fails; the checkpoint and metrics.jsonl in the job's output dir survive any tracker outage.

What a job's run holds besides the training loop's metrics (README "What MLflow records"):
MLflow's source tags (``sweep/run.py``, git commit), system metrics while it runs (stopped
before the run is closed, also on failure), the dataset's splits as run inputs (right after
the run starts), and at the end the model as an ``mlflow.pytorch`` model (optionally
registered) to which the final metrics are linked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from data import DATASETS, BatchAugment, ImageData, load_dataset, normalize
from models import run_name
from sweep.dir_lock import JOB_LOCK, DirInUse, holding
from sweep.epoch_reporter import Pruned, epoch_reporter
from sweep.experiment_notes import DESCRIPTION
from sweep.mlflow_parent import job_parent_run_id
from sweep.termination import interrupted_line, sigterm_raises
from sweep.validate import check_config
from tracking import MlflowTracker, NullTracker, Tracker, TrackingError, resolve_tracking_uri
from tracking.logged_model import ModelExportError
from tracking.mlflow_tracker import RunMismatch
from tracking.secrets import redact
from tracking.source_tags import GIT_COMMIT, source_tags
from training import Trainer, TrainerConfig
from training.device import resolve_device
from training.distributed import DistEnv, init_distributed

log = logging.getLogger("sweep")
RUN_ID_FILE = "mlflow_run_id"
ENTRY_POINT = Path(__file__).with_name("run.py")  # mlflow.source.name: sweep/run.py
# tag of every job's run: fingerprint(cfg); a run is reopened only by a job with the same one
FINGERPRINT_TAG = "config_fingerprint"

# Config keys that do not change what is trained: excluded from the checkpoint fingerprint,
# so e.g. moving a job to a tracking server does not invalidate its checkpoint.
_NOT_TRAINING = ("tracking", "optuna", "run_name", "sweep_name", "objective")
_NOT_TRAINING_TRAINER = ("progress", "resume", "checkpoint", "eval_batch_size", "device",
                         "devices", "dist_timeout_s")


def run_task(cfg: DictConfig) -> float | list[float]:
    """Train one configuration; returns ``cfg.objective`` of the final epoch. SIGTERM while it
    runs closes its tracking run as KILLED (sweep/termination.py)."""
    with sigterm_raises(), ExitStack() as owned:
        return _run_task(cfg, owned)


def _run_task(cfg: DictConfig, owned: ExitStack) -> float | list[float]:
    t_start = time.perf_counter()
    # debug milestones (hydra.verbose=sweep): benchmarks/job_start.py times a job's start by them
    log.debug("task started")
    check_config(cfg)
    # Build (and so validate) everything before a tracking run exists.
    model = build_model(cfg)
    trainer_cfg = build_trainer_config(cfg)
    data, augment = build_data(cfg, trainer_cfg.label_smoothing)
    log.debug("config checked, model and data built")
    # data-parallel: join the job's processes; only rank 0 tracks, and all use its output dir
    dist_env = init_distributed(resolve_device(trainer_cfg.device), trainer_cfg.dist_timeout_s,
                                trainer_cfg.devices)
    out_dir = Path(dist_env.broadcast(str(HydraConfig.get().runtime.output_dir)))
    _own_dir(out_dir, dist_env, owned)  # before the checkpoint is read
    tracker = build_tracker(cfg) if dist_env.is_main else NullTracker()
    owned.callback(tracker.close)  # its sampling thread ends with the job, however it ends
    log.debug("tracker opened")
    reporter = epoch_reporter(cfg)  # None in a grid job, which so never imports optuna
    callbacks = [] if reporter is None else [
        lambda epoch, metrics: reporter.report(metrics[str(cfg.objective)], epoch)]
    trainer = Trainer(model, data, trainer_cfg, augment, tracker, out_dir, seed=int(cfg.seed),
                      fingerprint=fingerprint(cfg), fingerprint_config=training_config(cfg),
                      callbacks=callbacks, dist=dist_env)

    log.debug("trainer built")
    _start_run(tracker, cfg, trainer, out_dir)
    log.debug("tracking run started")
    status, tags, stopped = "FAILED", {}, None
    try:
        _log_dataset(tracker, cfg, data)
        final = trainer.fit()
        value = objective_value(cfg, final)
        _log_results(tracker, cfg, trainer, data, final, t_start, out_dir)
        status = "FINISHED"
        return value
    except BaseException as err:
        status, tags = _ended_by(err, cfg, out_dir)
        stopped = err if isinstance(err, KeyboardInterrupt) else None
        raise
    finally:
        closed = _close(tracker, status, tags)
        if stopped is not None:  # the command's last line (run.py): how it ended, how to go on
            stopped.add_note(_interrupted(stopped, cfg, tracker, trainer, out_dir, closed))


def _kwargs(node: DictConfig, *drop: str) -> dict[str, Any]:
    """A config node as keyword arguments (plain values, interpolations resolved), less the
    keys ``drop``."""
    kwargs = OmegaConf.to_container(node, resolve=True)
    for key in drop:
        kwargs.pop(key, None)
    return kwargs


def build_model(cfg: DictConfig) -> torch.nn.Module:
    """``cfg.model``'s ``_target_`` (models.Mixer for the zoo) called with the node's other
    keys; the initial weights are drawn from ``seed``."""
    torch.manual_seed(int(cfg.seed))
    return instantiate(cfg.model)


def build_data(cfg: DictConfig, label_smoothing: float) -> tuple[ImageData, BatchAugment]:
    """``load_dataset(**cfg.data)`` (any held-out split drawn from ``data.val_seed``; null:
    ``seed``) and ``BatchAugment(**cfg.data.augment)``, whose soft labels carry
    ``label_smoothing`` (RandAugment maps normalised images back to pixels with the data's
    mean and std)."""
    data = load_dataset(**_kwargs(cfg.data, "augment"), seed=int(cfg.seed))
    augment = BatchAugment(**_kwargs(cfg.data.augment), label_smoothing=label_smoothing,
                           num_classes=data.num_classes, mean=data.mean, std=data.std)
    return data, augment


def build_trainer_config(cfg: DictConfig) -> TrainerConfig:
    """``TrainerConfig(**cfg.trainer)``: raises ValueError naming each bad value."""
    return TrainerConfig(**_kwargs(cfg.trainer))


def build_tracker(cfg: DictConfig) -> Tracker:
    """``MlflowTracker(**cfg.tracking)`` with the URI resolved against the launch directory
    and the default experiment description; a NullTracker when ``tracking.enabled`` is false."""
    kwargs = _kwargs(cfg.tracking, "log_checkpoint")
    if not kwargs.pop("enabled"):
        return NullTracker()
    kwargs["uri"] = resolve_tracking_uri(kwargs["uri"], HydraConfig.get().runtime.cwd)
    kwargs["description"] = kwargs["description"] or DESCRIPTION
    return MlflowTracker(**kwargs)


def _own_dir(out_dir: Path, dist_env: DistEnv, owned: ExitStack) -> None:
    """Rank 0 locks the job's output dir until ``owned`` closes (sweep/dir_lock.py); every
    rank fails with DirInUse when another job holds it."""
    refusal = None
    if dist_env.is_main:
        mode = HydraConfig.get().mode
        sweep = mode is not None and mode.name == "MULTIRUN"
        label = f"the job's output dir {out_dir}" if sweep else f"hydra.run.dir={out_dir}"
        try:
            owned.enter_context(holding(out_dir.resolve() / JOB_LOCK, label, "job",
                                        "hydra.sweep.dir" if sweep else "hydra.run.dir"))
        except DirInUse as err:
            refusal = str(err)
    refusal = dist_env.broadcast(refusal)
    if refusal is not None:
        raise DirInUse(refusal)


def _start_run(tracker: Tracker, cfg: DictConfig, trainer: Trainer, out_dir: Path) -> None:
    """Open the job's tracking run. A resumed job reopens its run: the checkpoint names it, and
    a job restarted before its first checkpoint finds it in ``RUN_ID_FILE``. Only a run of the
    same configuration is reopened (its ``FINGERPRINT_TAG``; runs logged before the tag existed
    with a warning): another one fails the job, nothing logged to either run."""
    run_id_file = out_dir / RUN_ID_FILE
    resume_id, source = trainer.resumed_run_id, f"the checkpoint {trainer.ckpt_path}"
    if resume_id is None and trainer.cfg.resume and run_id_file.exists():
        resume_id, source = run_id_file.read_text().strip() or None, str(run_id_file)
    try:
        tracker.start(run_name=cfg.run_name or run_name(cfg.model, cfg.seed),
                      params=flat_params(cfg), tags=_tags(cfg, out_dir), resume_run_id=resume_id,
                      parent_run_id=job_parent_run_id(cfg), match_tags=(FINGERPRINT_TAG,))
    except RunMismatch as err:
        raise RunMismatch(f"{source} names {err}: not reopened, nothing logged. Use a fresh "
                          "output dir, or set trainer.resume=false to train from scratch into a "
                          "new run here") from None
    if tracker.run_id:
        run_id_file.write_text(tracker.run_id)


def _log_dataset(tracker: Tracker, cfg: DictConfig, data: ImageData) -> None:
    """The dataset's splits (train, val when held out, test) as run inputs, read from
    ``data.root`` (or the dataset's usual folder; digits: none, the code)."""
    if tracker.run_id is None:  # no tracking, or not rank 0
        return
    t0 = time.perf_counter()
    splits = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y),
              "test": (data.test_x, data.test_y)}
    root = cfg.data.get("root") or DATASETS[data.name].default_root
    tracker.log_dataset(data.name, {k: (x.numpy(), y.numpy()) for k, (x, y) in splits.items()
                                    if y is not None},
                        source=str(Path(root).expanduser().resolve()) if root else None)
    log.debug("dataset logged in %.2f s", time.perf_counter() - t0)


def _log_model(tracker: Tracker, cfg: DictConfig, trainer: Trainer, data: ImageData
               ) -> str | None:
    """The trained model (tracking.log_model; tracking/logged_model.py), its input the
    normalised images predict expects; returns its model id (None: not logged). A model
    torch.export cannot trace is not logged: a warning and a ``model_error`` tag, the job goes
    on."""
    t0 = time.perf_counter()
    example = normalize(data.test_x[:2], data.mean, data.std)
    metadata = {"input": "float32 (B, C, H, W) images normalised as in training: "
                         "(pixel / 255 - mean) / std per channel",
                "output": "float32 (B, num_classes) logits",
                "mean": list(data.mean), "std": list(data.std), "classes": list(data.classes),
                "dataset": data.name, "image_size": data.image_size, "model": str(cfg.model.name)}
    try:
        info = tracker.log_model(trainer.model, example, step=trainer.epoch, metadata=metadata)
    except ModelExportError as err:
        log.warning("the model was not logged to MLflow (torch.export failed): %s", err)
        tracker.set_tags({"model_error": redact(str(err))[:5000]})
        return None
    if info is None:
        return None
    log.debug("model logged in %.2f s", time.perf_counter() - t0)
    log.info("MLflow model %s%s", info.uri, f", registered as {info.registered}"
             if info.registered else "")
    return info.model_id


def _log_results(tracker: Tracker, cfg: DictConfig, trainer: Trainer, data: ImageData,
                 final: dict[str, float], t_start: float, out_dir: Path) -> None:
    """The model (``tracking.log_model``), the final metrics (linked to the model; the job's
    time since ``t_start`` includes the model's logging), the job's Hydra config and
    (``tracking.log_checkpoint``) its checkpoint.

    A job rerun after it had finished (a sweep rerun in its own dir: every job resumes from its
    checkpoint, trains nothing) finds its final metrics of this epoch logged: the model and
    those metrics are not logged again (a second model; a job time of the rerun's second);
    the config and checkpoint artifacts are (the same files, replaced)."""
    if (tracker.run_id and trainer.start_epoch == trainer.epoch  # nothing trained here
            and tracker.last_step("final_test_acc") == trainer.epoch):
        log.info("the results of epoch %d were logged by an earlier run of this job: not "
                 "logged again", trainer.epoch)
    else:
        _log_final(tracker, cfg, trainer, data, final, t_start)
    hydra_dir = out_dir / ".hydra"
    if hydra_dir.exists():
        tracker.log_artifact(str(hydra_dir), "config")
    if cfg.tracking.log_checkpoint and trainer.ckpt_path.exists():
        tracker.log_artifact(str(trainer.ckpt_path), "checkpoint")


def _log_final(tracker: Tracker, cfg: DictConfig, trainer: Trainer, data: ImageData,
               final: dict[str, float], t_start: float) -> None:
    """The model and the final metrics, linked to it."""
    model_id = _log_model(tracker, cfg, trainer, data) if tracker.run_id else None
    job_time = time.perf_counter() - t_start
    # n_test: the test set's own sampling error (a binomial sd) is read off it by analysis/
    extra = {"n_test": float(len(data.test_y))}
    if "val_acc" in final:  # the selection metric: the test accuracy is only reported
        extra |= {"final_val_acc": final["val_acc"], "n_val": float(len(data.val_y))}
    tracker.log_metrics({"final_test_acc": final["test_acc"],
                         "best_test_acc": final["best_test_acc"],
                         "num_params": final["num_params"],
                         "job_time_s": job_time,
                         "overhead_s": job_time - final["compute_time_s"], **extra},
                        step=trainer.epoch, model_id=model_id)


def _ended_by(err: BaseException, cfg: DictConfig, out_dir: Path) -> tuple[str, dict[str, str]]:
    """The tracking run's final status and tags for a job that raised ``err``."""
    if isinstance(err, Pruned):  # stopped early by its sweeper: not a failure
        return "KILLED", {"optuna_state": "PRUNED"}
    if isinstance(err, KeyboardInterrupt):  # Ctrl-C, or SIGTERM (JobTerminated)
        return "KILLED", {"error": f"interrupted: {err}" if str(err) else "interrupted"}
    if isinstance(err, TrackingError) and not getattr(err, "user_error", False):
        # a transient outage outlasted the retries (a refused request is the user's to fix and
        # says so itself)
        log.error("the tracking server is unreachable (%s); training results are safe in %s "
                  "(checkpoint.pt, metrics.jsonl): rerun the same command once it is back "
                  "to resume and log the missed epochs", redact(str(cfg.tracking.uri)), out_dir)
    return "FAILED", {"error": redact(f"{type(err).__name__}: {err}")[:5000]}


def _close(tracker: Tracker, status: str, tags: dict[str, str]) -> bool:
    """Set the final status (True when set); a tracker failure here is reported, never allowed
    to mask the job's own error or lose its result (the checkpoint and metrics.jsonl are on
    disk)."""
    try:
        if tags:
            tracker.set_tags(tags)
        tracker.finish(status)  # stops the system metrics first
        return True
    except Exception as err:  # noqa: BLE001
        log.error("could not set the tracking run's status to %s: %s", status, err)
        return False
    finally:
        tracker.close()  # no sampling thread outlives the job, even when finish failed


def _interrupted(err: KeyboardInterrupt, cfg: DictConfig, tracker: Tracker, trainer: Trainer,
                 out_dir: Path, closed: bool) -> str:
    """The line that ends a job stopped by Ctrl-C or SIGTERM (sweep/termination.py)."""
    hc = HydraConfig.get()
    return interrupted_line(
        err, run_name=str(cfg.run_name or run_name(cfg.model, cfg.seed)),
        run_id=tracker.run_id, closed=closed, tracking=bool(cfg.tracking.enabled),
        epoch=trainer.epoch, epochs=trainer.cfg.epochs,
        out_dir=out_dir, resumable=trainer.cfg.checkpoint and trainer.cfg.resume,
        in_sweep=hc.mode is not None and hc.mode.name == "MULTIRUN")


def objective_value(cfg: DictConfig, final: dict[str, float]) -> float | list[float]:
    """``cfg.objective`` (a metric name, or a list of them) read from the final metrics;
    ValueError when one is missing or not finite."""
    names = list(cfg.objective) if OmegaConf.is_list(cfg.objective) else [cfg.objective]
    missing = [n for n in names if n not in final]
    if missing:
        raise ValueError(f"objective={missing} is not a final metric; valid: {sorted(final)}")
    values = [float(final[n]) for n in names]
    value = values if OmegaConf.is_list(cfg.objective) else values[0]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"objective {cfg.objective} is not finite: {value}")
    return value


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


def _training_container(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config less the keys that do not change what is trained."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for key in _NOT_TRAINING:
        c.pop(key, None)
    for key in _NOT_TRAINING_TRAINER:
        c["trainer"].pop(key, None)
    return c


def fingerprint(cfg: DictConfig) -> str:
    """Hash of the configuration that determines the training trajectory."""
    c = _training_container(cfg)
    return hashlib.sha256(json.dumps(c, sort_keys=True).encode()).hexdigest()[:16]


def training_config(cfg: DictConfig) -> dict[str, str]:
    """What ``fingerprint`` hashes, flat: {'model.dim': '16', 'trainer.epochs': '8', ...}. The
    checkpoint stores it, so a resume refused for another config names each changed key."""
    out: dict[str, str] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        else:
            out[prefix] = json.dumps(node) if isinstance(node, (list, dict)) else str(node)

    walk(_training_container(cfg), "")
    return out


def _tags(cfg: DictConfig, out_dir: Path) -> dict[str, str]:
    """The job run's tags: MLflow's source tags (tracking/source_tags.py) and the project's."""
    source = source_tags(ENTRY_POINT)
    tags = {
        **source,
        "model": str(cfg.model.name),
        "sweep_name": str(cfg.sweep_name),
        "git_commit": source.get(GIT_COMMIT, ""),
        "host": socket.gethostname(),
        "output_dir": str(out_dir.resolve()),
        FINGERPRINT_TAG: fingerprint(cfg),
        "mlflow.note.content": redact(
            f"python sweep/run.py {' '.join(HydraConfig.get().overrides.task)}"),
    }
    for env, tag in (("SLURM_JOB_ID", "slurm_job_id"), ("SLURM_ARRAY_JOB_ID", "slurm_array_job_id"),
                     ("SLURM_ARRAY_TASK_ID", "slurm_array_task_id")):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    if cfg.optuna.trial is not None:
        tags["optuna_trial"] = str(cfg.optuna.trial)
    return tags
