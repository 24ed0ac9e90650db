"""What each MLflow experiment is for: shown as its description in the MLflow UI. The model list
is read from the variant table (models/variants.py), so a new variant is described too."""

from models import VARIANTS


def _describe_models() -> str:
    """'sym (SymMixer: parallel block, symmetric MLP), asym (AsymMixer: ..., penalty
    λ ||V||^2), ...' in the table's order."""
    return ", ".join(f"{v.name} ({v.label}: {v.block} block, {v.mlp} MLP"
                     f"{', penalty λ ||V||^2 (model.sb_lambda)' if v.has_lambda else ''})"
                     for v in VARIANTS.values())


DESCRIPTION = (
    "Runs of the Mixer Symmetry Lab: tests of 'Hierarchical Associative Memory, Parallelized "
    "MLP-Mixer, and Symmetry Breaking' (Karakida, Ota, Taki, arXiv:2406.12220). Models: "
    f"{_describe_models()}. Parent runs are "
    "sweeps; child runs are jobs named MODEL[-lamLAM]-dDEPTH-wDIM[-itN_ITER]-sSEED (e.g. "
    "asym-lam1e-4-d2-w64-s0). Metrics: test_acc (%), test_loss, train_loss, symmetry/* "
    "(weight symmetry per block) per epoch."
)
