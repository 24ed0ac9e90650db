"""RandAugment as timm defines it (train.py ``--aa rand-m9-mstd0.5-inc1``), on a whole batch at
once, on the batch's device.

timm's recipe (timm/data/auto_augment.py, ``rand_augment_transform``): each image gets
``num_ops`` ops drawn uniformly, with replacement, from the op list; each is applied with
probability 0.5, at a magnitude drawn afresh for every application from N(m, mstd) and
clipped to [0, 10]; the magnitude maps to the op's argument (``ARGS``), with a random sign
for the signed ones. ``inc1`` selects the ops whose severity grows with the magnitude
(``INCREASING_OPS``: Posterize keeps fewer bits, Solarize a lower threshold, the enhance
factors move away from 1 in either direction).

timm runs the ops on PIL uint8 images; here they run on (B, C, H, W) float tensors holding
the same integer values 0..255 (C = 1 for PIL's mode L, 3 for RGB), each reproducing PIL's
arithmetic and rounding (tests/test_randaugment.py checks every op against PIL). Every
per-image choice stays a tensor: no Python loop over images, no host sync. The ops come in
three kinds, each applied to the whole batch in one pass per layer:

- table ops (AutoContrast, Equalize, Invert, Posterize, Solarize, SolarizeAdd): a 256-entry
  lookup table per image and channel;
- blend ops (Color, Contrast, Brightness, Sharpness: PIL's ImageEnhance):
  floor(clip(d + f (x - d), 0, 255)) in float32 as PIL's Image.blend, with a "degenerate"
  image d (grey, mean grey, black, 3x3-smoothed) and the factor f;
- affine ops (Rotate, ShearX/Y, TranslateX/YRel: PIL's Image.transform): each output pixel
  centre mapped by PIL's matrix, read bilinearly there, truncated; ``fill`` where the point
  falls outside the image (timm's fill: the mean colour, round(255 * mean) per channel).

Differences from timm: the affine ops interpolate bilinearly only (timm's train.py default
``--train-interpolation random`` draws bilinear or bicubic per op); Posterize to 0 bits (m9 +
noise reaches magnitude 10 in ~2 % of draws) gives black, the bit mask's meaning, where
current Pillow refuses 0 bits; ``inc0`` means the plain op set (timm takes any ``inc``
section as inc1).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from data.bilinear import bilinear

LEVEL_DENOM = 10.0  # timm's _LEVEL_DENOM: magnitude 10 is an op's full strength
APPLY_PROB = 0.5  # timm's rand_augment_ops: each drawn op runs with probability 0.5
SPEC_FORM = ("'rand' followed by any of -m<magnitude, an int>, -n<ops per image, an int>, "
             "-mstd<magnitude noise std, a number; > 100: uniform in [0, m]>, -inc<0|1> "
             "(timm's form), e.g. 'rand-m9-mstd0.5-inc1'")


@dataclass(frozen=True)
class RandAugmentSpec:
    """A parsed spec; the defaults are timm's (m 10, 2 ops, no magnitude noise, plain ops)."""

    magnitude: int = 10
    num_ops: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False


def parse_spec(spec: str) -> RandAugmentSpec:
    """'rand-m9-mstd0.5-inc1' -> RandAugmentSpec(9, 2, 0.5, True); ValueError naming an
    unknown spec and the supported form."""
    parts = spec.split("-") if isinstance(spec, str) else []
    values: dict[str, str] = {}
    for part in parts[1:]:
        match = re.fullmatch(r"(mstd|inc|m|n)(\d+(?:\.\d*)?)", part)
        if match is None or match[1] in values:
            values = {}
            break
        values[match[1]] = match[2]
    ok = parts[:1] == ["rand"] and len(values) == len(parts) - 1 and all(
        values.get(key, "0").isdigit() for key in ("m", "n")) and values.get(
        "inc", "0") in ("0", "1") and int(values.get("n", 1)) >= 1
    if not ok:
        raise ValueError(f"unknown RandAugment spec {spec!r}; supported: {SPEC_FORM}")
    return RandAugmentSpec(
        magnitude=int(values.get("m", 10)), num_ops=int(values.get("n", 2)),
        magnitude_std=float(values.get("mstd", 0.0)), increasing=values.get("inc") == "1")


# ------------------------------------------------------------------ magnitude -> argument
# level: (B,) float64 magnitude in [0, 10]; sign: (B,) +-1 (timm's _randomly_negate)

def _signed(full: float) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda level, sign: sign * (level / LEVEL_DENOM * full)


def _enhance_increasing(level: Tensor, sign: Tensor) -> Tensor:
    return (1.0 + sign * (level / LEVEL_DENOM * 0.9)).clamp_min(0.1)


ARGS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "Rotate": _signed(30.0),  # degrees, counter-clockwise
    "Posterize": lambda level, sign: (level / LEVEL_DENOM * 4).floor(),  # bits kept
    "PosterizeIncreasing": lambda level, sign: 4 - (level / LEVEL_DENOM * 4).floor(),
    "Solarize": lambda level, sign: (level / LEVEL_DENOM * 256).floor(),  # threshold
    "SolarizeIncreasing": lambda level, sign: 256 - (level / LEVEL_DENOM * 256).floor(),
    "SolarizeAdd": lambda level, sign: (level / LEVEL_DENOM * 110).floor(),  # added below 128
    "Enhance": lambda level, sign: level / LEVEL_DENOM * 1.8 + 0.1,  # blend factor
    "EnhanceIncreasing": _enhance_increasing,
    "Shear": _signed(0.3),
    "TranslateRel": _signed(0.45),  # fraction of the side
}


# ------------------------------------------------------------------ table ops
# (x (B, C, H, W), argument (B,)) -> (B, C, 256) table of x's dtype: pixel v becomes table[v]

def _values(x: Tensor) -> Tensor:
    """(B, C, 256) float64 identity table."""
    b, c = x.shape[:2]
    return torch.arange(256, device=x.device, dtype=torch.float64).expand(b, c, 256)


def invert_table(x: Tensor, arg: Tensor) -> Tensor:
    return 255.0 - _values(x)


def posterize_table(x: Tensor, bits: Tensor) -> Tensor:
    """Keep the ``bits`` high bits (v & ~(2^(8 - bits) - 1)); 8 or more keeps all."""
    drop = (8 - bits.long()).clamp(0, 8)[:, None, None]
    return ((_values(x).long() >> drop) << drop).double()


def solarize_table(x: Tensor, threshold: Tensor) -> Tensor:
    """v < threshold stays, the rest becomes 255 - v."""
    v = _values(x)
    return torch.where(v < threshold[:, None, None], v, 255.0 - v)


def solarize_add_table(x: Tensor, add: Tensor) -> Tensor:
    """v < 128 becomes min(255, v + add), the rest stays (timm's solarize_add)."""
    v = _values(x)
    return torch.where(v < 128, (v + add[:, None, None]).clamp_max(255.0), v)


def auto_contrast_table(x: Tensor, arg: Tensor) -> Tensor:
    """Per channel, stretch [lo, hi] (its darkest and lightest values) to [0, 255]:
    int(v * 255 / (hi - lo) - lo * 255 / (hi - lo)), clipped (ImageOps.autocontrast)."""
    lo = x.amin(dim=(2, 3)).double()[..., None]
    hi = x.amax(dim=(2, 3)).double()[..., None]
    v = _values(x)
    scale = 255.0 / (hi - lo).clamp_min(1.0)
    stretched = (v * scale - lo * scale).trunc().clamp(0.0, 255.0)
    return torch.where(hi > lo, stretched, v)


def equalize_table(x: Tensor, arg: Tensor) -> Tensor:
    """Per channel, PIL's histogram equalisation (ImageOps.equalize): with h the histogram,
    step = (N - h[last value present]) // 255, pixel v becomes
    (step // 2 + sum(h[:v])) // step; unchanged when step is 0."""
    b, c, h, w = x.shape
    index = x.reshape(b * c, h * w).long()
    # scatter into a fixed-size histogram: bincount would read the maximum back to the host
    hist = torch.zeros(b * c, 256, dtype=torch.long, device=x.device).scatter_add_(
        1, index, torch.ones(1, dtype=torch.long, device=x.device).expand_as(index))
    last = 255 - (hist > 0).flip(1).long().argmax(dim=1, keepdim=True)  # highest value present
    step = (h * w - hist.gather(1, last)) // 255  # (B C, 1)
    before = torch.cumsum(hist, dim=1) - hist  # pixels below each value
    table = ((step // 2 + before) // step.clamp_min(1)).clamp_max(255).double()
    return torch.where(step > 0, table, _values(x).reshape(b * c, 256)).view(b, c, 256)


def apply_table(x: Tensor, table: Tensor) -> Tensor:
    """x (B, C, H, W) integer values 0..255, table (B, C, 256) -> table[b, c, x[b, c, i, j]]."""
    b, c, h, w = x.shape
    return table.to(x.dtype).gather(2, x.reshape(b, c, h * w).long()).view(b, c, h, w)


# ------------------------------------------------------------------ blend ops
# x (B, C, H, W) -> the degenerate image d; the op gives floor(clip(d + f (x - d), 0, 255))

def grey(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 1, H, W): PIL's L of RGB, (19595 R + 38470 G + 7471 B + 2^15) >>
    16 (exact in float32: every sum stays below 2^24); an L image is its own grey."""
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return ((r * 19595 + g * 38470 + b * 7471 + 32768) / 65536).floor()[:, None]


def color_degenerate(x: Tensor) -> Tensor:
    return grey(x).expand_as(x)


def contrast_degenerate(x: Tensor) -> Tensor:
    """The image's mean grey, int(mean + 0.5), everywhere."""
    mean = grey(x).double().mean(dim=(1, 2, 3))
    return (mean + 0.5).floor().to(x.dtype)[:, None, None, None].expand_as(x)


def brightness_degenerate(x: Tensor) -> Tensor:
    return torch.zeros_like(x)


def sharpness_degenerate(x: Tensor) -> Tensor:
    """PIL's SMOOTH filter: 3x3 kernel [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, rounded; the
    one-pixel border is left as it is (PIL does not filter it)."""
    b, c, h, w = x.shape
    if h < 3 or w < 3:
        return x
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5.0
    sums = torch.nn.functional.conv2d(x.reshape(b * c, 1, h, w), kernel[None, None])
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = (sums / 13.0 + 0.5).floor().view(b, c, h - 2, w - 2)
    return out


def blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL's Image.blend(degenerate, x, factor): floor(clip(d + f (x - d), 0, 255)), in
    float32 as PIL computes it; factor (B,)."""
    f = factor.float()[:, None, None, None]
    d, x32 = degenerate.float(), x.float()
    return (d + f * (x32 - d)).clamp(0.0, 255.0).floor().to(x.dtype)


# ------------------------------------------------------------------ affine ops
# (argument (B,), H, W) -> (B, 6): PIL's affine data (a, b, c, d, e, f), which reads output
# pixel centre (X, Y) from input point (a X + b Y + c, d X + e Y + f), pixel k's centre at k + 0.5

def rotate_matrix(degrees: Tensor, h: int, w: int) -> Tensor:
    """PIL's Image.rotate(degrees) (counter-clockwise about the centre, same size): cos and
    sin rounded to 15 decimals as PIL does, so 90 degrees is an exact quarter turn."""
    angle = -torch.deg2rad(degrees.double())
    cos, sin = torch.round(angle.cos(), decimals=15), torch.round(angle.sin(), decimals=15)
    cx, cy = w / 2.0, h / 2.0
    return torch.stack([cos, sin, cx - cos * cx - sin * cy,
                        -sin, cos, cy + sin * cx - cos * cy], dim=1)


def _matrix(a: float | Tensor, b: float | Tensor, c: float | Tensor, d: float | Tensor,
            e: float | Tensor, f: float | Tensor, like: Tensor) -> Tensor:
    return torch.stack([torch.as_tensor(v, dtype=torch.float64, device=like.device).expand(
        like.shape) for v in (a, b, c, d, e, f)], dim=1)


def shear_x_matrix(factor: Tensor, h: int, w: int) -> Tensor:
    return _matrix(1.0, factor, 0.0, 0.0, 1.0, 0.0, factor)


def shear_y_matrix(factor: Tensor, h: int, w: int) -> Tensor:
    return _matrix(1.0, 0.0, 0.0, factor, 1.0, 0.0, factor)


def translate_x_matrix(pct: Tensor, h: int, w: int) -> Tensor:
    """Content moves left by pct * W pixels (right when pct < 0), as timm's translate_x_rel."""
    return _matrix(1.0, 0.0, pct * w, 0.0, 1.0, 0.0, pct)


def translate_y_matrix(pct: Tensor, h: int, w: int) -> Tensor:
    return _matrix(1.0, 0.0, 0.0, 0.0, 1.0, pct * h, pct)


def affine(x: Tensor, matrix: Tensor, fill: Sequence[float]) -> Tensor:
    """x (B, C, H, W) integer values, matrix (B, 6) -> PIL's Image.transform(AFFINE,
    BILINEAR, fillcolor=fill): bilinear with the border clamped, truncated to an integer, fill
    (one value, or one per channel) where the point lies outside [0, W) x [0, H)."""
    b, c, h, w = x.shape
    ys = torch.arange(h, device=x.device, dtype=torch.float64)[:, None] + 0.5
    xs = torch.arange(w, device=x.device, dtype=torch.float64)[None, :] + 0.5
    m = matrix.double()[:, :, None, None]  # (B, 6, 1, 1)
    x_in = m[:, 0] * xs + m[:, 1] * ys + m[:, 2]  # (B, H, W)
    y_in = m[:, 3] * xs + m[:, 4] * ys + m[:, 5]
    out = bilinear(x, x_in - 0.5, y_in - 0.5).floor().to(x.dtype)
    outside = (x_in < 0) | (x_in >= w) | (y_in < 0) | (y_in >= h)
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(1, -1, 1, 1)
    return torch.where(outside[:, None], fill_t, out)


# ------------------------------------------------------------------ the op table


@dataclass(frozen=True)
class Op:
    """One RandAugment op: its kind ("table", "blend" or "affine"), the ARGS entry mapping a
    magnitude to its argument (None: it takes none) and its builder: a table op's
    (x, arg) -> table, a blend op's x -> degenerate, an affine op's (arg, H, W) -> matrix."""

    name: str
    kind: str
    arg: str | None
    build: Callable[..., Tensor]


_ALL_OPS = [
    Op("AutoContrast", "table", None, auto_contrast_table),
    Op("Equalize", "table", None, equalize_table),
    Op("Invert", "table", None, invert_table),
    Op("Rotate", "affine", "Rotate", rotate_matrix),
    Op("Posterize", "table", "Posterize", posterize_table),
    Op("PosterizeIncreasing", "table", "PosterizeIncreasing", posterize_table),
    Op("Solarize", "table", "Solarize", solarize_table),
    Op("SolarizeIncreasing", "table", "SolarizeIncreasing", solarize_table),
    Op("SolarizeAdd", "table", "SolarizeAdd", solarize_add_table),
    Op("Color", "blend", "Enhance", color_degenerate),
    Op("ColorIncreasing", "blend", "EnhanceIncreasing", color_degenerate),
    Op("Contrast", "blend", "Enhance", contrast_degenerate),
    Op("ContrastIncreasing", "blend", "EnhanceIncreasing", contrast_degenerate),
    Op("Brightness", "blend", "Enhance", brightness_degenerate),
    Op("BrightnessIncreasing", "blend", "EnhanceIncreasing", brightness_degenerate),
    Op("Sharpness", "blend", "Enhance", sharpness_degenerate),
    Op("SharpnessIncreasing", "blend", "EnhanceIncreasing", sharpness_degenerate),
    Op("ShearX", "affine", "Shear", shear_x_matrix),
    Op("ShearY", "affine", "Shear", shear_y_matrix),
    Op("TranslateXRel", "affine", "TranslateRel", translate_x_matrix),
    Op("TranslateYRel", "affine", "TranslateRel", translate_y_matrix),
]
OPS_BY_NAME: dict[str, Op] = {op.name: op for op in _ALL_OPS}

# timm's _RAND_TRANSFORMS and _RAND_INCREASING_TRANSFORMS, in timm's order
PLAIN_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
             "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
             "TranslateXRel", "TranslateYRel")
INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                  "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                  "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                  "TranslateXRel", "TranslateYRel")


def op_argument(name: str, level: Tensor, sign: Tensor) -> Tensor:
    """Op ``name``'s argument at magnitude ``level`` (B,) with ``sign`` (B,) +-1, float64."""
    key = OPS_BY_NAME[name].arg
    level = level.double()
    return torch.zeros_like(level) if key is None else ARGS[key](level, sign.double())


def apply_op(name: str, x: Tensor, arg: Tensor, fill: Sequence[float] = (128.0,)) -> Tensor:
    """Op ``name`` on every image of x (B, C, H, W) (integer values 0..255, float), with its
    argument arg (B,) (``op_argument``; ignored by the ops that take none)."""
    op = OPS_BY_NAME[name]
    arg = arg.double()
    if op.kind == "table":
        return apply_table(x, op.build(x, arg))
    if op.kind == "blend":
        return blend(op.build(x), x, arg)
    return affine(x, op.build(arg, x.shape[2], x.shape[3]), fill)


@dataclass
class Draws:
    """A batch's random choices, (num_ops, B) each: op index into the op list, whether it is
    applied, magnitude and sign."""

    op: Tensor
    applied: Tensor
    level: Tensor
    sign: Tensor


class RandAugment:
    """RandAugment of a spec (``parse_spec``) on batches of integer-valued pixels.

    fill: what the affine ops show outside the image, one value or one per channel (timm:
        round(255 * mean) of the normalisation mean; 128 grey without one).
    """

    def __init__(self, spec: str, fill: float | Sequence[float] = 128.0) -> None:
        self.spec = parse_spec(spec)
        self.op_names = INCREASING_OPS if self.spec.increasing else PLAIN_OPS
        values = fill if isinstance(fill, Sequence) else (fill,)
        self.fill = tuple(float(v) for v in values)

    def __repr__(self) -> str:
        return f"RandAugment({self.spec}, fill={self.fill})"

    def draw(self, batch: int, device: torch.device | str,
             generator: torch.Generator | None) -> Draws:
        """The random choices of a batch of ``batch`` images, drawn from ``generator``."""
        shape = (self.spec.num_ops, batch)
        s = self.spec

        def rand() -> Tensor:
            return torch.rand(shape, generator=generator, device=device, dtype=torch.float64)

        op = torch.randint(0, len(self.op_names), shape, generator=generator, device=device)
        applied = rand() < APPLY_PROB
        if s.magnitude_std > 100:  # timm: uniform in [0, m]
            level = rand() * s.magnitude
        else:
            noise = torch.randn(shape, generator=generator, device=device, dtype=torch.float64)
            level = s.magnitude + s.magnitude_std * noise
        level = level.clamp(0.0, LEVEL_DENOM)
        sign = torch.where(rand() > 0.5, -1.0, 1.0).double()  # timm: negate if random() > 0.5
        return Draws(op=op, applied=applied, level=level, sign=sign)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """x (B, C, H, W), uint8 or floats holding 0..255 integers, C 1 or 3 -> the same,
        augmented. ``generator`` must live on x's device (None: torch's global one)."""
        return self.apply(x, self.draw(len(x), x.device, generator))

    def apply(self, x: Tensor, draws: Draws) -> Tensor:
        """x augmented with given draws: each layer applies, per image, its drawn op."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"RandAugment takes (B, C, H, W) images with C = 1 (grey) or 3 "
                             f"(RGB), got {tuple(x.shape)}")
        if len(self.fill) not in (1, x.shape[1]):
            raise ValueError(f"fill needs 1 or {x.shape[1]} values, got {len(self.fill)}")
        dtype = x.dtype
        out = x.float()
        for layer in range(self.spec.num_ops):
            out = self._layer(out, draws.op[layer], draws.applied[layer], draws.level[layer],
                              draws.sign[layer])
        return out.to(dtype)

    def _layer(self, x: Tensor, op_index: Tensor, applied: Tensor, level: Tensor,
               sign: Tensor) -> Tensor:
        """One op per image, all images at once: each image's op is of one kind, so running
        the three kinds in turn (the others as identities) applies exactly that op."""
        b, c, h, w = x.shape
        table = _values(x)
        degenerate, factor = x, torch.ones(b, dtype=torch.float64, device=x.device)
        matrix = _matrix(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, factor)
        kinds = {"table": torch.zeros_like(applied), "blend": torch.zeros_like(applied),
                 "affine": torch.zeros_like(applied)}
        for index, name in enumerate(self.op_names):
            op = OPS_BY_NAME[name]
            chosen = applied & (op_index == index)  # (B,)
            kinds[op.kind] |= chosen
            arg = op_argument(name, level, sign)
            if op.kind == "table":
                table = torch.where(chosen[:, None, None], op.build(x, arg), table)
            elif op.kind == "blend":
                degenerate = torch.where(chosen[:, None, None, None], op.build(x), degenerate)
                factor = torch.where(chosen, arg, factor)
            else:
                matrix = torch.where(chosen[:, None], op.build(arg, h, w), matrix)
        x = apply_table(x, table)
        x = torch.where(kinds["blend"][:, None, None, None], blend(degenerate, x, factor), x)
        return torch.where(kinds["affine"][:, None, None, None],
                           affine(x, matrix, self.fill), x)
