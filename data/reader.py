"""The contract every dataset format implements: find its files, then decode them; and the
one error a missing or malformed dataset raises.

Finding and decoding are separate so that the cache can fingerprint the source files (and a
missing dataset can fail with its layout) without decoding anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor


class DatasetError(ValueError):
    """A dataset that cannot be read: missing files, a wrong layout, a truncated or corrupt file,
    or a config that does not match the data (class or channel count).

    The message names the path, the expected layout and how to get the data, so a run fails
    once, up front, with everything needed to fix it.
    """


def layout_error(dataset: str, problem: str, layout: list[str], how_to_get: str) -> DatasetError:
    """A DatasetError for data that is missing or laid out wrongly.

    ``problem`` says what is wrong and where (it should name the path), ``layout`` lists the
    expected files and folders one per line, ``how_to_get`` says where the data comes from.
    """
    lines = "\n".join(f"  {entry}" for entry in layout)
    return DatasetError(
        f"{dataset}: {problem}\nexpected layout:\n{lines}\nhow to get it: {how_to_get}"
    )


@dataclass
class Decoded:
    """One dataset as decoded from its source files.

    train_x (N, C, H, W) uint8, train_y (N,) int64, test_x (M, C, H, W) uint8, test_y (M,)
    int64; ``classes[k]`` names label k.
    """

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: list[str]


@dataclass(frozen=True)
class Reader:
    """How to find and decode one dataset.

    sources(root) -> the files the data is decoded from (what the cache key fingerprints);
        raises DatasetError naming root, the expected layout and how to get the data.
    decode(root, image_size) -> Decoded. Readers of fixed-size images ignore image_size and
        return ``native_size`` images (the loader resizes them); readers of images of mixed
        sizes (``native_size`` None) must return image_size images.
    mean, std: per-channel statistics on the [0, 1] scale; None to compute them from the
        train split.
    default_root: where the data lives when no root is given; None when it has no usual
        place (the reader then asks for one).
    """

    sources: Callable[[Path | None], list[Path]]
    decode: Callable[[Path | None, int], Decoded]
    channels: int
    native_size: int | None
    default_image_size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    default_root: str | None = None
