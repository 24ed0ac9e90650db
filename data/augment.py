"""Training augmentation applied to a whole batch at once, on the batch's device.

Every op is vectorised over the batch (masks, gathers and where, no Python loop over samples)
and draws all of its randomness from the generator passed in, so a seed reproduces a run on
CPU and GPU alike. Order, as in timm's pipeline: random (resized) crop, horizontal flip,
RandAugment, random erasing (the per-image ops), then mixup / cutmix (which pairs images
across the batch).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from data.beta import sample_beta
from data.bilinear import bilinear
from data.normalize import from_pixels, to_pixels
from data.randaugment import RandAugment, parse_spec

# random erasing as timm's RandomErasing defaults: a rectangle of 2 % to 1/3 of the image,
# aspect ratio log-uniform in [0.3, 1 / 0.3], filled with per-pixel normal noise
ERASE_AREA = (0.02, 1.0 / 3.0)
ERASE_LOG_RATIO = (math.log(0.3), math.log(1.0 / 0.3))
# random resized crop as timm's RandomResizedCropAndInterpolation (and torchvision's) defaults:
# 8 % to all of the area, aspect ratio log-uniform in [3/4, 4/3], 10 tries for a box that fits
RRC_SCALE = (0.08, 1.0)
RRC_LOG_RATIO = (math.log(3.0 / 4.0), math.log(4.0 / 3.0))
RRC_TRIES = 10


class BatchAugment:
    """Augment a batch of normalised images and turn its labels into soft targets.

    crop_padding: pad by this many pixels, then crop back to H x W at a random offset per
        sample (0 disables; not with random_resized_crop). The padding is ``fill`` (0: the
        mean colour, as the input is normalised; pass -mean/std per channel to pad with black
        as the usual recipe does).
    flip: mirror each sample left-right with probability 0.5.
    mixup, cutmix: Beta alpha of mixup / cutmix (0 disables), as timm's Mixup in batch mode:
        one lam per batch, each sample mixed with its partner in the reversed batch; when both
        are on, cutmix is chosen with probability switch_prob; a mix happens at all with
        probability mix_prob. Cutmix's lam is corrected to the clipped box's area.
    erase: probability that a sample gets a random rectangle of normal noise.
    label_smoothing: the one-hot targets become 1 - s + s / K and s / K (before mixing).
    random_resized_crop: cut a box of 8 % to 100 % of the area, aspect ratio 3/4 to 4/3, per
        sample and resize it back to H x W, bilinear (timm's training crop; from the stored
        image, so an upscaled dataset is resampled twice where timm resamples its source once).
    randaugment: None, or a RandAugment spec in timm's form, e.g. "rand-m9-mstd0.5-inc1"
        (data/randaugment.py), applied to the pixel values (needs mean and std); the affine
        ops fill with the mean colour, round(255 * mean), as timm does.
    num_classes: K, the width of the targets.
    mean, std: the per-channel normalisation of the input (ImageData.mean / .std), to get
        back to pixel values for RandAugment.
    """

    def __init__(
        self,
        crop_padding: int = 0,
        flip: bool = False,
        mixup: float = 0.0,
        cutmix: float = 0.0,
        mix_prob: float = 1.0,
        switch_prob: float = 0.5,
        erase: float = 0.0,
        label_smoothing: float = 0.0,
        random_resized_crop: bool = False,
        randaugment: str | None = None,
        *,
        num_classes: int,
        fill: float | Sequence[float] = 0.0,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, int) \
                or crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
        for arg, value in (("flip", flip), ("random_resized_crop", random_resized_crop)):
            if not isinstance(value, bool):
                raise ValueError(f"{arg} must be a bool, got {value!r}")
        if random_resized_crop and crop_padding:
            raise ValueError(f"random_resized_crop=true is the crop (timm's recipe has no padded "
                             f"crop); set crop_padding=0, got crop_padding={crop_padding}")
        for arg, value in (("mixup", mixup), ("cutmix", cutmix)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{arg} (a Beta alpha) must be >= 0, 0 to disable, got {value}")
        for arg, value in (("mix_prob", mix_prob), ("switch_prob", switch_prob),
                           ("erase", erase)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{arg} is a probability, must be in [0, 1], got {value}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        self.randaugment = None
        if randaugment is not None:
            parse_spec(randaugment)  # an unknown spec is named before anything else
            if mean is None or std is None:
                raise ValueError(f"randaugment={randaugment!r} works on pixel values and needs "
                                 "the images' normalisation: pass mean= and std= "
                                 "(ImageData.mean and .std)")
            # timm's fill: the mean colour, round(255 * mean) per channel
            self.randaugment = RandAugment(randaugment,
                                           fill=[min(255, round(255 * m)) for m in mean])
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.random_resized_crop = random_resized_crop
        self.crop_padding = crop_padding
        self.flip = flip
        self.mixup = float(mixup)
        self.cutmix = float(cutmix)
        self.mix_prob = float(mix_prob)
        self.switch_prob = float(switch_prob)
        self.erase = float(erase)
        self.label_smoothing = float(label_smoothing)
        self.num_classes = num_classes
        self.fill = fill

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"BatchAugment({args})"

    def __call__(self, x: Tensor, y: Tensor, generator: torch.Generator | None = None
                 ) -> tuple[Tensor, Tensor]:
        """x (B, C, H, W) float, normalised; y (B,) int64 -> (x', y_soft (B, num_classes)).

        y_soft has x's dtype and rows summing to 1. With every option off, x itself is
        returned. ``generator`` must live on x's device (None: torch's global generator).
        """
        if x.ndim != 4 or not x.is_floating_point():
            raise ValueError(f"expected (B, C, H, W) float images, got {tuple(x.shape)} "
                             f"{x.dtype}")
        if y.shape != (x.shape[0],) or y.dtype != torch.int64:
            raise ValueError(f"expected ({x.shape[0]},) int64 labels, got {tuple(y.shape)} "
                             f"{y.dtype}")
        if generator is not None and generator.device.type != x.device.type:
            raise ValueError(f"the generator is on {generator.device}, the batch on {x.device};"
                             " they must share a device")
        if self.random_resized_crop:
            x = random_resized_crop(x, generator)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, self.fill, generator)
        if self.flip:
            x = random_flip(x, generator)
        if self.randaugment is not None:
            pixels = self.randaugment(to_pixels(x, self.mean, self.std), generator)
            x = from_pixels(pixels, self.mean, self.std).to(x.dtype)
        if self.erase:
            x = random_erase(x, self.erase, generator)
        target = smooth_one_hot(y, self.num_classes, self.label_smoothing, x.dtype)
        if self.mixup or self.cutmix:
            x, target = mix(x, target, self.mixup, self.cutmix, self.mix_prob,
                            self.switch_prob, generator)
        return x, target


def smooth_one_hot(y: Tensor, num_classes: int, smoothing: float, dtype: torch.dtype
                   ) -> Tensor:
    """(B,) int64 -> (B, num_classes): 1 - s + s / K at the label, s / K elsewhere."""
    off = smoothing / num_classes
    return F.one_hot(y, num_classes).to(dtype) * (1.0 - smoothing) + off


def random_crop(x: Tensor, padding: int, fill: float | Sequence[float],
                generator: torch.Generator | None) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W): pad each side by ``padding`` with ``fill`` (a value or one
    per channel), then cut out H x W at an offset drawn per sample."""
    b, c, h, w = x.shape
    p = padding
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    if fill_t.numel() not in (1, c):
        raise ValueError(f"fill needs 1 or {c} values, got {fill_t.numel()}")
    # pad once for the whole batch...
    padded = fill_t.view(1, -1, 1, 1).expand(b, c, h + 2 * p, w + 2 * p).clone()
    padded[:, :, p:p + h, p:p + w] = x
    # ...then gather each sample's window: rows, then columns
    top = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=x.device)
    left = torch.randint(0, 2 * p + 1, (b,), generator=generator, device=x.device)
    rows = top[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = left[:, None] + torch.arange(w, device=x.device)  # (B, W)
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * p))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_resized_crop(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W): per sample, a box of RRC_SCALE of the area and aspect
    ratio (w / h) log-uniform in RRC_LOG_RATIO, at a uniform position, resized to H x W.

    timm's RandomResizedCropAndInterpolation.get_params, vectorised: RRC_TRIES candidate boxes
    per sample, sides round(sqrt(area * ratio)) and round(sqrt(area / ratio)), the first that
    fits is taken; a sample where none fits gets the centre box of the largest aspect ratio in
    range (the whole image when H / W is in range). The resize reads bilinearly inside the box
    only (its edge pixels repeat), as cropping and then resizing does.
    """
    b, _, h, w = x.shape
    device = x.device

    def uniform(lo: float, hi: float, shape: tuple[int, ...]) -> Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator, device=device,
                                           dtype=torch.float64)

    area = h * w * uniform(*RRC_SCALE, (b, RRC_TRIES))
    ratio = torch.exp(uniform(*RRC_LOG_RATIO, (b, RRC_TRIES)))
    box_w = torch.sqrt(area * ratio).round().long().clamp_min(1)
    box_h = torch.sqrt(area / ratio).round().long().clamp_min(1)
    fits = (box_w <= w) & (box_h <= h)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first that fits (0 when none does)
    # fallback: timm's centre crop, clipped to the range of aspect ratios
    lo, hi = math.exp(RRC_LOG_RATIO[0]), math.exp(RRC_LOG_RATIO[1])
    if w / h < lo:
        fb_w, fb_h = w, int(round(w / lo))
    elif w / h > hi:
        fb_w, fb_h = int(round(h * hi)), h
    else:
        fb_w, fb_h = w, h
    any_fits = fits.any(dim=1)
    box_w = torch.where(any_fits, box_w.gather(1, first).squeeze(1), fb_w)
    box_h = torch.where(any_fits, box_h.gather(1, first).squeeze(1), fb_h)
    # top and left uniform over the positions that keep the box inside (randint inclusive)
    top = (uniform(0.0, 1.0, (b,)) * (h - box_h + 1)).floor()
    left = (uniform(0.0, 1.0, (b,)) * (w - box_w + 1)).floor()
    top = torch.where(any_fits, top, float((h - fb_h) // 2))
    left = torch.where(any_fits, left, float((w - fb_w) // 2))
    # output pixel k's centre (k + 0.5) sits at box position (k + 0.5) * box / size, in index
    # coordinates box_start + that - 0.5, kept inside the box
    rows = (torch.arange(h, device=device, dtype=torch.float64) + 0.5)[None] * (box_h / h)[:, None]
    cols = (torch.arange(w, device=device, dtype=torch.float64) + 0.5)[None] * (box_w / w)[:, None]
    rows = torch.minimum(rows - 0.5, box_h[:, None] - 1.0).clamp_min(0.0) + top[:, None]
    cols = torch.minimum(cols - 0.5, box_w[:, None] - 1.0).clamp_min(0.0) + left[:, None]
    cy = rows[:, :, None].expand(b, h, w)
    cx = cols[:, None, :].expand(b, h, w)
    return bilinear(x, cx, cy).to(x.dtype)


def random_flip(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W), each sample mirrored left-right with probability 0.5."""
    flip = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def _box_mask(top: Tensor, height: Tensor, left: Tensor, width: Tensor, h: int, w: int
              ) -> Tensor:
    """(...,) box corners and sizes -> (..., H, W) bool, True inside the box."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[..., None]) & (rows < (top + height)[..., None])
    in_cols = (cols >= left[..., None]) & (cols < (left + width)[..., None])
    return in_rows[..., :, None] & in_cols[..., None, :]


def random_erase(x: Tensor, prob: float, generator: torch.Generator | None) -> Tensor:
    """(B, C, H, W) -> (B, C, H, W): with probability ``prob`` per sample, a rectangle (area
    and aspect ratio as timm's RandomErasing) is replaced by standard normal noise."""
    b, _, h, w = x.shape

    def uniform(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=generator, device=x.device)

    area = h * w * uniform(*ERASE_AREA)
    ratio = torch.exp(uniform(*ERASE_LOG_RATIO))
    # timm retries up to 10 times for a box that fits; clamping keeps it one vectorised draw
    eh = torch.sqrt(area * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(area / ratio).round().clamp(1, w).long()
    top = (uniform(0.0, 1.0) * (h - eh + 1)).long()
    left = (uniform(0.0, 1.0) * (w - ew + 1)).long()
    apply = torch.rand(b, generator=generator, device=x.device) < prob
    mask = _box_mask(top, eh, left, ew, h, w) & apply[:, None, None]  # (B, H, W)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(mask[:, None], noise, x)


def mix(x: Tensor, target: Tensor, mixup: float, cutmix: float, mix_prob: float,
        switch_prob: float, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Mixup / cutmix of x (B, C, H, W) and target (B, K) with the reversed batch, one lam for
    the whole batch (timm's Mixup, mode "batch", correct_lam=True).

    Both ops become one blend x * weight + x.flip(0) * (1 - weight): mixup's weight is lam
    everywhere, cutmix's is 0 inside the box and 1 outside. Every choice stays a tensor, so
    nothing waits on the device.
    """
    _, _, h, w = x.shape
    device = x.device

    def coin(p: float) -> Tensor:
        return torch.rand((), generator=generator, device=device) < p

    apply = coin(mix_prob)
    if mixup and cutmix:
        use_cutmix = coin(switch_prob)
    else:
        use_cutmix = torch.tensor(bool(cutmix), device=device)
    one = torch.ones((), device=device)
    lam_mixup = sample_beta(mixup, (), generator, device) if mixup else one
    lam_cut = sample_beta(cutmix, (), generator, device) if cutmix else one

    # cutmix box as timm's rand_bbox: sides sqrt(1 - lam) of the image's, centred anywhere,
    # clipped at the border; lam is then the area left outside the clipped box
    ratio = torch.sqrt(1.0 - lam_cut)
    cut_h, cut_w = (h * ratio).long(), (w * ratio).long()
    cy = torch.randint(0, h, (), generator=generator, device=device)
    cx = torch.randint(0, w, (), generator=generator, device=device)
    y0, y1 = (cy - cut_h // 2).clamp(0, h), (cy + cut_h // 2).clamp(0, h)
    x0, x1 = (cx - cut_w // 2).clamp(0, w), (cx + cut_w // 2).clamp(0, w)
    box = _box_mask(y0, y1 - y0, x0, x1 - x0, h, w)  # (H, W)
    lam_box = 1.0 - box.sum() / (h * w)

    lam = torch.where(apply, torch.where(use_cutmix, lam_box, lam_mixup), one)
    weight = torch.where(use_cutmix, (~box).to(x.dtype), lam_mixup.to(x.dtype))
    weight = torch.where(apply, weight, one.to(x.dtype))  # (H, W) or ()
    mixed = x * weight + x.flip(0) * (1.0 - weight)
    lam = lam.to(target.dtype)
    return mixed, target * lam + target.flip(0) * (1.0 - lam)
