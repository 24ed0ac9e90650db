"""load_dataset: a dataset by name (a key of DATASETS), from the cache when it is fresh, else
decoded from source."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from torch import Tensor

from data.cache import cache_key, cache_path, default_cache_dir, load_split, save_split
from data.cifar import CIFAR10, CIFAR100
from data.dataset import ImageData
from data.digits import DIGITS
from data.idx import FASHION_MNIST, MNIST
from data.imagefolder import IMAGEFOLDER
from data.normalize import channel_stats
from data.reader import DatasetError, Reader
from data.resize import check_crop_pct, eval_crop, resize_images
from data.split import check_fraction, check_val_seed, holdout

log = logging.getLogger(__name__)

Split = tuple[Tensor, Tensor, list[str]]  # images (N, C, S, S) uint8, labels (N,), classes

# The datasets load_dataset knows, by name (conf/data/<name>.yaml's data.name).
DATASETS: dict[str, Reader] = {
    "digits": DIGITS,
    "mnist": MNIST,
    "fashion_mnist": FASHION_MNIST,
    "cifar10": CIFAR10,
    "cifar100": CIFAR100,
    "imagefolder": IMAGEFOLDER,
}


def load_dataset(
    name: str,
    root: str | None = None,
    image_size: int | None = None,
    val_fraction: float = 0.0,
    val_seed: int | None = 0,
    seed: int = 0,
    cache_dir: str | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    num_classes: int | None = None,
    channels: int | None = None,
    eval_crop_pct: float | None = None,
) -> ImageData:
    """Load dataset ``name`` (a key of DATASETS) as uint8 tensors resized to image_size.

    root: where its files are (default: the reader's usual place, if it has one).
    image_size: side of the square images (default: the dataset's native size; 64 for
        imagefolder).
    val_fraction: fraction in [0, 1) of train held out as val_x/val_y (never trained on),
        class-stratified (data/split.py: each class keeps its share, to one sample).
    val_seed: the seed that chooses the held-out samples. Fixed (default 0) rather than the
        run's seed, so every run of a sweep, whatever its seed or arm, is selected on the same
        validation images: a difference in val_acc is then the models', not the splits'.
        None: the run's ``seed`` (each seed validates on other images).
    seed: the run's seed; used only when val_seed is None.
    cache_dir: where decoded splits are cached (default $MIXERLAB_CACHE, else
        ~/.cache/mixer-symmetry-lab).
    max_train, max_test: keep only the first n samples of train / test (before the val
        hold-out, which then takes its fraction of those n), for fast tests and tiny probes.
    num_classes, channels: what the config expects; a dataset that differs raises
        DatasetError rather than training a wrongly sized model.
    eval_crop_pct: None, or in (0, 1]: test and validation images are evaluated as timm's
        eval transform does (resized to floor(image_size / eval_crop_pct), centre-cropped
        back to image_size; data/resize.py), the counterpart of augment.random_resized_crop.

    The cache holds the full train and test splits; the val hold-out and max_* act after it.
    Raises DatasetError for an unknown name or missing / malformed data (naming the path,
    the expected layout and how to get the data), ValueError for an invalid argument.
    """
    reader = DATASETS.get(name)
    if reader is None:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {sorted(DATASETS)}")
    check_fraction(val_fraction)
    check_val_seed(val_seed)
    check_crop_pct(eval_crop_pct)
    for arg, value in (("max_train", max_train), ("max_test", max_test)):
        if value is not None and value < 1:
            raise ValueError(f"{arg} must be None or >= 1, got {value}")
    size = reader.default_image_size if image_size is None else image_size
    if size < 1:
        raise ValueError(f"image_size must be >= 1, got {size}")
    if channels is not None and channels != reader.channels:
        raise DatasetError(f"{name} has {reader.channels} channel(s), but channels={channels} "
                           f"was asked for; set data.channels to {reader.channels}")
    if root is not None:
        where: Path | None = Path(root).expanduser()
    else:
        where = Path(reader.default_root) if reader.default_root else None

    (train_x, train_y, classes), (test_x, test_y, _) = _splits(
        name, reader, where, size, Path(cache_dir).expanduser() if cache_dir else None
    )
    if num_classes is not None and num_classes != len(classes):
        raise DatasetError(
            f"{name} at {where} has {len(classes)} classes ({', '.join(classes[:5])}"
            f"{', ...' if len(classes) > 5 else ''}), but num_classes={num_classes} was asked "
            f"for; set data.num_classes to {len(classes)} or point data.root at the right data"
        )
    if reader.mean is not None and reader.std is not None:
        mean, std = reader.mean, reader.std
    else:
        mean, std = channel_stats(train_x)  # on the full train split, whatever max_train is

    train_x, train_y = train_x[:max_train], train_y[:max_train]
    test_x, test_y = test_x[:max_test], test_y[:max_test]
    train_x, train_y, val_x, val_y = holdout(train_x, train_y, val_fraction,
                                             seed if val_seed is None else val_seed)
    if eval_crop_pct is not None:
        test_x = eval_crop(test_x, eval_crop_pct)
        val_x = None if val_x is None else eval_crop(val_x, eval_crop_pct)
    return ImageData(
        name=name, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
        val_x=val_x, val_y=val_y, num_classes=len(classes), channels=reader.channels,
        image_size=size, mean=tuple(mean), std=tuple(std), classes=list(classes),
    )


def _splits(name: str, reader: Reader, root: Path | None, size: int,
            cache_dir: Path | None) -> tuple[Split, Split]:
    """The full (train, test) splits at ``size`` px: from the cache when both files are
    fresh, else decoded, resized and written to it."""
    sources = reader.sources(root)  # first: a missing dataset fails here, cache or not
    directory = cache_dir if cache_dir is not None else default_cache_dir()
    key = cache_key(name, size, sources)
    # a dataset at its default place is cached by where that is (sklearn's digits live in each
    # venv): two checkouts sharing ~/.cache then never overwrite each other's files
    where = root if root is not None else (sources[0].parent if sources else None)
    paths = {split: cache_path(directory, name, size, where, split) for split in ("train", "test")}
    cached = [load_split(paths[s], key, reader.channels, size) for s in ("train", "test")]
    if cached[0] is not None and cached[1] is not None:
        return cached[0], cached[1]

    start = time.perf_counter()
    decoded = reader.decode(root, size)
    train_x = resize_images(decoded.train_x, size)
    test_x = resize_images(decoded.test_x, size)
    for split, x in (("train", train_x), ("test", test_x)):
        if x.shape[1] != reader.channels:  # a reader bug, not a data problem
            raise RuntimeError(f"{name} {split}: decoded {x.shape[1]} channels, expected "
                               f"{reader.channels}")
    log.info("decoded %s (%d train, %d test images at %d px) in %.2f s", name, len(train_x),
             len(test_x), size, time.perf_counter() - start)
    train = (train_x, decoded.train_y, decoded.classes)
    test = (test_x, decoded.test_y, decoded.classes)
    for split, (x, y, classes) in (("train", train), ("test", test)):
        save_split(paths[split], key, x, y, classes)
    return train, test
