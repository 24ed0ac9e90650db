"""The IDX format of MNIST and Fashion-MNIST, and the two readers built on it.

An IDX file is a big-endian header, the magic number 0x0000TTDD (TT the element type, 0x08
for unsigned bytes; DD the number of dimensions), one uint32 per dimension, then the raw
elements. Images are 0x00000803 (N, 28, 28), labels 0x00000801 (N,). Files may be gzipped.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from data.reader import DatasetError, Decoded, Reader, layout_error

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DIGIT_CLASSES = [str(k) for k in range(10)]


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The array stored in the IDX file ``path`` (optionally gzipped), uint8 with the header's
    shape. Raises DatasetError naming the file when the magic number is not ``magic`` or the
    byte count does not match the header (a truncated download)."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip reports truncation as EOFError
        raise DatasetError(f"{path}: cannot read it ({e}); the file is corrupt or truncated, "
                           "download it again") from e
    if len(raw) < 4:
        raise DatasetError(f"{path}: expected an IDX header, found {len(raw)} bytes")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise DatasetError(
            f"{path}: not an IDX file of this kind: magic number 0x{found:08x}, "
            f"expected 0x{magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: expected at least {header} bytes, found {len(raw)}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: header says shape {tuple(dims)}, so expected {expected} bytes, "
            f"found {len(raw)}; the file is truncated or corrupt, download it again"
        )
    # copy: frombuffer over immutable bytes gives a read-only array torch would warn about
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def idx_reader(
    dataset: str, classes: list[str], how_to_get: str, default_root: str,
    mean: float, std: float,
) -> Reader:
    """A Reader for an MNIST-layout dataset: the four IDX files side by side in root."""

    def find(root: Path | None) -> dict[str, Path]:
        root = Path(root if root is not None else default_root)
        layout = [f"{root / name}[.gz]" for name in FILES.values()]
        if not root.is_dir():
            raise layout_error(dataset, f"{root} does not exist or is not a folder", layout,
                               how_to_get)
        found, missing = {}, []
        for key, name in FILES.items():
            # the uncompressed file if both exist: it is read without inflating 47 MB
            candidates = [root / name, root / f"{name}.gz"]
            hit = next((p for p in candidates if p.is_file()), None)
            if hit is None:
                missing.append(f"{name}[.gz]")
            else:
                found[key] = hit
        if missing:
            raise layout_error(dataset, f"{root} lacks {', '.join(missing)}", layout,
                               how_to_get)
        return found

    def decode(root: Path | None, image_size: int) -> Decoded:
        files = find(root)
        arrays = {}
        for split in ("train", "test"):
            x = read_idx(files[f"{split}_x"], IMAGES_MAGIC)
            y = read_idx(files[f"{split}_y"], LABELS_MAGIC)
            if x.ndim != 3 or y.ndim != 1:
                raise DatasetError(f"{files[f'{split}_x']}: expected (N, H, W) images and (N,) "
                                   f"labels, found {x.shape} and {y.shape}")
            if len(x) != len(y):
                raise DatasetError(
                    f"{files[f'{split}_x']} holds {len(x)} images but "
                    f"{files[f'{split}_y']} holds {len(y)} labels"
                )
            if len(y) and int(y.max()) >= len(classes):
                raise DatasetError(f"{files[f'{split}_y']}: label {int(y.max())} out of range "
                                   f"for {len(classes)} classes")
            arrays[f"{split}_x"] = torch.from_numpy(x).unsqueeze(1)  # (N, 1, H, W)
            arrays[f"{split}_y"] = torch.from_numpy(y).long()
        return Decoded(**arrays, classes=list(classes))

    return Reader(
        sources=lambda root: list(find(root).values()),
        decode=decode,
        channels=1,
        native_size=28,
        default_image_size=28,
        mean=(mean,),
        std=(std,),
        default_root=default_root,
    )


MNIST = idx_reader(
    "mnist", DIGIT_CLASSES,
    "download the four files from https://yann.lecun.com/exdb/mnist/ (or a mirror such as "
    "https://ossci-datasets.s3.amazonaws.com/mnist/) into that folder; gzipped or not",
    default_root="/usr/share/datasets/mnist", mean=0.1307, std=0.3081,
)
FASHION_MNIST = idx_reader(
    "fashion_mnist", FASHION_CLASSES,
    "apt-get install dataset-fashion-mnist (Debian; installs /usr/share/datasets/fashion-mnist), "
    "or download the four files from https://github.com/zalandoresearch/fashion-mnist into "
    "that folder",
    default_root="/usr/share/datasets/fashion-mnist", mean=0.2860, std=0.3530,
)
