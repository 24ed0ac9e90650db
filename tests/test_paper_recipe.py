"""`profile=paper` is the authors' recipe item by item; the training-side controls of issue 15
(no decay on biases, the same drop path in every block, gradient statistics, initial-weight
controls, symmetry at epoch 0)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from data import BatchAugment, load_dataset
from models import Mixer
from training import Trainer, TrainerConfig
from training.schedule import scaled_lr
from training.trainer import GRAD_METRICS, _param_groups, no_weight_decay

CONF = Path(__file__).resolve().parents[1] / "conf"

# The authors' stated arguments: README of github.com/Toshihiro-Ota/paramixer ("Training":
# `./distributed_train.sh 4 ... --model paramixer_s16_224 --drop-path 0.1 --epochs 300
# --batch-size 96 --lr-base 5e-4 --lr-base-size 512 --lr-base-scale 'linear' --opt adamw
# --sched cosine --amp --img-size 224 --weight-decay 0.05 --remode pixel --reprob 0.25
# --aa rand-m9-mstd0.5-inc1 --smoothing 0.1 --mixup 0.8 --cutmix 1.0 --warmup-lr 1e-6
# --warmup-epochs 20`), the defaults of their train.py (timm 0.9.2) for what the README leaves
# out, and their models/mixers.py + layers.py for the model. key: (value, their argument).
# What profile=paper still does differently is the README table "profile=paper against the
# authors' recipe".
AUTHORS: dict[str, tuple[object, str]] = {
    "trainer.epochs": (300, "--epochs 300"),
    "trainer.batch_size": (384, "distributed_train.sh 4 x --batch-size 96 (global batch)"),
    "trainer.lr": (5e-4, "--lr-base 5e-4"),
    "trainer.lr_batch": (512, "--lr-base-size 512 --lr-base-scale linear"),
    "trainer.weight_decay": (0.05, "--opt adamw --weight-decay 0.05"),
    "trainer.warmup_epochs": (20, "--warmup-epochs 20"),
    "trainer.min_lr": (0.0, "train.py --min-lr default 0"),
    "trainer.label_smoothing": (0.1, "--smoothing 0.1"),
    "trainer.grad_clip": (None, "train.py --clip-grad default None: no clipping"),
    "model.drop_path": (0.1, "--drop-path 0.1 (one rate for every block: mixers.py)"),
    "model.dim": (512, "paramixer_s16_224: embed_dim=512"),
    "model.depth": (8, "paramixer_s16_224: num_blocks=8"),
    "model.patch_size": (16, "paramixer_s16_224: patch_size=16"),
    "model.token_ratio": (0.5, "MlpMixer mlp_ratio=(0.5, 4.0)"),
    "model.channel_ratio": (4.0, "MlpMixer mlp_ratio=(0.5, 4.0)"),
    "model.norm": ("table", "layers.py: norm_layer((seq_len, dim)), the symmetric layernorm"),
    "model.mlp_bias": (False, "layers.py: vMlp bias=False, never overridden"),
    "model.init": ("default", "mixers.py _init_weights: xavier-uniform every Linear"),
    "model.v_init": ("default", "mixers.py _init_weights: aMlp.fc2 (V) xavier-uniform too"),
    "data.name": ("cifar10", "--dataset torch/cifar10 --num-classes 10"),
    "data.image_size": (224, "--img-size 224"),
    "data.augment.mixup": (0.8, "--mixup 0.8"),
    "data.augment.cutmix": (1.0, "--cutmix 1.0"),
    "data.augment.erase": (0.25, "--reprob 0.25 --remode pixel"),
    "data.augment.flip": (True, "train.py --hflip default 0.5"),
    "data.augment.randaugment": ("rand-m9-mstd0.5-inc1", "--aa rand-m9-mstd0.5-inc1"),
    "data.augment.random_resized_crop": (True, "train.py --scale 0.08 1 --ratio 3/4 4/3 "
                                               "defaults: timm's RandomResizedCrop"),
    "data.augment.crop_padding": (0, "timm's train transform has no padded crop"),
    "data.augment.switch_prob": (0.5, "train.py --mixup-switch-prob default 0.5"),
    "data.eval_crop_pct": (0.875, "mixers.py _cfg crop_pct=0.875: resize + centre crop"),
}


def paper_config():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=["profile=paper"])


@pytest.fixture(scope="module")
def paper():
    return paper_config()


@pytest.mark.parametrize("key", list(AUTHORS))
def test_paper_profile_is_the_authors_argument(paper, key):
    value, argument = AUTHORS[key]
    got = OmegaConf.select(paper, key, throw_on_missing=True, default="<absent>")
    assert got == value and type(got) is type(value), \
        f"profile=paper {key}={got!r}, the authors' {argument!r} is {value!r}"


def test_paper_profile_step_lr_is_the_linear_rule(paper):
    trainer = TrainerConfig(**OmegaConf.to_container(paper.trainer, resolve=True))
    # timm: lr = lr_base * global_batch / lr_base_size = 5e-4 * 384 / 512
    assert scaled_lr(trainer.lr, trainer.batch_size, trainer.lr_batch) == pytest.approx(3.75e-4)
    assert trainer.grad_clip is None


def tiny(name: str = "asym", **kw) -> Mixer:
    wiring = {"vanilla": ("serial", "vanilla"), "para": ("parallel", "vanilla"),
              "sym": ("parallel", "symmetric"), "asym": ("parallel", "asymmetric")}[name]
    args = {"block": wiring[0], "mlp": wiring[1], "img_size": 8, "patch_size": 2, "dim": 16,
            "depth": 2, **kw}
    return Mixer(**args)


def test_drop_path_is_the_same_in_every_block():
    model = tiny("vanilla", depth=4, drop_path=0.1)
    assert [blk.drop_path.p for blk in model.blocks] == [0.1] * 4


def test_no_weight_decay_on_biases_and_1d_parameters():
    model = tiny("vanilla", mlp_bias=True)  # table norm: LayerNorm((S, C)), 2-D weight and bias
    decay, no_decay = (set(map(id, g["params"])) for g in _param_groups(model, 0.05))
    names = dict(model.named_parameters())
    # timm's param_groups_weight_decay: no decay when ndim <= 1 or the name ends in .bias
    assert names["blocks.0.norm1.bias"].ndim == 2 and id(names["blocks.0.norm1.bias"]) in no_decay
    assert names["blocks.0.norm1.weight"].ndim == 2 and id(names["blocks.0.norm1.weight"]) in decay
    for name, p in names.items():
        want_no_decay = p.ndim <= 1 or name.endswith(".bias")
        assert no_weight_decay(name, p) == want_no_decay, name
        assert (id(p) in no_decay) == want_no_decay and (id(p) in decay) != want_no_decay, name
    assert {id(names[k]) for k in ("blocks.0.channel_mlp.w1", "head.weight", "stem.weight")} \
        <= decay


# --------------------------------------------------------------- initial-weight controls
def test_v_init_zero_starts_as_the_symmixer_with_the_same_w():
    torch.manual_seed(0)
    asym = tiny("asym", v_init="zero", sb_lambda=1.0).eval()
    sym = tiny("sym").eval()
    sym.load_state_dict({k: v for k, v in asym.state_dict().items() if not k.endswith(".v")})
    assert all(torch.count_nonzero(m.v) == 0 for blk in asym.blocks
               for m in (blk.token_mlp, blk.channel_mlp))
    for m in (asym, sym):
        torch.nn.init.normal_(m.head.weight)  # the zero head would hide any difference
    sym.head.load_state_dict(asym.head.state_dict())
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(asym(x), sym(x), rtol=1e-6, atol=1e-6)
    assert float(asym.regularizer().detach()) == 0.0
    assert not torch.allclose(tiny("asym", sb_lambda=1.0).eval()(x), sym(x))  # default V


@pytest.mark.parametrize("name", ["vanilla", "para"])
def test_init_tied_gives_cos_one_at_init(name):
    torch.manual_seed(0)
    m = tiny(name, init="tied").symmetry_measures()
    cos = {k: v for k, v in m.items() if k.endswith("/cos") or k.endswith("/symfrac")}
    assert len(cos) == 12  # 2 blocks + mean, token and channel, cos and symfrac
    assert all(v == pytest.approx(1.0, abs=1e-12) for v in cos.values()), cos
    blk = tiny(name, init="tied").blocks[0].channel_mlp
    assert torch.equal(blk.w2, blk.w1.t())
    default = tiny(name).symmetry_measures()["symmetry/b0/channel/cos"]
    assert abs(default) < 0.2  # independent draws by default


@pytest.mark.parametrize("kwargs, needles", [
    ({"name": "sym", "init": "tied"},
     ["model.init='tied' is not valid with model.mlp='symmetric'", "['default']", "vanilla"]),
    ({"name": "asym", "init": "tied"}, ["model.mlp='asymmetric'", "model.v_init=zero"]),
    ({"name": "vanilla", "v_init": "zero"},
     ["model.v_init='zero' is not valid with model.mlp='vanilla'", "asymmetric"]),
    ({"name": "vanilla", "init": "mirror"}, ["model.init='mirror' is unknown", "'tied'"]),
    ({"name": "asym", "v_init": "small"}, ["model.v_init='small' is unknown", "'zero'"]),
])
def test_init_choices_refused_with_the_valid_ones(kwargs, needles):
    with pytest.raises(ValueError) as err:
        tiny(kwargs.pop("name"), **kwargs)
    for needle in needles:
        assert needle in str(err.value)


# --------------------------------------------------------------- the training loop
class RecordingTracker:
    """A Tracker that keeps every log_metrics call."""

    run_id: str | None = None

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, float]]] = []

    def log_metrics(self, metrics: dict[str, float], step: int, **_: object) -> None:
        self.logged.append((step, dict(metrics)))

    def last_step(self, key: str) -> int | None:
        return None


def train(tmp_path: Path, model: Mixer, grad_clip: float | None,
          tracker: RecordingTracker | None = None) -> tuple[Trainer, Callable[[], dict]]:
    """A Trainer of 2 steps (64 digits, batch 32), one epoch on CPU, and its ``fit``."""
    data = load_dataset("digits", max_train=64, max_test=64, cache_dir=str(tmp_path / "cache"))
    cfg = TrainerConfig(epochs=1, batch_size=32, lr=1e-2, warmup_epochs=0, grad_clip=grad_clip,
                        device="cpu", progress="off", checkpoint=False)
    trainer = Trainer(model, data, cfg, BatchAugment(num_classes=10), tracker or
                      RecordingTracker(), tmp_path / "out")
    return trainer, trainer.fit


@pytest.mark.parametrize("grad_clip", [0.05, None])
def test_gradient_statistics_are_what_the_clip_saw(tmp_path, monkeypatch, grad_clip):
    torch.manual_seed(0)
    model = tiny("asym", sb_lambda=1.0)
    nn.init.normal_(model.head.weight, std=0.1)
    trainer, fit = train(tmp_path, model, grad_clip)
    seen = []  # per step: (norm before clipping, after, 2 lam ||V||) read off the gradients
    params = [p for p in model.parameters()]
    real_clip = nn.utils.clip_grad_norm_

    def total_norm() -> float:
        return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None))

    def clip(ps, max_norm):
        seen.append([total_norm()])
        return real_clip(ps, max_norm)

    def before_step(optimizer, args, kwargs):  # a hook: the lr scheduler wraps step()
        if grad_clip is None:
            seen.append([total_norm()])
        v = math.sqrt(sum(float(m.v.detach().pow(2).sum()) for blk in model.blocks
                          for m in (blk.token_mlp, blk.channel_mlp)))
        seen[-1] += [total_norm(), 2 * 1.0 * v]

    monkeypatch.setattr(nn.utils, "clip_grad_norm_", clip)
    trainer.optimizer.register_step_pre_hook(before_step)
    final = fit()
    assert len(seen) == 2 and set(GRAD_METRICS) <= set(final)
    before, after, reg = (list(col) for col in zip(*seen, strict=True))
    scales = [1.0 if grad_clip is None else min(1.0, grad_clip / (n + 1e-6)) for n in before]
    assert final["grad_norm"] == pytest.approx(sum(before) / 2, rel=1e-5)
    assert final["grad_norm_max"] == pytest.approx(max(before), rel=1e-5)
    assert final["reg_grad_norm"] == pytest.approx(sum(reg) / 2, rel=1e-5)
    assert final["clip_scale"] == pytest.approx(sum(scales) / 2, rel=1e-5)
    assert final["clip_scale_min"] == pytest.approx(min(scales), rel=1e-5)
    for n, a, s in zip(before, after, scales, strict=True):
        assert a == pytest.approx(n * s, rel=1e-4)  # the scale is what was applied
    if grad_clip is None:
        assert final["clip_scale"] == 1.0 and final["clip_frac"] == 0.0
    else:
        assert min(before) > grad_clip  # this test clips every step
        assert final["clip_frac"] == 1.0 and final["clip_scale"] < 1.0


def test_symmetry_is_logged_at_epoch_0_before_the_first_step(tmp_path):
    torch.manual_seed(0)
    model = tiny("vanilla", init="tied")
    nn.init.normal_(model.head.weight, std=0.1)
    tracker = RecordingTracker()
    _, fit = train(tmp_path, model, 1.0, tracker)
    fit()
    steps = [s for s, _ in tracker.logged]
    assert steps == [0, 1]
    at_init, after = tracker.logged[0][1], tracker.logged[1][1]
    assert set(at_init) == {k for k in after if k.startswith("symmetry/")}
    assert at_init["symmetry/b0/channel/cos"] == pytest.approx(1.0, abs=1e-12)
    assert after["symmetry/b0/channel/cos"] < 1.0 - 1e-6  # one epoch of training moved it
    assert (tmp_path / "out" / "metrics.jsonl").read_text().count("\n") == 1  # epochs only
