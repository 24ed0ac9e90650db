"""Readable MLflow run names: asym-lam1e-3-d8-w128-s0."""

from __future__ import annotations

from omegaconf import DictConfig


def format_float(v: float) -> str:
    """1e-3 -> '1e-3', 5e-4 -> '5e-4', 2.5e-3 -> '2.5e-3', 1.0 -> '1', 0 -> '0'."""
    if v == 0:
        return "0"
    mantissa, exponent = f"{v:.6e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    exp = int(exponent)
    return mantissa if exp == 0 else f"{mantissa}e{exp}"


def run_name(cfg: DictConfig) -> str:
    """``<model>[-lam<lam>]-d<depth>-w<dim>[-it<n_iter>]-s<seed>``; lam only for models with V."""
    m = cfg.model
    parts = [str(m.name)]
    if m.mlp == "asymmetric":
        parts.append(f"lam{format_float(float(m.sb_lambda))}")
    parts += [f"d{m.depth}", f"w{m.dim}"]
    if int(m.n_iter) != 1:
        parts.append(f"it{m.n_iter}")
    parts.append(f"s{cfg.seed}")
    return "-".join(parts)
