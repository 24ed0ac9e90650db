"""A plain training loop: AdamW, warm-up + cosine, the model's own regulariser, epoch
checkpoints that resume to the last digit, and a tracker interface for logging.

The loop needs direct access to the model (``model.regularizer()`` for lam ||V||^2 and
``model.symmetry_measures()`` every epoch), which is why it is written out here rather than
hidden in a framework.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from data import BatchAugment, ImageData, batches, normalize
from models.mixer import num_params
from tracking.tracker import Tracker
from training.adamw import AdamW
from training.checkpoint import load_checkpoint, save_checkpoint
from training.device import resolve_device
from training.distributed import DistEnv
from training.evaluate import evaluate
from training.progress import Progress
from training.schedule import scaled_lr, warmup_cosine

log = logging.getLogger("training")

EpochCallback = Callable[[int, dict[str, float]], None]
"""Called after each epoch with (epoch, metrics); may raise to stop the job (e.g. the report
to a pruned Optuna trial raises its TrialPruned)."""

CHECKPOINT = "checkpoint.pt"
METRICS_FILE = "metrics.jsonl"
PRECISIONS = ("fp32", "bf16")
GRAD_METRICS = ("grad_norm", "grad_norm_max", "reg_grad_norm", "clip_scale", "clip_scale_min",
                "clip_frac")
"""Per-epoch gradient statistics (``Trainer._train_epoch`` defines them)."""


class DivergenceError(RuntimeError):
    """The loss became non-finite or exploded: the job stops instead of burning compute."""


@dataclass
class TrainerConfig:
    """conf/trainer/default.yaml, one field per key."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    lr_batch: int = 512
    weight_decay: float = 0.05
    warmup_epochs: float = 1
    min_lr: float = 1e-6
    label_smoothing: float = 0.1
    grad_clip: float | None = 1.0
    device: str = "auto"
    precision: str = "fp32"
    compile: bool = False
    threads: int | None = None
    eval_batch_size: int = 1000
    resume: bool = True
    checkpoint: bool = True
    progress: str = "auto"
    divergence_loss: float = 1e4
    devices: int | None = None
    dist_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.epochs, int) and self.epochs >= 1, "epochs", "an integer >= 1"),
            (isinstance(self.batch_size, int) and self.batch_size >= 1, "batch_size",
             "an integer >= 1"),
            (_finite(self.lr) and self.lr > 0, "lr", "a number > 0"),
            (_finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
             "a number >= 0"),
            (_finite(self.warmup_epochs) and self.warmup_epochs >= 0, "warmup_epochs",
             "a number >= 0"),
            (_finite(self.label_smoothing) and 0 <= self.label_smoothing < 1, "label_smoothing",
             "in [0, 1)"),
            (self.grad_clip is None or (_finite(self.grad_clip) and self.grad_clip > 0),
             "grad_clip", "null or a number > 0"),
            (self.precision in PRECISIONS, "precision", f"one of {list(PRECISIONS)}"),
            (self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
             "threads", "null or an integer >= 1"),
            (self.devices is None or (isinstance(self.devices, int) and self.devices >= 1),
             "devices", "null or an integer >= 1"),
            (_finite(self.dist_timeout_s) and self.dist_timeout_s > 0, "dist_timeout_s",
             "a number > 0"),
        ]
        for ok, key, valid in checks:
            if not ok:
                raise ValueError(f"trainer.{key}={getattr(self, key)!r} is invalid; valid: {valid}")


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def no_weight_decay(name: str, param: Tensor) -> bool:
    """timm's rule (``param_groups_weight_decay``, used by the authors' train.py): no decay on
    1-D parameters (norm gains, biases) nor on any parameter named ``*.bias``. The second
    clause matters for the (S, C) LayerNorm of the derivation: its bias is 2-D, so a rule on
    ndim alone decays it; its (S, C) gain is 2-D and not a bias, so timm decays it, and so
    do we."""
    return param.ndim <= 1 or name.endswith(".bias")


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: weight decay on everything but what ``no_weight_decay`` names."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if no_weight_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def grad_norm(params: Sequence[Tensor]) -> Tensor:
    """Global L2 norm of the gradients of ``params`` (those that have one), as
    ``nn.utils.clip_grad_norm_`` computes it, without touching the gradients."""
    norms = [torch.linalg.vector_norm(p.grad.detach()) for p in params if p.grad is not None]
    if not norms:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(norms))


def clip_scale(norm: Tensor, max_norm: float | None) -> Tensor:
    """The factor ``nn.utils.clip_grad_norm_`` multiplies every gradient by:
    min(1, max_norm / (norm + 1e-6)); 1 without clipping."""
    if max_norm is None:
        return torch.ones_like(norm)
    return (max_norm / (norm + 1e-6)).clamp(max=1.0)


class Trainer:
    """Trains ``model`` on ``data`` and logs every epoch to ``tracker``.

    Usage: ``t = Trainer(...); tracker.start(resume_run_id=t.resumed_run_id, ...);
    metrics = t.fit()``. Everything a resumed job needs is in ``out_dir``: the checkpoint
    (model, optimiser, step, RNG states, tracker run id) and metrics.jsonl.

    Data-parallel (``dist`` from training.distributed.init_distributed): ``config.batch_size``
    is the global batch, each rank trains on its slice of it through DDP, metrics are
    all-reduced, and only rank 0 writes the checkpoint and metrics.jsonl and runs callbacks
    (pass the other ranks a NullTracker). Every rank returns the same final metrics.
    """

    def __init__(
        self,
        model: nn.Module,
        data: ImageData,
        config: TrainerConfig,
        augment: BatchAugment,
        tracker: Tracker,
        out_dir: str | Path,
        seed: int = 0,
        fingerprint: str = "",
        fingerprint_config: Mapping[str, str] | None = None,
        callbacks: Sequence[EpochCallback] = (),
        dist: DistEnv | None = None,
    ) -> None:
        self.cfg = config
        self.out_dir = Path(out_dir)
        self.tracker = tracker
        self.callbacks = list(callbacks)
        self.fingerprint = fingerprint
        # the flat config the fingerprint hashes: a refused resume names the keys that changed
        self.fingerprint_config = dict(fingerprint_config or {})
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.dist = dist or DistEnv(device=resolve_device(config.device))
        self.device = self.dist.device
        # drop path and anything else drawing from the global RNG (its own stream per rank)
        torch.manual_seed(seed + self.dist.rank)
        self.data = data.to(self.device)
        self.model = model.to(self.device)
        # the compiled (and DDP-wrapped) module runs the steps; self.model keeps regulariser,
        # measures and state dict; evaluation runs unwrapped (each rank on its own shard)
        self.eval_model = torch.compile(model) if config.compile else model
        self.step_model = self.eval_model
        if self.dist.enabled:
            ddp = self.dist.wrap(model)
            self.step_model = torch.compile(ddp) if config.compile else ddp
        self.augment = augment
        self.gen = torch.Generator(device=self.device).manual_seed(seed)
        # torch's AdamW, less its ~1.5-2 s torch._dynamo import (training/adamw.py)
        self.optimizer = AdamW(_param_groups(model, config.weight_decay), lr=config.lr,
                               betas=(0.9, 0.999))
        n_train = len(self.data.train_x)
        self.steps_per_epoch = math.ceil(n_train / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.warmup_steps = round(config.warmup_epochs * self.steps_per_epoch)
        self.peak_lr = scaled_lr(config.lr, config.batch_size, config.lr_batch)
        self.scheduler = warmup_cosine(self.optimizer, self.total_steps, self.warmup_steps,
                                       self.peak_lr, config.min_lr)
        self.last_lr = self.peak_lr  # the lr of the last optimiser step (the epoch's "lr")
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                       enabled=config.precision == "bf16")
        self.epoch = 0  # last completed epoch
        self.step = 0
        self.resumed_run_id: str | None = None
        self.start_epoch = 0  # the epoch fit() started from (> 0: resumed from a checkpoint)
        self.ckpt_path = self.out_dir / CHECKPOINT
        self.metrics_path = self.out_dir / METRICS_FILE
        if config.resume and self.ckpt_path.exists():
            self._restore(load_checkpoint(self.ckpt_path, fingerprint, self.fingerprint_config))

    # ----------------------------------------------------------------- checkpoints
    def _state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
                    # every rank's global RNG (drop path), so a data-parallel job resumes exactly
                    "torch_ranks": self.dist.all_gather(torch.get_rng_state())},
            "fingerprint": self.fingerprint,
            "config": self.fingerprint_config,
            "run_id": self.tracker.run_id,
        }

    def _restore(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = state["epoch"], state["step"]
        if "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
        else:  # a checkpoint written before the scheduler's state was saved
            self.scheduler = warmup_cosine(self.optimizer, self.total_steps, self.warmup_steps,
                                           self.peak_lr, self.cfg.min_lr, start_step=self.step)
        ranks = state["rng"].get("torch_ranks") or []
        torch.set_rng_state(ranks[self.dist.rank] if len(ranks) == self.dist.world_size
                            else state["rng"]["torch"])
        self.gen.set_state(state["rng"]["gen"])
        if state["rng"].get("cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.resumed_run_id = state.get("run_id")
        log.info("resumed from %s at epoch %d", self.ckpt_path, self.epoch)

    def _history(self) -> list[dict]:
        """Per-epoch metrics written so far, up to the checkpoint's epoch (later lines belong
        to an epoch the checkpoint does not hold and will be recomputed)."""
        if not self.metrics_path.exists():
            return []
        rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]
        return [r for r in rows if r["epoch"] <= self.epoch]

    def _sync_tracker(self, history: list[dict]) -> None:
        """After a restart: log the epochs the tracker missed (killed between the checkpoint
        and the log call, or the server was down), so no epoch is missing or repeated."""
        if not history:  # nothing to re-log: no query to the tracker
            return
        last = self.tracker.last_step("test_acc") if self.tracker.run_id else None
        for row in history:
            if last is None or row["epoch"] > last:
                self.tracker.log_metrics(row["metrics"], step=row["epoch"])

    def _log_initial_symmetry(self) -> None:
        """The symmetry measures of the initial weights, logged at step 0 (before the first
        optimiser step) under the same keys as every epoch's, so a curve against epoch starts
        at the initialisation (the tied-init and V = 0 controls start at cos = 1). Only to
        the tracker: metrics.jsonl keeps one line per trained epoch. A job restarted before
        its first checkpoint logs it again only if the tracker does not hold it yet."""
        measures = self.model.symmetry_measures()
        if not measures:
            return
        if self.tracker.run_id and self.tracker.last_step(next(iter(measures))) is not None:
            return
        self.tracker.log_metrics(measures, step=0)

    # ----------------------------------------------------------------- training
    def _train_epoch(self, progress: Progress) -> tuple[float, float, float, dict[str, float]]:
        """One pass over the shuffled training set -> (mean loss, mean reg loss, seconds,
        gradient statistics).

        Every rank draws and augments the same global batch, then trains on its slice; the
        loss is this rank's share of the global mean (times world_size, as DDP averages).

        Gradient statistics over the epoch's steps (``GRAD_METRICS``), all measured before
        clipping on the gradient the optimiser gets (loss + regulariser, after DDP's
        all-reduce, so every rank agrees): ``grad_norm`` (mean) and ``grad_norm_max`` of its
        global L2 norm; ``reg_grad_norm``, the mean norm of the regulariser's own gradient
        (lam * ||V||^2: 2 lam ||V||; 0 for models without one); ``clip_scale`` (mean) and
        ``clip_scale_min`` of the factor the global clip multiplies every gradient by
        (1 = untouched; always 1 with ``grad_clip: null``) and ``clip_frac``, the fraction of
        steps it clipped. A large regulariser gradient shrinks the loss gradient through the
        global clip: the lam = 1 question of conf/experiment/lam1_clip.yaml.
        """
        d, cfg, world = self.data, self.cfg, self.dist.world_size
        self.step_model.train()
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        reg_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        # gradient statistics, kept on the device (no host sync per step):
        # sums of norm, reg norm, clip scale, clipped steps; running max norm, min scale
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)
        norm_max = torch.zeros((), device=self.device, dtype=torch.float64)
        scale_min = torch.ones((), device=self.device, dtype=torch.float64)
        params = [p for p in self.model.parameters() if p.requires_grad]
        n_steps = 0
        t0 = time.perf_counter()
        for xb, yb in batches(d.train_x, d.train_y, cfg.batch_size, shuffle=True,
                              generator=self.gen):
            lr = self.last_lr = self.scheduler.get_last_lr()[0]  # this step's lr
            x, y_soft = self.augment(normalize(xb, d.mean, d.std), yb, self.gen)  # (B,C,H,W), (B,K)
            part = self.dist.shard(len(x))
            with self.autocast:
                logits = self.step_model(x[part])
            per_sample = torch.sum(-y_soft[part] * F.log_softmax(logits.float(), dim=-1), dim=-1)
            loss = per_sample.sum() / len(x)  # this rank's share of the global batch mean
            reg = self.model.regularizer()
            self.optimizer.zero_grad(set_to_none=True)
            reg_norm = self._reg_grad_norm(reg, params)
            (loss * world + reg).backward()
            if cfg.grad_clip is not None:  # returns the norm before clipping
                norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip).detach()
            else:
                norm = grad_norm(params)
            norm = norm.to(self.device, torch.float64)
            scale = clip_scale(norm, cfg.grad_clip)
            sums += torch.stack([norm, reg_norm.to(sums), scale, (scale < 1).to(sums)])
            norm_max = torch.maximum(norm_max, norm)
            scale_min = torch.minimum(scale_min, scale)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            n_steps += 1
            if n_steps == 1:  # benchmarks/job_start.py: the job's time to its first step
                log.debug("epoch %d: first step done", self.epoch + 1)
            loss_sum += loss.detach()
            reg_sum += reg.detach()
            # a host sync every few steps catches divergence early without stalling a GPU
            if n_steps % 10 == 0 or n_steps == self.steps_per_epoch:
                step_loss = float(self.dist.all_reduce_sum(loss.detach().clone()))
                self._check_finite(step_loss, lr)
                progress.step(step_loss)
            else:
                progress.step()
        seconds = time.perf_counter() - t0
        self.dist.all_reduce_sum(loss_sum)
        mean = (sums / n_steps).tolist()
        grads = {"grad_norm": mean[0], "grad_norm_max": float(norm_max),
                 "reg_grad_norm": mean[1], "clip_scale": mean[2],
                 "clip_scale_min": float(scale_min), "clip_frac": mean[3]}
        return float(loss_sum) / n_steps, float(reg_sum) / n_steps, seconds, grads

    @staticmethod
    def _reg_grad_norm(reg: Tensor, params: Sequence[Tensor]) -> Tensor:
        """||d reg / d params||: the regulariser's share of the step's gradient (0 when it
        depends on no parameter). A separate autograd.grad over its small graph (elementwise
        on the V's), which leaves .grad and DDP's hooks alone."""
        if not reg.requires_grad:
            return torch.zeros((), device=reg.device)
        grads = torch.autograd.grad(reg, list(params), retain_graph=True, allow_unused=True)
        norms = [torch.linalg.vector_norm(g) for g in grads if g is not None]
        return torch.linalg.vector_norm(torch.stack(norms)) if norms else reg.new_zeros(())

    def _check_finite(self, loss: float, lr: float) -> None:
        if not math.isfinite(loss) or loss > self.cfg.divergence_loss:
            raise DivergenceError(
                f"training diverged at epoch {self.epoch + 1}, step {self.step}: loss={loss} "
                f"(limit trainer.divergence_loss={self.cfg.divergence_loss}, lr={lr:.3g}); "
                "lower trainer.lr or raise trainer.warmup_epochs")

    def _run_callbacks(self, metrics: dict[str, float]) -> bool:
        """Run the epoch callbacks on rank 0 and re-raise what one raises (e.g. a pruned
        trial's TrialPruned). Returns True on the other ranks when rank 0's callback stopped
        the job: they stop training too (cleanly, so the launcher keeps rank 0's error),
        instead of waiting in a collective for a rank that has left."""
        if not self.dist.enabled:
            for callback in self.callbacks:
                callback(self.epoch, metrics)
            return False
        err: Exception | None = None
        if self.dist.is_main:
            try:
                for callback in self.callbacks:
                    callback(self.epoch, metrics)
            except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
                err = e
        stop = self.dist.broadcast(None if err is None else f"{type(err).__name__}: {err}")
        if err is not None:
            raise err
        if stop is not None:
            log.info("rank 0 stopped the job after epoch %d (%s)", self.epoch, stop)
        return stop is not None

    def fit(self) -> dict[str, float]:
        """Train the remaining epochs; returns the final epoch's metrics plus
        ``best_test_acc`` and ``num_params``."""
        d, cfg, main = self.data, self.cfg, self.dist.is_main
        history: list[dict] = []
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            history = self._history()
            # rewrite the file so it holds exactly the checkpointed epochs
            self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in history))
            self._sync_tracker(history)
            if self.epoch == 0:
                self._log_initial_symmetry()
        history = self.dist.broadcast(history)
        self.start_epoch = self.epoch  # epochs up to here were trained by an earlier process
        progress = Progress(cfg.progress if main else "off", cfg.epochs, self.steps_per_epoch,
                            self.epoch + 1)
        try:
            while self.epoch < cfg.epochs:
                progress.start_epoch(self.epoch + 1)
                train_loss, reg_loss, seconds, grads = self._train_epoch(progress)
                self.epoch += 1
                metrics = {
                    "train_loss": train_loss,
                    "reg_loss": reg_loss,
                    **grads,
                    "lr": self.last_lr,
                    "epoch_time_s": seconds,
                    "images_per_s": len(d.train_x) / seconds,
                }
                t_eval = time.perf_counter()
                metrics["test_loss"], metrics["test_acc"] = evaluate(
                    self.eval_model, d.test_x, d.test_y, d.mean, d.std, cfg.eval_batch_size,
                    self.autocast, self.dist)
                if d.val_x is not None:
                    metrics["val_loss"], metrics["val_acc"] = evaluate(
                        self.eval_model, d.val_x, d.val_y, d.mean, d.std, cfg.eval_batch_size,
                        self.autocast, self.dist)
                metrics["eval_time_s"] = time.perf_counter() - t_eval
                metrics.update(self.model.symmetry_measures())
                row = {"epoch": self.epoch, "metrics": metrics}
                history.append(row)
                # local record first, then the checkpoint, then the tracker: whatever is
                # interrupted, a restart finds every finished epoch on disk
                state = self._state() if cfg.checkpoint else None  # a collective: every rank
                if main:
                    with self.metrics_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    if state is not None:
                        save_checkpoint(self.ckpt_path, state)
                self.tracker.log_metrics(metrics, step=self.epoch)
                progress.end_epoch(self.epoch, metrics)
                if self._run_callbacks(metrics):
                    break
        finally:
            progress.close()
        final = dict(history[-1]["metrics"]) if history else {}
        final["best_test_acc"] = max(r["metrics"]["test_acc"] for r in history)
        # time in training and evaluation steps of this process, for the platform-overhead
        # figure (the job's time is this process's too: a resumed job's earlier epochs count
        # in neither)
        final["compute_time_s"] = sum(r["metrics"]["epoch_time_s"]
                                      + r["metrics"].get("eval_time_s", 0.0) for r in history
                                      if r["epoch"] > self.start_epoch)
        final["num_params"] = float(num_params(self.model))
        return final
