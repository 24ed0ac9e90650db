"""One Mixer class for the whole zoo: the variants differ only in what fills its slots (block
wiring, token mixer, MLP kind, norm), in LayerScale and in the symmetry-breaking penalty
sb_lambda.

    model    block     token_mixer  mlp          norm    (the table: models/variants.py)
    vanilla  serial    mlp          vanilla      any
    para     parallel  mlp          vanilla      any
    sym      parallel  mlp          symmetric    any
    asym     parallel  mlp          asymmetric   any     + sb_lambda sum_blocks ||V||_F^2 (loss)
    resmlp   serial    linear       vanilla      affine  + LayerScale (layer_scale 0.1)
    gmlp     gated     gating       vanilla      token
    vit      serial    attention    vanilla      token   (num_heads heads)

Slots: ``block`` a key of models.block.BLOCKS, ``token_mixer`` of
models.token_mixer.TOKEN_MIXERS (``mlp``: the token MLP of the MLP kind), ``mlp`` of
models.mlp.MLP_KINDS (the channel MLPs, and the token MLP), ``norm`` of models.norm.NORMS.
Knobs of one token mixer or wiring (``num_heads``: attention; ``implicit_iters``,
``contraction``, ``power_iters``: iMixer; ``energy_step``: the energy block) go to every block
and token mixer, each taking the ones it uses and checking them (``arg_errors``).

Network: image (B, in_chans, H, W) -> patch-embedding conv (kernel = stride = patch) ->
(B, S, C) with S = (H / patch) * (W / patch) -> ``depth`` blocks -> final norm (LayerNorm(C);
Affine(C) with norm=affine) -> mean over tokens -> linear head -> logits (B, num_classes).
No class token and no position embedding in any model (the ViT too: its attention is then
permutation-equivariant over tokens, and mean pooling makes the logits invariant to a
permutation of the patches; the token-mixing MLPs and linear maps are what see positions).

Hidden sizes follow the authors' code: both are computed from the channel width C,
token hidden = int(token_ratio * C), channel hidden = int(channel_ratio * C).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn as nn
from torch import Tensor

from models.block import BLOCKS, NORMS
from models.mlp import INITS, MLP_KINDS, V_INITS
from models.norm import final_norm
from models.token_mixer import TOKEN_MIXERS


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def mixer_arg_errors(
    *,
    block: object,
    mlp: object,
    norm: object,
    dim: object,
    depth: object,
    patch_size: object,
    n_iter: object,
    img_size: object,
    in_chans: object,
    num_classes: object,
    sb_lambda: object,
    drop_path: object,
    token_ratio: object,
    channel_ratio: object,
    token_mixer: object = "mlp",
    layer_scale: object = 0.0,
    init: object = "default",
    v_init: object = "default",
    **_: object,
) -> list[str]:
    """Every invalid Mixer argument, each as 'model.<key>=<value> is invalid; <what is valid>'.

    Cheap (builds nothing), so a sweep can check all its jobs before launching any.
    """
    errors: list[str] = []

    def require(ok: bool, message: str) -> None:
        if not ok:
            errors.append(message)

    require(block in BLOCKS, f"model.block={block!r} is unknown; valid: {sorted(BLOCKS)}")
    require(mlp in MLP_KINDS, f"model.mlp={mlp!r} is unknown; valid: {sorted(MLP_KINDS)}")
    require(norm in NORMS, f"model.norm={norm!r} is unknown; valid: {list(NORMS)}")
    ints_ok = True
    for key, val in (("dim", dim), ("depth", depth), ("patch_size", patch_size),
                     ("n_iter", n_iter), ("img_size", img_size), ("in_chans", in_chans),
                     ("num_classes", num_classes)):
        ok = _is_int(val) and val >= 1
        ints_ok &= ok
        require(ok, f"model.{key}={val!r} is invalid; it must be an integer >= 1")
    if ints_ok:
        require(img_size % patch_size == 0,
                f"model.patch_size={patch_size} does not divide the image size {img_size}; "
                f"valid patch sizes: {[p for p in range(1, img_size + 1) if img_size % p == 0]}")
    require(_is_real(sb_lambda) and math.isfinite(sb_lambda) and sb_lambda >= 0,
            f"model.sb_lambda={sb_lambda!r} is invalid; it must be a finite number >= 0")
    require(_is_real(drop_path) and 0.0 <= drop_path < 1.0,
            f"model.drop_path={drop_path!r} is invalid; it must be in [0, 1)")
    for key, val in (("token_ratio", token_ratio), ("channel_ratio", channel_ratio)):
        require(_is_real(val) and (not ints_ok or int(val * dim) >= 1),
                f"model.{key}={val!r} is invalid; int({key} * dim) must be >= 1 (dim={dim})")
    require(token_mixer in TOKEN_MIXERS,
            f"model.token_mixer={token_mixer!r} is unknown; valid: {sorted(TOKEN_MIXERS)}")
    require(_is_real(layer_scale) and math.isfinite(layer_scale) and layer_scale >= 0,
            f"model.layer_scale={layer_scale!r} is invalid; it must be a finite number >= 0 "
            f"(0: no LayerScale)")
    if (block in BLOCKS and mlp in MLP_KINDS and ints_ok and _is_real(token_ratio)
            and _is_real(channel_ratio)):
        # what the wiring and the token mixer refuse (e.g. num_heads not dividing the width)
        wiring, channel_hidden = BLOCKS[block], int(channel_ratio * dim)
        no_errors = lambda **_: []  # noqa: E731 - a class without the hook refuses nothing
        knobs = {k: v for k, v in _.items() if k not in ("dim", "seq_len", "hidden")}
        errors += getattr(wiring, "arg_errors", no_errors)(
            **{**knobs, "mlp": mlp, "dim": dim, "channel_hidden": channel_hidden, "norm": norm,
               "token_mixer": token_mixer, "layer_scale": layer_scale})
        if token_mixer in TOKEN_MIXERS:
            width = getattr(wiring, "token_mixer_dim", lambda d, h: d)(dim, channel_hidden)
            errors += getattr(TOKEN_MIXERS[token_mixer], "arg_errors", no_errors)(
                **{**knobs, "dim": width, "seq_len": (img_size // patch_size) ** 2,
                   "hidden": int(token_ratio * dim), "mlp": mlp,
                   "bias": _.get("mlp_bias", False)})
    errors += _init_errors(mlp, init, v_init)
    return errors


def _init_errors(mlp: object, init: object, v_init: object) -> list[str]:
    """model.init / model.v_init: known, and a scheme the chosen MLP kind has (models/mlp.py).
    A scheme another kind has is refused, not ignored: init=tied on a symmetric or
    asymmetric MLP, v_init=zero on one without V."""
    errors = []
    kind = MLP_KINDS.get(mlp) if isinstance(mlp, str) else None
    for key, val, attr, known in (("init", init, "inits", INITS),
                                  ("v_init", v_init, "v_inits", V_INITS)):
        if val not in known:
            errors.append(f"model.{key}={val!r} is unknown; valid: {list(known)}")
        elif kind is not None and val not in getattr(kind, attr):
            takers = [k for k, c in MLP_KINDS.items() if val in getattr(c, attr)]
            hint = (" (it already writes back with W^T; an asymmetric MLP starts symmetric "
                    "with model.v_init=zero)" if key == "init" and kind.tied else "")
            errors.append(f"model.{key}={val!r} is not valid with model.mlp={mlp!r}{hint}; "
                          f"valid for it: {list(getattr(kind, attr))}; "
                          f"{key}={val} is for model.mlp in {takers}")
    return errors


class Mixer(nn.Module):
    """MLP-Mixer family. Every argument is a keyword, one-to-one with conf/model/*.yaml."""

    def __init__(
        self,
        *,
        name: str = "mixer",
        block: str = "serial",
        mlp: str = "vanilla",
        img_size: int = 28,
        in_chans: int = 1,
        num_classes: int = 10,
        patch_size: int = 4,
        dim: int = 128,
        depth: int = 4,
        token_ratio: float = 0.5,
        channel_ratio: float = 4.0,
        n_iter: int = 1,
        sb_lambda: float = 0.0,
        drop_path: float = 0.0,
        norm: str = "table",
        mlp_bias: bool = False,
        init: str = "default",
        v_init: str = "default",
        token_mixer: str = "mlp",
        num_heads: int = 4,
        layer_scale: float = 0.0,
        implicit_iters: int = 4,
        contraction: float = 0.9,
        power_iters: int = 8,
        energy_step: float = 0.5,
    ) -> None:
        super().__init__()
        # knobs of one token mixer or wiring: every block and token mixer takes its own
        knobs = dict(num_heads=num_heads, implicit_iters=implicit_iters,
                     contraction=contraction, power_iters=power_iters, energy_step=energy_step)
        # Validate everything up front so a bad sweep value fails before any job starts.
        errors = mixer_arg_errors(
            block=block, mlp=mlp, norm=norm, dim=dim, depth=depth, patch_size=patch_size,
            n_iter=n_iter, img_size=img_size, in_chans=in_chans, num_classes=num_classes,
            sb_lambda=sb_lambda, drop_path=drop_path, token_ratio=token_ratio,
            channel_ratio=channel_ratio, init=init, v_init=v_init, token_mixer=token_mixer,
            layer_scale=layer_scale, mlp_bias=mlp_bias, **knobs)
        if errors:
            raise ValueError("; ".join(errors))

        self.name = name
        self.sb_lambda = float(sb_lambda)
        self.num_classes = num_classes
        self.seq_len = (img_size // patch_size) ** 2
        self.stem = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        # stochastic depth at the same rate in every block, as timm's Mixer and the authors'
        # code (not the linear ramp over depth of ViTs)
        rates = [float(drop_path)] * depth
        self.blocks = nn.ModuleList(
            BLOCKS[block](
                dim=dim,
                seq_len=self.seq_len,
                token_hidden=int(token_ratio * dim),
                channel_hidden=int(channel_ratio * dim),
                mlp=mlp,
                token_mixer=token_mixer,
                mlp_bias=mlp_bias,
                norm=norm,
                drop_path=rate,
                n_iter=n_iter,
                layer_scale=layer_scale,
                **knobs,
            )
            for rate in rates
        )
        self.norm = final_norm(norm, dim)  # LayerNorm(C), or Affine(C) for norm=affine
        self.head = nn.Linear(dim, num_classes)
        for m in self.modules():  # the MLPs' initial-weight schemes (models/mlp.py)
            if isinstance(m, tuple(MLP_KINDS.values())):
                m.configure_init(init=init, v_init=v_init)
        self.init_weights()

    def init_weights(self) -> None:
        """Mixer init: lecun-normal stem, xavier-uniform MLP weights (owned by each MLP), zero
        head so every class starts at the same logit."""
        fan_in = self.stem.in_channels * self.stem.kernel_size[0] * self.stem.kernel_size[1]
        nn.init.trunc_normal_(self.stem.weight, std=math.sqrt(1.0 / fan_in))
        nn.init.zeros_(self.stem.bias)
        for blk in self.blocks:
            blk.init_weights()
        self.norm.reset_parameters()
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, C, H/p, W/p)
        x = x.flatten(2).transpose(1, 2)  # (B, S, C)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)  # (B, S, C)

    def forward(self, x: Tensor) -> Tensor:
        """(B, in_chans, H, W) -> logits (B, num_classes)."""
        return self.head(self.forward_features(x).mean(dim=1))

    def regularizer(self) -> Tensor:
        """sb_lambda * sum over blocks of ||V||_F^2 (0 for models without V): the loss term."""
        total = sum(blk.token_mlp.regularizer() + blk.channel_mlp.regularizer()
                    for blk in self.blocks)
        return self.sb_lambda * total

    @torch.no_grad()
    def symmetry_measures(self) -> dict[str, float]:
        """Every weight-symmetry measure as a flat dict, ready to log.

        Keys: ``symmetry/b{i}/{token|channel}/{measure}`` per block, and
        ``symmetry/mean/{token|channel}/{measure}`` averaged over blocks. Measures: ``cos``
        and ``symfrac`` (vanilla MLPs, see models/symmetry.py); ``v_ratio`` = ||V||/||W|| and
        ``cos`` of (W^T + V) against W (asymmetric MLPs). Empty for the symmetric model.
        """
        out: dict[str, float] = {}
        sums: dict[str, list[float]] = {}
        for i, blk in enumerate(self.blocks):
            for part, mlp in (("token", blk.token_mlp), ("channel", blk.channel_mlp)):
                for measure, value in mlp.symmetry().items():
                    out[f"symmetry/b{i}/{part}/{measure}"] = value
                    sums.setdefault(f"symmetry/mean/{part}/{measure}", []).append(value)
        out.update({k: sum(v) / len(v) for k, v in sums.items()})
        return out


def num_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
