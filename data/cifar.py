"""The CIFAR-10 / CIFAR-100 python-pickle layout, and the two readers built on it.

Each batch file is a pickled dict with bytes keys: b"data" a (N, 3072) uint8 array (1024 red,
then 1024 green, then 1024 blue values, each a 32x32 image row by row) and b"labels"
(CIFAR-10) or b"fine_labels" (CIFAR-100, whose 100 fine classes we use) a list of N ints.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from data.reader import DatasetError, Decoded, Reader, layout_error

HOW_TO_GET = (
    "download {tarball} from https://www.cs.toronto.edu/~kriz/cifar.html and extract it under "
    "{root} (tar xzf {tarball} -C {root})"
)

# The only globals a CIFAR pickle needs: numpy's array reconstruction, and _codecs.encode with
# which Python 3 pickles bytes at protocol 2. Anything else is not a CIFAR file, and refusing
# it keeps a stray pickle from running arbitrary code.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict:
    """The dict pickled in a CIFAR file (keys are bytes: the files were written by Python 2).
    Raises DatasetError naming the file when it is truncated, corrupt or not a dict."""
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except Exception as e:  # a damaged pickle fails in many ways (EOF, bad opcode, bad value)
        raise DatasetError(
            f"{path}: cannot unpickle it ({type(e).__name__}: {e}); the file is truncated or "
            "corrupt, extract the archive again"
        ) from e
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: expected a pickled dict, found {type(obj).__name__}")
    return obj


def read_batch(
    path: Path, label_key: bytes, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 in [0, num_classes) from one CIFAR
    batch file."""
    batch = load_pickle(path)
    if b"data" not in batch or label_key not in batch:
        raise DatasetError(f"{path}: expected keys b'data' and {label_key!r}, found "
                           f"{sorted(batch)}")
    data, labels = batch[b"data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise DatasetError(f"{path}: b'data' must be a (N, 3072) uint8 array, found "
                           f"{type(data).__name__} {shape} {getattr(data, 'dtype', '')}")
    if len(labels) != len(data):
        raise DatasetError(f"{path}: {len(data)} images but {len(labels)} labels")
    try:
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {label_key!r} is not a list of ints ({e})") from e
    if len(y) and not 0 <= int(y.min()) <= int(y.max()) < num_classes:
        raise DatasetError(f"{path}: labels in [{int(y.min())}, {int(y.max())}], expected "
                           f"[0, {num_classes}) as the meta file names {num_classes} classes")
    x = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return x, y


def cifar_reader(
    dataset: str, folder: str, tarball: str, train: list[str], test: str, meta: str,
    label_key: bytes, names_key: bytes, mean: tuple[float, ...], std: tuple[float, ...],
) -> Reader:
    """A Reader for a CIFAR layout: root/<folder>/{train..., test, meta}, or root = <folder>."""

    def find(root: Path | None) -> dict[str, Path]:
        how = HOW_TO_GET.format(tarball=tarball, root=root if root is not None else "ROOT")
        if root is None:
            raise layout_error(dataset, "no root given: set data.root to the folder that holds "
                               f"{folder}/", [f"ROOT/{folder}/{n}" for n in (*train, test, meta)],
                               how)
        root = Path(root)
        # accept root pointing at the extracted folder itself, as well as its parent
        base = root if root.name == folder or (root / meta).is_file() else root / folder
        layout = [str(base / name) for name in (*train, test, meta)]
        if not base.is_dir():
            raise layout_error(dataset, f"{base} does not exist", layout, how)
        missing = [name for name in (*train, test, meta) if not (base / name).is_file()]
        if missing:
            raise layout_error(dataset, f"{base} lacks {', '.join(missing)}", layout, how)
        files = {name: base / name for name in train}
        files.update(test=base / test, meta=base / meta)
        return files

    def decode(root: Path | None, image_size: int) -> Decoded:
        files = find(root)
        meta_dict = load_pickle(files["meta"])
        if names_key not in meta_dict:
            raise DatasetError(f"{files['meta']}: expected key {names_key!r}, found "
                               f"{sorted(meta_dict)}")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta_dict[names_key]]
        parts = [read_batch(files[name], label_key, len(classes)) for name in train]
        train_x = torch.cat([x for x, _ in parts])
        train_y = torch.cat([y for _, y in parts])
        test_x, test_y = read_batch(files["test"], label_key, len(classes))
        return Decoded(train_x, train_y, test_x, test_y, classes)

    return Reader(
        sources=lambda root: list(find(root).values()),
        decode=decode,
        channels=3,
        native_size=32,
        default_image_size=32,
        mean=mean,
        std=std,
    )


CIFAR10 = cifar_reader(
    "cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
    train=[f"data_batch_{k}" for k in range(1, 6)], test="test_batch", meta="batches.meta",
    label_key=b"labels", names_key=b"label_names",
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = cifar_reader(
    "cifar100", "cifar-100-python", "cifar-100-python.tar.gz",
    train=["train"], test="test", meta="meta",
    label_key=b"fine_labels", names_key=b"fine_label_names",
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
)
