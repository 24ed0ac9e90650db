"""RandAugment (data/randaugment.py) against its published definition: timm's auto_augment.py
runs PIL's ImageOps / ImageEnhance / Image.transform, so every batched op is compared with
PIL on small images, plus the closed forms (Invert = 255 - x, ...), timm's magnitude ->
argument mapping, the spec parser and the fused batch against one image at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from data import BatchAugment
from data.randaugment import (
    INCREASING_OPS,
    OPS_BY_NAME,
    PLAIN_OPS,
    RandAugment,
    apply_op,
    op_argument,
    parse_spec,
)

FILL = (124, 116, 104)


def image(mode: str, h: int = 20, w: int = 24, lo: int = 30, hi: int = 200, seed: int = 0
          ) -> np.ndarray:
    """(H, W, C) uint8 in [lo, hi): not full range, so AutoContrast and Equalize act."""
    c = 3 if mode == "RGB" else 1
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi, (h, w, c), dtype=np.uint8)


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float()


def pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)


def pil_op(name: str, img: Image.Image, arg: float) -> Image.Image:
    """timm's op functions (auto_augment.py), with bilinear resampling."""
    fill = FILL if img.mode == "RGB" else FILL[0]
    kw = dict(resample=Image.BILINEAR, fillcolor=fill)
    w, h = img.size
    base = name.removesuffix("Increasing")
    if base == "SolarizeAdd":
        return img.point([min(255, i + int(arg)) if i < 128 else i for i in range(256)]
                         * len(img.getbands()))
    return {
        "AutoContrast": lambda: ImageOps.autocontrast(img),
        "Equalize": lambda: ImageOps.equalize(img),
        "Invert": lambda: ImageOps.invert(img),
        "Rotate": lambda: img.rotate(arg, **kw),
        "Posterize": lambda: ImageOps.posterize(img, int(arg)),
        "Solarize": lambda: ImageOps.solarize(img, int(arg)),
        "Color": lambda: ImageEnhance.Color(img).enhance(arg),
        "Contrast": lambda: ImageEnhance.Contrast(img).enhance(arg),
        "Brightness": lambda: ImageEnhance.Brightness(img).enhance(arg),
        "Sharpness": lambda: ImageEnhance.Sharpness(img).enhance(arg),
        "ShearX": lambda: img.transform(img.size, Image.AFFINE, (1, arg, 0, 0, 1, 0), **kw),
        "ShearY": lambda: img.transform(img.size, Image.AFFINE, (1, 0, 0, arg, 1, 0), **kw),
        "TranslateXRel": lambda: img.transform(img.size, Image.AFFINE,
                                               (1, 0, arg * w, 0, 1, 0), **kw),
        "TranslateYRel": lambda: img.transform(img.size, Image.AFFINE,
                                               (1, 0, 0, 0, 1, arg * h), **kw),
    }[base]()


# -------------------------------------------------------------------- the spec


def test_spec_parses_timms_form():
    spec = parse_spec("rand-m9-mstd0.5-inc1")
    assert (spec.magnitude, spec.num_ops, spec.magnitude_std, spec.increasing) == (9, 2, 0.5,
                                                                                   True)
    assert parse_spec("rand") == parse_spec("rand-m10-n2-mstd0-inc0")  # timm's defaults
    assert parse_spec("rand-n3-m5").num_ops == 3
    assert RandAugment("rand-m9-mstd0.5-inc1").op_names == INCREASING_OPS
    assert RandAugment("rand-m9").op_names == PLAIN_OPS and len(INCREASING_OPS) == 15


@pytest.mark.parametrize("bad", ["rand-m9-x1", "augmix-m3", "rand-m9.5", "rand-inc2",
                                 "rand-m9-m8", "rand-n0", "", "rand-m9-mstd0.5-inc1 "])
def test_unknown_spec_is_named_with_the_supported_form(bad):
    with pytest.raises(ValueError) as err:
        RandAugment(bad)
    assert str(err.value).startswith(f"unknown RandAugment spec {bad!r}; supported: 'rand'")
    assert "rand-m9-mstd0.5-inc1" in str(err.value)
    with pytest.raises(ValueError, match="unknown RandAugment spec"):  # before mean/std
        BatchAugment(randaugment=bad, num_classes=2)


# -------------------------------------------------------------------- magnitude -> argument


@pytest.mark.parametrize(("name", "level", "sign", "want"), [
    ("Rotate", 9, 1, 27.0), ("Rotate", 9, -1, -27.0),              # (m / 10) * 30, signed
    ("PosterizeIncreasing", 9, 1, 1), ("PosterizeIncreasing", 10, 1, 0),  # 4 - int(m / 10 * 4)
    ("Posterize", 9, 1, 3),                                          # int(m / 10 * 4)
    ("SolarizeIncreasing", 9, 1, 26), ("SolarizeIncreasing", 0, 1, 256),  # 256 - int(m * 25.6)
    ("Solarize", 9, 1, 230),
    ("SolarizeAdd", 9, 1, 99),                                       # int(m / 10 * 110)
    ("ColorIncreasing", 9, 1, 1.81), ("ContrastIncreasing", 9, -1, 0.19),  # 1 +- m / 10 * 0.9
    ("BrightnessIncreasing", 10, -1, 0.1), ("SharpnessIncreasing", 0, 1, 1.0),
    ("Color", 9, -1, 1.72),                                          # m / 10 * 1.8 + 0.1
    ("ShearX", 9, -1, -0.27), ("ShearY", 9, 1, 0.27),                # m / 10 * 0.3, signed
    ("TranslateXRel", 9, 1, 0.405), ("TranslateYRel", 9, -1, -0.405),  # m / 10 * 0.45
    ("AutoContrast", 9, 1, 0.0),
])
def test_magnitude_maps_to_timms_argument(name, level, sign, want):
    got = op_argument(name, torch.tensor([float(level)]), torch.tensor([float(sign)]))
    assert got.item() == pytest.approx(want, abs=1e-12)


# -------------------------------------------------------------------- each op


OP_ARGS = {
    "Rotate": [27.0, -13.5, 90.0], "Posterize": [1, 3], "PosterizeIncreasing": [2, 4],
    "Solarize": [100, 230], "SolarizeIncreasing": [26], "SolarizeAdd": [99],
    "Color": [0.3, 1.72], "ColorIncreasing": [1.81, 0.19], "Contrast": [0.5, 1.9],
    "ContrastIncreasing": [1.81, 0.19], "Brightness": [0.37, 1.6],
    "BrightnessIncreasing": [1.81, 0.1], "Sharpness": [0.1, 1.9],
    "SharpnessIncreasing": [1.81, 0.19], "ShearX": [0.27, -0.13], "ShearY": [-0.27],
    "TranslateXRel": [0.405, -0.25], "TranslateYRel": [-0.405, 0.1],
}


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
def test_each_op_equals_pil(name, mode):
    a = image(mode)
    x = to_tensor(a)
    for arg in OP_ARGS.get(name, [0.0]):
        got = apply_op(name, x, torch.tensor([float(arg)], dtype=torch.float64),
                       FILL if mode == "RGB" else FILL[:1])
        want = to_tensor(np.asarray(pil_op(name, pil(a), arg)).reshape(a.shape))
        assert torch.equal(got, want), (name, mode, arg, (got != want).sum().item())


def test_ops_closed_forms():
    """The definitions, on a tiny image: each output from a formula of the input."""
    x = torch.tensor([[[[0.0, 37.0, 127.0, 128.0], [200.0, 255.0, 64.0, 3.0]]]])  # (1, 1, 2, 4)
    one = torch.ones(1, dtype=torch.float64)

    def run(name: str, arg: float = 0.0) -> torch.Tensor:
        return apply_op(name, x, one * arg, (128.0,))

    assert torch.equal(run("Invert"), 255 - x)
    assert torch.equal(run("Posterize", 2), (x.long() & 0b11000000).float())  # 2 high bits
    assert torch.equal(run("Posterize", 0), torch.zeros_like(x))  # 0 bits: black
    assert torch.equal(run("Posterize", 8), x)
    assert torch.equal(run("Solarize", 128), torch.where(x < 128, x, 255 - x))
    assert torch.equal(run("SolarizeAdd", 99), torch.where(x < 128, (x + 99).clamp_max(255), x))
    assert torch.equal(run("Brightness", 0.5), (0.5 * x).floor())  # blend with black
    assert torch.equal(run("Brightness", 1.6), (1.6 * x).clamp_max(255).floor())
    mean_grey = (x.mean() + 0.5).floor()  # 109.25 -> 109
    assert torch.equal(run("Contrast", 0.0), mean_grey.expand_as(x))
    assert torch.equal(run("Contrast", 0.5), (mean_grey + 0.5 * (x - mean_grey)).floor())
    assert torch.equal(run("Sharpness", 0.3), x)  # a 2-row image is all border: nothing smooths
    lo, hi = 0.0, 255.0
    assert torch.equal(run("AutoContrast"), x) and (lo, hi) == (x.min(), x.max())
    stretched = apply_op("AutoContrast", x.clamp(50, 150), one, (128.0,))
    assert (stretched.min(), stretched.max()) == (0, 255)
    # geometry: a quarter turn, and whole-pixel shifts with the fill coming in
    sq = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(apply_op("Rotate", sq, one * 90, (128.0,)), torch.rot90(sq, 1, (2, 3)))
    assert torch.equal(apply_op("Rotate", sq, one * 180, (128.0,)), sq.flip(2, 3))
    left = apply_op("TranslateXRel", sq, one * 0.25, (128.0,))  # 0.25 * 4 = 1 px to the left
    assert torch.equal(left[..., :3], sq[..., 1:]) and (left[..., 3] == 128).all()
    down = apply_op("TranslateYRel", sq, one * -0.5, (128.0,))  # 2 px down
    assert torch.equal(down[..., 2:, :], sq[..., :2, :]) and (down[..., :2, :] == 128).all()
    # colour: factor 0 is the grey image (PIL's L of RGB), factor 1 the image itself
    rgb = torch.tensor([[[[255.0]], [[0.0]], [[0.0]]]])  # pure red: L = 76
    assert apply_op("Color", rgb, one * 0, (0.0,)).flatten().tolist() == [76.0] * 3
    assert torch.equal(apply_op("Color", rgb, one, (0.0,)), rgb)


@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
def test_batched_op_equals_the_op_per_image(name):
    x = torch.cat([to_tensor(image("RGB", 9, 11, lo=0, hi=256, seed=s)) for s in range(4)])
    args = torch.tensor([float(a) for a in (OP_ARGS.get(name, [0.0]) * 4)[:4]],
                        dtype=torch.float64)
    batch = apply_op(name, x, args, FILL)
    single = torch.cat([apply_op(name, x[i:i + 1], args[i:i + 1], FILL) for i in range(4)])
    assert torch.equal(batch, single)


# -------------------------------------------------------------------- the whole transform


def test_fused_batch_equals_each_image_through_its_drawn_ops():
    ra = RandAugment("rand-m9-mstd0.5-inc1", fill=FILL)
    x = torch.cat([to_tensor(image("RGB", 10, 12, lo=0, hi=256, seed=s)) for s in range(24)])
    draws = ra.draw(len(x), "cpu", torch.Generator().manual_seed(3))
    out = ra.apply(x, draws)
    assert out.dtype == x.dtype and torch.equal(out, out.round()) and 0 <= out.min() <= out.max()
    for i in range(len(x)):
        img = x[i:i + 1]
        for layer in range(2):
            if draws.applied[layer, i]:
                name = ra.op_names[int(draws.op[layer, i])]
                arg = op_argument(name, draws.level[layer, i:i + 1], draws.sign[layer, i:i + 1])
                img = apply_op(name, img, arg, FILL)
        assert torch.equal(out[i:i + 1], img), i
    # uint8 in, uint8 out, the same values
    assert torch.equal(ra.apply(x.to(torch.uint8), draws), out.to(torch.uint8))


def test_draws_follow_timms_distribution():
    ra = RandAugment("rand-m9-mstd0.5-inc1")
    d = ra.draw(4000, "cpu", torch.Generator().manual_seed(0))
    assert d.op.shape == (2, 4000) and 0.47 < d.applied.float().mean() < 0.53  # p 0.5 per op
    counts = torch.bincount(d.op.flatten(), minlength=15)
    assert len(counts) == 15 and counts.min() > 8000 / 15 * 0.8  # uniform, with replacement
    assert d.level.mean().item() == pytest.approx(9.0, abs=0.03)  # N(9, 0.5), clipped at 10
    assert d.level.max() == 10 and 0.015 < (d.level == 10).float().mean() < 0.032
    assert 0.47 < (d.sign > 0).float().mean() < 0.53
    same = ra.draw(4000, "cpu", torch.Generator().manual_seed(0))
    assert torch.equal(d.level, same.level) and torch.equal(d.op, same.op)
