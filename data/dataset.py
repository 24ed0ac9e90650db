"""ImageData: a whole image dataset held in memory as uint8 tensors."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass
class ImageData:
    """Train, test and optional validation splits of one dataset, already at ``image_size``.

    Images are (N, C, H, W) uint8 with H = W = image_size; labels are (N,) int64 in
    [0, num_classes). ``mean`` and ``std`` are per-channel statistics on the [0, 1] scale, for
    ``normalize``. ``val_x``/``val_y`` are held out from train when ``val_fraction > 0``,
    else None. The tensors are left out of the repr: printing 60000 images helps nobody.
    """

    name: str
    train_x: Tensor = field(repr=False)
    train_y: Tensor = field(repr=False)
    test_x: Tensor = field(repr=False)
    test_y: Tensor = field(repr=False)
    val_x: Tensor | None = field(repr=False)
    val_y: Tensor | None = field(repr=False)
    num_classes: int
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]

    def to(self, device: torch.device | str) -> ImageData:
        """A copy with every tensor on ``device`` (the metadata is shared)."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return replace(
            self,
            train_x=move(self.train_x), train_y=move(self.train_y),
            test_x=move(self.test_x), test_y=move(self.test_y),
            val_x=move(self.val_x), val_y=move(self.val_y),
        )

    @property
    def sizes(self) -> dict[str, int]:
        """Sample count per split, e.g. {"train": 54000, "val": 6000, "test": 10000}."""
        out = {"train": len(self.train_y), "test": len(self.test_y)}
        if self.val_y is not None:
            out["val"] = len(self.val_y)
        return out
