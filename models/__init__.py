"""The model zoo: one Mixer class, the table of its variants, the Hopfield energy and the
weight-symmetry measures."""

from models.block import BLOCKS, ParallelBlock, SerialBlock
from models.energy import BlockWeights, block_weights, energy, integrate, velocity
from models.mixer import Mixer, num_params
from models.mlp import MLP_KINDS, AsymmetricMlp, SymmetricMlp, VanillaMlp, build_mlp
from models.symmetry import cosine_symmetry, symmetric_fraction
from models.variants import (
    VARIANTS,
    ZOO_TARGETS,
    Variant,
    display_name,
    format_float,
    get_variant,
    lambda_limit,
    model_config_errors,
    register_variant,
    run_name,
)

__all__ = [
    "BLOCKS", "MLP_KINDS", "VARIANTS", "ZOO_TARGETS", "AsymmetricMlp", "BlockWeights", "Mixer",
    "ParallelBlock", "SerialBlock", "SymmetricMlp", "VanillaMlp", "Variant", "block_weights",
    "build_mlp", "cosine_symmetry", "display_name", "energy", "format_float", "get_variant",
    "integrate", "lambda_limit", "model_config_errors", "num_params", "register_variant",
    "run_name", "symmetric_fraction", "velocity",
]
