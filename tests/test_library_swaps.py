"""Hand-written code replaced by a library (issue 18 item 5), each checked against what it
replaced: the lr schedule is torch's LambdaLR (the same lr at every step as the closed form
``lr_at``, across a resume), the tracking retries are tenacity's (the same policy, log lines and
classification of transient vs permanent errors)."""

from __future__ import annotations

import errno
import json
import logging
import math
import time
from pathlib import Path

import pytest
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import (
    BAD_REQUEST,
    INTERNAL_ERROR,
    PERMISSION_DENIED,
    REQUEST_LIMIT_EXCEEDED,
    TEMPORARILY_UNAVAILABLE,
    UNAUTHENTICATED,
)

from data import BatchAugment, load_dataset
from models import Mixer
from tracking.retry import TrackingError, TrackingRefused, is_permanent, with_retries
from tracking.tracker import NullTracker
from training import Trainer, TrainerConfig
from training.checkpoint import load_checkpoint, save_checkpoint
from training.schedule import lr_at, warmup_cosine

# (total steps, warm-up steps, peak lr, min lr): the default shape, no warm-up, a warm-up
# longer than the run, min_lr 0, a one-step warm-up
SCHEDULES = [(120, 12, 1e-3, 1e-6), (50, 0, 3e-4, 1e-6), (30, 45, 1e-3, 1e-6),
             (200, 20, 5e-4, 0.0), (17, 1, 2e-2, 1e-5)]


def optimizer() -> torch.optim.Optimizer:
    """AdamW with two param groups (decayed and not), as the trainer's."""
    w, b = torch.nn.Parameter(torch.randn(3, 3)), torch.nn.Parameter(torch.zeros(3))
    return torch.optim.AdamW([{"params": [w], "weight_decay": 0.05},
                              {"params": [b], "weight_decay": 0.0}], lr=123.0)


def run_steps(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
              n: int) -> list[float]:
    """The lr each of ``n`` optimiser steps uses (every group must agree)."""
    seen = []
    for _ in range(n):
        lrs = {g["lr"] for g in opt.param_groups}
        assert len(lrs) == 1
        seen.append(lrs.pop())
        opt.step()
        sched.step()
    return seen


def assert_same_lrs(got: list[float], total: int, warmup: int, peak: float, low: float,
                    first: int = 0) -> None:
    want = [lr_at(s, total, warmup, peak, low) for s in range(first, first + len(got))]
    bad = [(first + i, g, w) for i, (g, w) in enumerate(zip(got, want, strict=True))
           if not math.isclose(g, w, rel_tol=1e-12, abs_tol=0.0)]
    assert not bad, bad[:5]


@pytest.mark.parametrize("total, warmup, peak, low", SCHEDULES)
def test_the_scheduler_gives_the_closed_form_lr_at_every_step(total, warmup, peak, low):
    opt = optimizer()
    got = run_steps(opt, warmup_cosine(opt, total, warmup, peak, low), total)
    assert_same_lrs(got, total, warmup, peak, low)
    # the shape itself: rises through the warm-up, peaks, then never rises again
    top = min(warmup, total)
    assert got[:top] == sorted(got[:top])
    assert all(a >= b for a, b in zip(got[top:], got[top + 1:], strict=False))
    assert max(got) <= peak * (1 + 1e-12) and min(got) >= low


@pytest.mark.parametrize("total, warmup, peak, low", SCHEDULES)
def test_a_resumed_scheduler_continues_on_the_same_values(tmp_path, total, warmup, peak, low):
    split = total // 3
    opt = optimizer()
    sched = warmup_cosine(opt, total, warmup, peak, low)
    before = run_steps(opt, sched, split)
    # the trainer's checkpoint: plain values only, loaded with weights_only=True
    save_checkpoint(tmp_path / "ckpt.pt", {"model": {}, "optimizer": opt.state_dict(),
                                           "scheduler": sched.state_dict(), "epoch": 1,
                                           "fingerprint": ""})
    state = load_checkpoint(tmp_path / "ckpt.pt")
    fresh = optimizer()
    resumed = warmup_cosine(fresh, total, warmup, peak, low)
    fresh.load_state_dict(state["optimizer"])
    resumed.load_state_dict(state["scheduler"])
    after = run_steps(fresh, resumed, total - split)
    assert_same_lrs(before + after, total, warmup, peak, low)
    # a checkpoint without the scheduler's state (written before it was saved): rebuilt at
    # the step it holds
    old = optimizer()
    old.load_state_dict(state["optimizer"])
    rebuilt = run_steps(old, warmup_cosine(old, total, warmup, peak, low, start_step=split),
                        total - split)
    assert_same_lrs(rebuilt, total, warmup, peak, low, first=split)


class StopAfter:
    """An epoch callback that stops the job (as a kill would) after epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def trainer(tmp_path: Path, out: str, **kw) -> Trainer:
    """3 epochs of 4 steps (64 digits, batch 16), warm-up 1.5 epochs (6 steps)."""
    data = load_dataset("digits", max_train=64, max_test=32, cache_dir=str(tmp_path / "cache"))
    cfg = TrainerConfig(epochs=3, batch_size=16, lr=1e-2, warmup_epochs=1.5, device="cpu",
                        progress="off")
    torch.manual_seed(0)
    model = Mixer(block="parallel", mlp="asymmetric", img_size=8, patch_size=2, dim=16, depth=1)
    return Trainer(model, data, cfg, BatchAugment(num_classes=10), NullTracker(),
                   tmp_path / out, **kw)


def recorded(t: Trainer, steps: list[float]) -> Trainer:
    """Record the lr of every optimiser step ``t`` takes into ``steps``."""
    t.optimizer.register_step_pre_hook(
        lambda opt, args, kwargs: steps.append(opt.param_groups[0]["lr"]))
    return t


def epoch_lrs(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["metrics"]["lr"] for line in lines]


@pytest.mark.parametrize("with_state", [True, False])
def test_a_resumed_training_job_uses_the_same_lr_at_every_step(tmp_path, with_state):
    whole: list[float] = []
    t = recorded(trainer(tmp_path, "whole"), whole)
    t.fit()
    total, warmup, peak = t.total_steps, t.warmup_steps, t.peak_lr
    assert (total, warmup) == (12, 6)
    assert_same_lrs(whole, total, warmup, peak, t.cfg.min_lr)
    # the epoch's logged lr is the lr of its last step, as before the scheduler
    assert epoch_lrs(tmp_path / "whole") == [whole[3], whole[7], whole[11]]

    parts: list[float] = []
    with pytest.raises(KeyboardInterrupt):
        recorded(trainer(tmp_path, "parts", callbacks=[StopAfter(1)]), parts).fit()
    ckpt = tmp_path / "parts" / "checkpoint.pt"
    if not with_state:
        state = load_checkpoint(ckpt)
        del state["scheduler"]
        save_checkpoint(ckpt, state)
    resumed = recorded(trainer(tmp_path, "parts"), parts)
    assert resumed.step == 4
    resumed.fit()
    assert parts == whole
    assert epoch_lrs(tmp_path / "parts") == epoch_lrs(tmp_path / "whole")


# --- tracking retries


def test_the_classification_of_tracking_errors():
    """The table in ``is_permanent``'s docstring, row by row."""
    transient = [
        ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        TimeoutError("timed out"),
        MlflowException("API request failed with exception HTTPConnectionPool: Max retries "
                        "exceeded (Connection refused)", error_code=INTERNAL_ERROR),
        MlflowException("failed with error code 503 != 200", error_code=TEMPORARILY_UNAVAILABLE),
        MlflowException("failed with error code 429 != 200", error_code=REQUEST_LIMIT_EXCEEDED),
        MlflowException("(sqlite3.OperationalError) database is locked",
                        error_code=TEMPORARILY_UNAVAILABLE),
        # two jobs logging the same dataset to one server at once: the loser's insert fails
        MlflowException("API request to endpoint /api/2.0/mlflow/runs/log-inputs failed with "
                        "error code 400 != 200. Response body: 'BAD_REQUEST: (sqlite3."
                        "IntegrityError) UNIQUE constraint failed: datasets.experiment_id, "
                        "datasets.name, datasets.digest'", error_code=BAD_REQUEST),
        MlflowException("(psycopg2.errors.UniqueViolation) duplicate key value violates unique "
                        "constraint \"dataset_pk\"", error_code=BAD_REQUEST),
        RuntimeError("anything else"),
    ]
    permanent = [
        MlflowException("failed with error code 400 != 200", error_code=BAD_REQUEST),
        MlflowException("failed with error code 401 != 200", error_code=UNAUTHENTICATED),
        MlflowException("failed with error code 403 != 200", error_code=PERMISSION_DENIED),
        OSError(errno.EROFS, "Read-only file system"),
        ModuleNotFoundError("No module named 'psycopg2'"),
        TrackingError("a failed call, already reported"),
    ]
    assert [e for e in transient if is_permanent(e)] == []
    assert [e for e in permanent if not is_permanent(e)] == []


def failing(errors: list[BaseException | None]):
    """A call that raises ``errors`` in turn (None: returns 'ok'), and the list of its calls."""
    calls: list[float] = []
    it = iter(errors)

    def call() -> str:
        calls.append(time.monotonic())
        err = next(it)
        if err is not None:
            raise err
        return "ok"

    return call, calls


def test_transient_errors_are_retried_with_doubling_waits_and_one_line_each(monkeypatch, caplog):
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # tenacity's default sleep calls it
    locked = MlflowException("database is locked\nTraceback ...",
                             error_code=TEMPORARILY_UNAVAILABLE)
    call, calls = failing([locked, locked, ConnectionResetError(104, "reset"), None])
    with caplog.at_level(logging.WARNING, logger="tracking.retry"):
        assert with_retries(call, "log metrics", retries=3, backoff_s=1.5) == "ok"
    assert len(calls) == 4 and waits == [1.5, 3.0, 6.0]
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "tracking call 'log metrics' failed (MlflowException: database is locked); "
        "retrying in 1.5 s",
        "tracking call 'log metrics' failed (MlflowException: database is locked); "
        "retrying in 3.0 s",
        "tracking call 'log metrics' failed (ConnectionResetError: [Errno 104] reset); "
        "retrying in 6.0 s"]

    # out of attempts: a TrackingError naming the call, the attempts and the last error
    waits.clear()
    call, calls = failing([TimeoutError("read timed out")] * 3)
    with pytest.raises(TrackingError) as err:
        with_retries(call, "search runs", retries=2, backoff_s=0.5)
    assert type(err.value) is TrackingError and len(calls) == 3 and waits == [0.5, 1.0]
    assert str(err.value) == ("tracking call 'search runs' failed after 3 attempts: "
                              "TimeoutError: read timed out")
    assert isinstance(err.value.__cause__, TimeoutError)


def test_permanent_errors_and_interrupts_are_never_retried(monkeypatch):
    monkeypatch.setattr(time, "sleep", lambda s: pytest.fail("slept"))
    call, calls = failing([MlflowException("Forbidden", error_code=PERMISSION_DENIED)])
    with pytest.raises(TrackingRefused, match=r"^tracking call 'experiment' to http://h:1 "
                       r"failed \(not retried: the same call would fail again\): "
                       r"MlflowException: Forbidden$"):
        with_retries(call, "experiment", retries=5, backoff_s=1.0, where="http://h:1")
    assert len(calls) == 1
    for err in (TrackingError("already reported"), KeyboardInterrupt()):
        call, calls = failing([err])
        with pytest.raises(type(err)) as raised:
            with_retries(call, "log", retries=5, backoff_s=1.0)
        assert raised.value is err and len(calls) == 1
