"""uint8 images to normalised floats, on whatever device they live."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torch import Tensor


def normalize(x_uint8: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(B, C, H, W) uint8 -> (B, C, H, W) float32 (x / 255 - mean) / std, per channel.

    mean and std are on the [0, 1] scale, one value per channel. The result is on x's device.
    """
    if x_uint8.dtype != torch.uint8 or x_uint8.ndim != 4:
        raise ValueError(
            f"expected (B, C, H, W) uint8 images, got {tuple(x_uint8.shape)} {x_uint8.dtype}"
        )
    channels = x_uint8.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"need one mean and std per channel ({channels}), got mean {mean} "
                         f"and std {std}")
    shift, scale = _affine(tuple(mean), tuple(std), x_uint8.device)
    return torch.addcmul(shift, x_uint8.float(), scale)


@lru_cache(maxsize=32)
def _affine(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
            ) -> tuple[Tensor, Tensor]:
    """(1, C, 1, 1) shift and scale such that (x / 255 - mean) / std = x * scale + shift: one
    multiply-add per pixel. Cached so a training loop does not copy them to the device at
    every batch."""
    # ordinary tensors even when first called under inference_mode: they outlive that call
    with torch.inference_mode(False):
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        return -mean_t / std_t, 1.0 / (255.0 * std_t)


def channel_stats(x_uint8: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of (N, C, H, W) uint8 images on the [0, 1]
    scale, for datasets without published statistics."""
    x = x_uint8.double() / 255.0  # double: sums over millions of pixels stay exact enough
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3), unbiased=False)
    return tuple(mean.tolist()), tuple(std.tolist())


def to_pixels(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Inverse of ``normalize``: (B, C, H, W) normalised floats -> float32 pixel values, rounded
    to the integers 0..255 a uint8 image holds (for the ops defined on pixels: RandAugment)."""
    shift, scale = _affine(tuple(mean), tuple(std), x.device)
    return ((x - shift) / scale).round_().clamp_(0.0, 255.0)


def from_pixels(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(B, C, H, W) float pixel values 0..255 -> normalised, exactly as ``normalize`` does."""
    shift, scale = _affine(tuple(mean), tuple(std), x.device)
    return torch.addcmul(shift, x, scale)
