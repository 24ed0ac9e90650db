"""Resizing whole uint8 image tensors, so a dataset can be trained at any resolution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

# images resized per chunk, which bounds the temporary copies: as floats, all 60000 Fashion-MNIST
# images at 224 px would be 12 GB, a chunk of 1024 is 200 MB
CHUNK = 1024


def resize_images(x: Tensor, size: int) -> Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8, bilinear with antialiasing (which only
    acts when shrinking), rounded back to uint8. Returns x itself when it already has that size.
    """
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) uint8 images, got {tuple(x.shape)} {x.dtype}")
    if x.shape[-2:] == (size, size):
        return x
    out = torch.empty((x.shape[0], x.shape[1], size, size), dtype=torch.uint8, device=x.device)
    for start in range(0, x.shape[0], CHUNK):
        chunk = x[start:start + CHUNK]
        if x.device.type == "cpu":
            # the CPU has a native uint8 kernel, about 3x faster than going through float
            # (and within 1 of its rounded result)
            out[start:start + CHUNK] = F.interpolate(
                chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True
            )
        else:
            resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear",
                                    align_corners=False, antialias=True)
            out[start:start + CHUNK] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def check_crop_pct(crop_pct: float | None) -> None:
    if crop_pct is not None and (isinstance(crop_pct, bool) or not 0.0 < crop_pct <= 1.0):
        raise ValueError(f"eval_crop_pct must be null (no crop) or in (0, 1], e.g. 0.875, got "
                         f"{crop_pct!r}")


def eval_crop(x: Tensor, crop_pct: float) -> Tensor:
    """(N, C, S, S) uint8 -> (N, C, S, S) uint8 as timm's eval transform: resize to
    floor(S / crop_pct) (``resize_images``), then cut out the centre S x S (offset
    round((floor(S / crop_pct) - S) / 2), as torchvision's CenterCrop).

    timm resizes the source image once; this resizes the stored S px image, so an image
    stored at another size than its source is resampled twice (bilinear both times).
    """
    check_crop_pct(crop_pct)
    size = x.shape[-1]
    scaled = math.floor(size / crop_pct)
    top = int(round((scaled - size) / 2.0))
    return resize_images(x, scaled)[..., top:top + size, top:top + size].contiguous()
