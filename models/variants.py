"""The table of model variants: every model name the project knows, what builds it, how it is
named and shown.

A variant is data: a block wiring (a key of ``models.block.BLOCKS``), a token mixer (a key of
``models.token_mixer.TOKEN_MIXERS``), an MLP kind (a key of ``models.mlp.MLP_KINDS``) and
optionally a norm (``models.norm.NORMS``) that fill the slots of the one ``models.Mixer``, the
values its config gives other knobs, plus a display label, a rank in tables and figures and a
colour. What a variant *is* is read off the classes it names, never off its name:

    name     block     token mixer  mlp         norm    label                rank  colour
    sym      parallel  mlp          symmetric   any     SymMixer             0     #0173b2
    asym     parallel  mlp          asymmetric  any     AsymMixer            1     #de8f05
    para     parallel  mlp          vanilla     any     ParaMixer            2     #029e73
    vanilla  serial    mlp          vanilla     any     MLP-Mixer (vanilla)  3     #cc78bc
    resmlp   serial    linear       vanilla     affine  ResMLP               4     #ca9161
    gmlp     gated     gating       vanilla     token   gMLP                 5     #56b4e9
    vit      serial    attention    vanilla     token   ViT                  6     #949494
    imixer   serial    implicit     vanilla     any     iMixer               7     #d55e00
    energy_metaformer
             energy    mlp          symmetric   any     Energy MetaFormer    8     #fbafe4

(colours: seaborn's "colorblind" palette, entries 0, 1, 2, 4, 5, 9, 7, 3, 6.) sb_lambda
applies to asym only (its MLPs have a V). Knobs: resmlp layer_scale 0.1, gmlp channel_ratio
6.0 (the gMLP paper's d_ffn = 6 d_model), energy_metaformer n_iter 4 (descent steps);
``norm`` "any" (None) means the name does not fix it (``model.norm=token`` is still the
vanilla Mixer). ``conf/model/<name>.yaml`` is the Hydra side
of a row and must agree with it: ``model_config_errors`` refuses a config whose ``model.name``
is in the table with another block, token mixer, MLP kind or (when the row fixes one) norm. A
name that is not in the table is a one-off model: it is allowed when its slots are valid, runs
and is named as given, and figures show it under its own name, after the table's variants.

Runs are named ``<name>[-lam<sb_lambda>][-tied][-v0]-d<depth>-w<dim>[-it<n_iter>]-s<seed>``
(``run_name``); the lam part appears for models with a V (in an MLP or the token mixer).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass

from models.block import BLOCKS
from models.mixer import Mixer, mixer_arg_errors
from models.mlp import MLP_KINDS
from models.norm import NORMS
from models.token_mixer import TOKEN_MIXERS, token_mixer_traits

# the Hydra ``_target_``s that build a zoo model (conf/model_base/mixer.yaml uses the first)
ZOO_TARGETS = ("models.Mixer", "models.mixer.Mixer")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Variant:
    """One row of the table: ``name`` (``model=<name>``, the run names' prefix), ``block`` (a
    key of BLOCKS), ``mlp`` (a key of MLP_KINDS), ``label`` (display name), ``order`` (rank in
    tables and figures, smaller first), ``color`` ('#rrggbb'), ``token_mixer`` (a key of
    TOKEN_MIXERS), ``norm`` (a key of NORMS, or None: the name does not fix it) and ``knobs``
    (other Mixer keywords its config sets, as (key, value) pairs: its defaults, not checked)."""

    name: str
    block: str
    mlp: str
    label: str
    order: int
    color: str
    token_mixer: str = "mlp"
    norm: str | None = None
    knobs: tuple[tuple[str, object], ...] = ()

    def mixer_kwargs(self) -> dict[str, object]:
        """The models.Mixer keywords that build this variant (slots and knobs)."""
        slots = {"block": self.block, "token_mixer": self.token_mixer, "mlp": self.mlp}
        return {"name": self.name, **slots, **({"norm": self.norm} if self.norm else {}),
                **dict(self.knobs)}

    @property
    def has_lambda(self) -> bool:
        """``sb_lambda`` applies: an MLP (or the token mixer) has a symmetry-breaking V
        (penalty sb_lambda ||V||_F^2), and the variant's runs carry their sb_lambda in name
        and label."""
        return _has_v(self.mlp, self.token_mixer)

    @property
    def has_energy(self) -> bool:
        """Its blocks map onto the Hopfield energy of models/energy.py (the wiring's update is
        an energy descent: both MLPs read the same state; the token mixer is the token MLP)."""
        return bool(BLOCKS[self.block].energy_descent) and bool(
            getattr(TOKEN_MIXERS[self.token_mixer], "uses_mlp_kind", False))

    @property
    def is_hopfield(self) -> bool:
        """The paper's hierarchical Hopfield network: an energy-descent wiring with tied
        W / W^T MLPs (SymMixer; AsymMixer adds V to it). Not ParaMixer, whose independent
        W1, W2 only read as W and V = W2 - W1^T."""
        return (self.has_energy and bool(MLP_KINDS[self.mlp].tied)
                and bool(token_mixer_traits(self.token_mixer, self.mlp).tied))


def _has_v(mlp: str, token_mixer: str) -> bool:
    """A model with MLP kind ``mlp`` and token mixer ``token_mixer`` has a V (sb_lambda)."""
    return bool(getattr(MLP_KINDS.get(mlp), "has_v", False)) or (
        token_mixer in TOKEN_MIXERS
        and bool(getattr(token_mixer_traits(token_mixer, mlp), "has_v", False)))


VARIANTS: dict[str, Variant] = {}
"""Every registered variant by name, in display order (``order``, then name)."""


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` to VARIANTS (kept in display order); returns it.

    Raises ValueError naming the bad field when the block or MLP kind is not registered, the
    colour is not '#rrggbb', or the name is taken by a different variant.
    """
    errors = []
    if not isinstance(variant.name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", variant.name):
        errors.append(f"name={variant.name!r} is invalid; it must be letters, digits or _")
    if variant.block not in BLOCKS:
        errors.append(f"block={variant.block!r} is unknown; valid: {sorted(BLOCKS)}")
    if variant.mlp not in MLP_KINDS:
        errors.append(f"mlp={variant.mlp!r} is unknown; valid: {sorted(MLP_KINDS)}")
    if variant.token_mixer not in TOKEN_MIXERS:
        errors.append(f"token_mixer={variant.token_mixer!r} is unknown; valid: "
                      f"{sorted(TOKEN_MIXERS)}")
    if variant.norm is not None and variant.norm not in NORMS:
        errors.append(f"norm={variant.norm!r} is unknown; valid: None or {list(NORMS)}")
    if not isinstance(variant.color, str) or not _HEX.match(variant.color):
        errors.append(f"color={variant.color!r} is invalid; it must be '#rrggbb'")
    old = VARIANTS.get(variant.name)
    if old is not None and old != variant:
        errors.append(f"name={variant.name!r} is already registered as {old}")
    if errors:
        raise ValueError(f"variant {variant.name!r}: " + "; ".join(errors))
    VARIANTS[variant.name] = variant
    ordered = sorted(VARIANTS.values(), key=lambda v: (v.order, v.name))
    VARIANTS.clear()
    VARIANTS.update((v.name, v) for v in ordered)
    return variant


for _v in (
    Variant("sym", "parallel", "symmetric", "SymMixer", 0, "#0173b2"),
    Variant("asym", "parallel", "asymmetric", "AsymMixer", 1, "#de8f05"),
    Variant("para", "parallel", "vanilla", "ParaMixer", 2, "#029e73"),
    Variant("vanilla", "serial", "vanilla", "MLP-Mixer (vanilla)", 3, "#cc78bc"),
    Variant("resmlp", "serial", "vanilla", "ResMLP", 4, "#ca9161", token_mixer="linear",
            norm="affine", knobs=(("layer_scale", 0.1),)),
    Variant("gmlp", "gated", "vanilla", "gMLP", 5, "#56b4e9", token_mixer="gating",
            norm="token", knobs=(("channel_ratio", 6.0),)),
    Variant("vit", "serial", "vanilla", "ViT", 6, "#949494", token_mixer="attention",
            norm="token"),
    Variant("imixer", "serial", "vanilla", "iMixer", 7, "#d55e00", token_mixer="implicit"),
    Variant("energy_metaformer", "energy", "symmetric", "Energy MetaFormer", 8, "#fbafe4",
            knobs=(("n_iter", 4),)),
):
    register_variant(_v)
del _v


def get_variant(name: str) -> Variant:
    """The variant called ``name``; ValueError listing the valid names otherwise."""
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid: {list(VARIANTS)}") from None


def lambda_limit(name: str) -> Variant | None:
    """The variant that ``name`` becomes as sb_lambda -> infinity (V -> 0): the same wiring
    with a tied MLP without V (asym -> sym). None when ``name`` has no sb_lambda or the table
    holds no such variant."""
    variant = VARIANTS.get(name)
    if variant is None or not variant.has_lambda:
        return None
    return next((v for v in VARIANTS.values() if v.block == variant.block and v.is_hopfield
                 and not v.has_lambda), None)


def format_float(v: float) -> str:
    """1e-3 -> '1e-3', 5e-4 -> '5e-4', 2.5e-3 -> '2.5e-3', 1.0 -> '1', 0 -> '0'."""
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    exp = int(exponent)
    return mantissa if exp == 0 else f"{mantissa}e{exp}"


def display_name(model: str, sb_lambda: float | None = None) -> str:
    """'SymMixer', 'AsymMixer λ=1e-4' (sb_lambda shown only for variants it applies to, and
    only when given and not NaN), 'ParaMixer', 'MLP-Mixer (vanilla)'; a name that is not in
    the table is shown as it is."""
    variant = VARIANTS.get(model) if isinstance(model, str) else None
    if variant is None:
        return str(model)
    if variant.has_lambda and sb_lambda is not None and sb_lambda == sb_lambda:
        return f"{variant.label} λ={format_float(float(sb_lambda))}"
    return variant.label


def run_name(model_cfg: Mapping[str, object], seed: object) -> str:
    """``<model>[-lam<sb_lambda>][-tied][-v0]-d<depth>-w<dim>[-it<n_iter>]-s<seed>`` from a
    model config section: the lam part only for models with a V (e.g. asym-lam1e-3-d8-w128-s0);
    ``-tied`` for ``init=tied`` (W2 = W1^T at initialisation), ``-v0`` for ``v_init=zero``, so a
    control run is never named like the run it controls."""
    parts = [str(model_cfg["name"])]
    if _has_v(str(model_cfg["mlp"]), str(model_cfg.get("token_mixer", "mlp"))):
        parts.append(f"lam{format_float(float(model_cfg['sb_lambda']))}")
    if model_cfg.get("init", "default") == "tied":
        parts.append("tied")
    if model_cfg.get("v_init", "default") == "zero":
        parts.append("v0")
    parts += [f"d{model_cfg['depth']}", f"w{model_cfg['dim']}"]
    if int(model_cfg["n_iter"]) != 1:
        parts.append(f"it{model_cfg['n_iter']}")
    parts.append(f"s{seed}")
    return "-".join(parts)


# Mixer's keyword defaults: a model config may leave any of them out, as Hydra's instantiate does
_MIXER_DEFAULTS = {k: p.default for k, p in inspect.signature(Mixer.__init__).parameters.items()
                   if p.kind is p.KEYWORD_ONLY and p.default is not p.empty}


def model_config_errors(model_cfg: Mapping[str, object]) -> list[str]:
    """Every invalid value of a resolved ``model`` config section, each as
    'model.<key>=<value> ...; <what is valid>'. Empty for a ``_target_`` that builds no zoo
    model (e.g. a test app's own), which is not checked.

    Besides ``mixer_arg_errors``: a ``model.name`` in the table must come with the table's
    block, token mixer, MLP kind and norm (when the row fixes one), so a name always means one
    architecture in run names and figures; a name not in the table is allowed (see the module
    docstring).
    """
    if model_cfg.get("_target_") not in ZOO_TARGETS:
        return []
    args = {**_MIXER_DEFAULTS, **model_cfg}
    errors = mixer_arg_errors(**args)
    name = args["name"]
    variant = VARIANTS.get(name) if isinstance(name, str) else None
    if variant is not None:
        for key in ("block", "token_mixer", "mlp", "norm"):
            want = getattr(variant, key)
            if want is not None and args[key] != want:
                errors.append(
                    f"model.{key}={args[key]!r} does not match model.name={name!r}, which the "
                    f"variant table (models/variants.py) builds with {key} {want!r}; valid: "
                    f"model.{key}={want} or a model.name not in {list(VARIANTS)}")
    return errors
