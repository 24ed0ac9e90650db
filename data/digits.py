"""scikit-learn's bundled 8x8 handwritten digits (1797 images, values 0..16, 10 classes).

The split is fixed and independent of any seed: sklearn's train_test_split with
test_size=360, stratify=labels, random_state=0, giving 1437 train / 360 test images with the
class balance of the whole set. Pixels are rescaled from 0..16 to 0..255.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from data.reader import Decoded, Reader

TEST_SIZE = 360


def sources(root: Path | None) -> list[Path]:
    """The csv scikit-learn decodes the digits from, so that the cache follows an upgrade of
    it; none if this scikit-learn keeps it elsewhere (the cache key then holds the name only)."""
    # find_spec locates the package without importing it: importing scikit-learn costs ~1 s,
    # paid by every job of a sweep otherwise, while the cache makes decode() rare.
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return []
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    return [path] if path.is_file() else []


def decode(root: Path | None, image_size: int) -> Decoded:
    """Train (1437, 1, 8, 8) and test (360, 1, 8, 8) uint8 images with int64 labels."""
    from sklearn.datasets import load_digits  # slow import, only on a cache miss
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    train, test = train_test_split(
        np.arange(len(labels)), test_size=TEST_SIZE, stratify=labels, random_state=0
    )
    # sorted: keep the original order within each split, so max_train takes a prefix of it
    train, test = np.sort(train), np.sort(test)
    return Decoded(
        train_x=torch.from_numpy(images[train]),
        train_y=torch.from_numpy(labels[train]),
        test_x=torch.from_numpy(images[test]),
        test_y=torch.from_numpy(labels[test]),
        classes=[str(k) for k in range(10)],
    )


DIGITS = Reader(sources=sources, decode=decode, channels=1, native_size=8, default_image_size=8)
