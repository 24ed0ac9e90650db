"""An on-disk cache of decoded splits, so a job starts in milliseconds instead of re-decoding.

Each split is one file, ``<cache_dir>/<name>-<image_size>px-<where>-<split>.pt``, where
``where`` hashes the dataset name, image size and data root. It holds a dict: "key" (the
validity key), "x" (N, C, S, S) uint8, "y" (N,) int64, "classes" (list of str). The validity
key hashes the dataset name, FORMAT_VERSION, image_size and, for each source file, its
absolute path, size and mtime_ns: a changed source gets the same file name but a new key, so
the stale file is found, rebuilt and overwritten rather than left to pile up. A file whose key
does not match, that cannot be read, or whose tensors have the wrong shape or dtype is never
trusted: the loader rebuilds it from source.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# bump when the decoded content changes for the same sources (a reader or resize change)
FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """$MIXERLAB_CACHE if set, else ~/.cache/mixer-symmetry-lab."""
    env = os.environ.get("MIXERLAB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "mixer-symmetry-lab"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def cache_key(name: str, image_size: int, sources: list[Path]) -> str:
    """The validity key: a hash of the name, FORMAT_VERSION, image_size and each source file's
    absolute path, size and mtime_ns."""
    stats = []
    for path in sources:
        st = path.stat()
        stats.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
    return _digest([name, FORMAT_VERSION, image_size, stats])


def cache_path(cache_dir: Path, name: str, image_size: int, root: Path | None,
               split: str) -> Path:
    where = _digest([name, image_size, str(root.resolve()) if root else None])[:12]
    return cache_dir / f"{name}-{image_size}px-{where}-{split}.pt"


def load_split(path: Path, key: str, channels: int, image_size: int
               ) -> tuple[Tensor, Tensor, list[str]] | None:
    """(x (N, C, S, S) uint8, y (N,) int64, classes) from a cache file, or None when there is
    none or it cannot be trusted (logged as a warning, naming why)."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a torn or foreign file fails in many ways; all mean "rebuild"
        log.warning("cache %s is unreadable (%s: %s); rebuilding it from source", path,
                    type(e).__name__, e)
        return None
    problem = _check(blob, key, channels, image_size)
    if problem:
        log.warning("cache %s %s; rebuilding it from source", path, problem)
        return None
    return blob["x"], blob["y"], blob["classes"]


def _check(blob: object, key: str, channels: int, size: int) -> str | None:
    """What is wrong with a loaded cache blob, or None."""
    if not isinstance(blob, dict) or not {"key", "x", "y", "classes"} <= blob.keys():
        return "does not hold the expected dict"
    if blob["key"] != key:
        return "is stale (its source files or format changed)"
    x, y, classes = blob["x"], blob["y"], blob["classes"]
    if not (isinstance(x, Tensor) and x.dtype == torch.uint8 and x.ndim == 4
            and tuple(x.shape[1:]) == (channels, size, size)):
        return f"holds images of the wrong shape or dtype ({getattr(x, 'shape', None)})"
    if not (isinstance(y, Tensor) and y.dtype == torch.int64 and y.shape == (len(x),)):
        return f"holds labels of the wrong shape or dtype ({getattr(y, 'shape', None)})"
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        return "holds no class names"
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < len(classes):
        return "holds labels out of range"
    return None


def save_split(path: Path, key: str, x: Tensor, y: Tensor, classes: list[str]) -> None:
    """Write a cache file atomically: to a temporary file in the same folder, then os.replace,
    so a concurrent job sees the old file or the new one, never half of one. A cache that
    cannot be written (read-only disk, full disk) is logged and skipped: it is only a cache."""
    # torch.save writes a tensor's whole storage: a slice of a bigger tensor would drag the
    # rest of it along, so such views are copied first
    x, y = (t if t.untyped_storage().nbytes() == t.numel() * t.element_size() else t.clone()
            for t in (x.contiguous(), y.contiguous()))
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide a shared cache from other users
        with os.fdopen(fd, "wb") as f:
            torch.save({"key": key, "x": x, "y": y, "classes": list(classes)}, f)
        os.replace(tmp, path)
        tmp = None
    except OSError as e:
        log.warning("cannot write the cache %s (%s); continuing without it", path, e)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
