"""Epoch checkpoints: written atomically, verified on load.

A checkpoint holds only tensors and plain values (dicts, lists, numbers, strings), so it loads
with ``torch.load(weights_only=True)``: a file that would need any other Python object (a
pickle that could run code when loaded) is refused, never unpickled.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (corrupt, unsafe to load, or written by another
    configuration)."""


def _load_error(err: BaseException) -> tuple[str | None, str]:
    """(the Python global a ``weights_only`` load refused, e.g. 'posix.system', or None; the
    failure in one line). torch's own message is a paragraph that suggests turning the
    weights-only check off, which is exactly what must not happen to an unknown file."""
    text = str(err)
    if "Weights only load failed" not in text:
        return None, f"{type(err).__name__}: {' '.join(text.split())}"
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return found.group(1), f"it needs the Python global {found.group(1)}"
    lines = [line.strip() for line in text.split("Check the documentation")[0].splitlines()]
    return None, f"{type(err).__name__}: {[line for line in lines if line][-1]}"


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


def load_checkpoint(path: Path, fingerprint: str | None = None,
                    config: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Load and check a checkpoint. ``fingerprint`` must match the one it was saved with
    (a hash of the training-relevant config), so a job never resumes another config's state;
    ``config`` is that config flat ({'trainer.epochs': '8', ...}): when the checkpoint stored
    its own too, a refusal names each changed key with its old and new value."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means corrupt
        unsafe, what = _load_error(err)
        if unsafe is not None:
            raise CheckpointError(
                f"checkpoint {path} was not loaded: {what}, not only tensors and plain values, "
                "and unpickling it could run code; it was not written by this trainer. Delete "
                "it to start the job from scratch, or set trainer.resume=false") from None
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({what}); delete it to start the job from "
            "scratch, or set trainer.resume=false") from err
    for key in ("model", "optimizer", "epoch", "fingerprint"):
        if not isinstance(state, dict) or key not in state:
            raise CheckpointError(f"checkpoint {path} is missing '{key}'; it was not written "
                                  "by this trainer. Delete it or set trainer.resume=false")
    if fingerprint is not None and state["fingerprint"] != fingerprint:
        raise CheckpointError(_other_config(path, state, fingerprint, config))
    return state


def config_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """'<key>: <old> -> <new>' for each key whose value differs, in key order ('(none)' for a
    key that only one of them has), e.g. 'trainer.epochs: 6 -> 8'."""
    return [f"{key}: {old.get(key, '(none)')} -> {new.get(key, '(none)')}"
            for key in sorted({*old, *new}) if old.get(key) != new.get(key)]


def _other_config(path: Path, state: dict[str, Any], fingerprint: str,
                  config: Mapping[str, str] | None) -> str:
    """Why a checkpoint of another configuration is refused, and the two ways on."""
    ways = ("rerun with the old values to resume it, or start over: trainer.resume=false "
            "(trains from epoch 1 and overwrites this checkpoint: nothing of the old run is "
            "kept) or another output dir (hydra.run.dir; hydra.sweep.dir for a sweep)")
    saved = state.get("config")
    changes = config_changes(saved, config) if isinstance(saved, dict) and config else []
    if not changes:  # a checkpoint from before configs were stored in it
        return (f"checkpoint {path} was written by a different configuration (fingerprint "
                f"{state['fingerprint']} != {fingerprint}); {ways}")
    return (f"checkpoint {path} was written by a different configuration ({', '.join(changes)}); "
            f"{ways}")
