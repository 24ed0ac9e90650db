"""A folder of image files, one subfolder per class (the ImageNet-100 layout):

    root/train/<class>/<image>.{jpg,jpeg,png}
    root/val/<class>/<image>.{jpg,jpeg,png}

Classes are the sorted subfolder names of train/, and val/ is labelled with that same list
(it becomes the test split). Each image is decoded with Pillow, converted to RGB, resized so
its shorter side is image_size (bicubic) and center-cropped to image_size x image_size.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data.reader import DatasetError, Decoded, Reader, layout_error

log = logging.getLogger(__name__)

EXTENSIONS = {".jpg", ".jpeg", ".png"}
LAYOUT = [
    "ROOT/train/<class>/<image>.{jpg,jpeg,png}   (one folder per class)",
    "ROOT/val/<class>/<image>.{jpg,jpeg,png}     (class folders named as in train/)",
]
HOW_TO_GET = (
    "arrange any classification set this way; for ImageNet-100, take the 100 classes of "
    "ImageNet (ILSVRC-2012, https://image-net.org) listed by Tian et al. 2019 (CMC) and sort its "
    "train and val images into one folder per WordNet id"
)


def _images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )


def scan(root: Path | None) -> tuple[list[str], dict[str, list[tuple[Path, int]]]]:
    """Class names and, per split ("train", "val"), the (image path, label) pairs in sorted
    order. Raises DatasetError naming what is missing."""

    def fail(problem: str) -> DatasetError:
        layout = [entry.replace("ROOT", str(root)) for entry in LAYOUT]
        return layout_error("imagefolder", problem, layout, HOW_TO_GET)

    if root is None:
        raise fail("no root given: set data.root to the folder holding train/ and val/")
    root = Path(root)
    if not root.is_dir():
        raise fail(f"{root} does not exist or is not a folder")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise fail(f"{root} has no {split}/ folder")
    classes = sorted(d.name for d in (root / "train").iterdir()
                     if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise fail(f"{root / 'train'} has no class folders")
    unknown = sorted(d.name for d in (root / "val").iterdir()
                     if d.is_dir() and not d.name.startswith(".") and d.name not in classes)
    if unknown:
        raise fail(f"{root / 'val'} has class folders that train/ lacks: {unknown[:5]}")
    files: dict[str, list[tuple[Path, int]]] = {"train": [], "val": []}
    for label, name in enumerate(classes):
        images = _images(root / "train" / name)
        if not images:
            raise fail(f"{root / 'train' / name} holds no .jpg/.jpeg/.png image")
        files["train"] += [(p, label) for p in images]
        if (root / "val" / name).is_dir():
            files["val"] += [(p, label) for p in _images(root / "val" / name)]
    if not files["val"]:
        raise fail(f"{root / 'val'} holds no .jpg/.jpeg/.png image")
    return classes, files


def load_image(path: Path, size: int) -> np.ndarray:
    """(3, size, size) uint8: the image's centered square, its shorter side, resized to size."""
    try:
        with Image.open(path) as img:
            # let the JPEG decoder downscale by a power of two while staying >= size: far
            # cheaper than decoding a full ImageNet photo to shrink it to 64 px
            img.draft("RGB", (size, size))
            rgb = img.convert("RGB")
    except (OSError, ValueError) as e:  # UnidentifiedImageError is an OSError
        raise DatasetError(f"{path}: cannot decode the image ({e})") from e
    w, h = rgb.size
    side = min(w, h)
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    out = rgb.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(out).transpose(2, 0, 1)


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    """(N, 3, size, size) uint8, decoded on a thread pool (Pillow releases the GIL)."""
    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    workers = min(32, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, image in enumerate(pool.map(lambda p: load_image(p, size), paths)):
            out[i] = image
    return torch.from_numpy(out)


def sources(root: Path | None) -> list[Path]:
    """Every train and val image file (what the cache key fingerprints)."""
    _, files = scan(root)
    return [p for split in ("train", "val") for p, _ in files[split]]


def decode(root: Path | None, image_size: int) -> Decoded:
    """train/ as the train split and val/ as the test split, (N, 3, image_size, image_size)
    uint8 images with int64 labels indexing the sorted train class folders."""
    classes, files = scan(root)
    log.info("decoding %d train and %d val images under %s at %d px", len(files["train"]),
             len(files["val"]), root, image_size)
    splits = {}
    for split in ("train", "val"):
        paths = [p for p, _ in files[split]]
        labels = torch.tensor([label for _, label in files[split]], dtype=torch.int64)
        splits[split] = (load_images(paths, image_size), labels)
    return Decoded(*splits["train"], *splits["val"], classes=classes)


IMAGEFOLDER = Reader(
    sources=sources, decode=decode, channels=3, native_size=None, default_image_size=64,
    mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
)
