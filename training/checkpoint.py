"""Epoch checkpoints: written atomically, verified on load."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (corrupt, or written by another configuration)."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, then rename: a job killed while
    writing leaves the previous checkpoint intact, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, fingerprint: str | None = None) -> dict[str, Any]:
    """Load and check a checkpoint. ``fingerprint`` must match the one it was saved with
    (a hash of the training-relevant config), so a job never resumes another config's state."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means corrupt
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); delete it to start "
            "the job from scratch, or set trainer.resume=false") from err
    for key in ("model", "optimizer", "epoch", "fingerprint"):
        if not isinstance(state, dict) or key not in state:
            raise CheckpointError(f"checkpoint {path} is missing '{key}'; it was not written "
                                  "by this trainer. Delete it or set trainer.resume=false")
    if fingerprint is not None and state["fingerprint"] != fingerprint:
        raise CheckpointError(
            f"checkpoint {path} was written by a different configuration "
            f"(fingerprint {state['fingerprint']} != {fingerprint}); use a fresh output dir, "
            "delete the checkpoint, or set trainer.resume=false")
    return state
