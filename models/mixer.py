"""One Mixer class for the whole zoo: the variants differ only in which block wiring and which
MLP kind fill its slots, and in the symmetry-breaking penalty sb_lambda.

    model    block     mlp          (the table of variants: models/variants.py)
    vanilla  serial    vanilla
    para     parallel  vanilla
    sym      parallel  symmetric
    asym     parallel  asymmetric   + sb_lambda * sum_blocks ||V||_F^2 added to the loss

Network: image (B, in_chans, H, W) -> patch-embedding conv (kernel = stride = patch) ->
(B, S, C) with S = (H / patch) * (W / patch) -> ``depth`` blocks -> LayerNorm(C) -> mean over
tokens -> linear head -> logits (B, num_classes).

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
from models.mlp import MLP_KINDS


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
    ) -> None:
        super().__init__()
        # Validate everything up front so a bad sweep value fails before any job starts.
        errors = mixer_arg_errors(
            block=block, mlp=mlp, norm=norm, dim=dim, depth=depth, patch_size=patch_size,
            n_iter=n_iter, img_size=img_size, in_chans=in_chans, num_classes=num_classes,
            sb_lambda=sb_lambda, drop_path=drop_path, token_ratio=token_ratio,
            channel_ratio=channel_ratio)
        if errors:
            raise ValueError("; ".join(errors))

        self.name = name
        self.sb_lambda = float(sb_lambda)
        self.num_classes = num_classes
        self.seq_len = (img_size // patch_size) ** 2
        self.stem = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        # stochastic depth grows linearly with depth, as in timm's Mixer
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(
            BLOCKS[block](
                dim=dim,
                seq_len=self.seq_len,
                token_hidden=int(token_ratio * dim),
                channel_hidden=int(channel_ratio * dim),
                mlp=mlp,
                mlp_bias=mlp_bias,
                norm=norm,
                drop_path=rate,
                n_iter=n_iter,
            )
            for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)
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
