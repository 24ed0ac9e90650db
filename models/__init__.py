"""The model zoo: one Mixer class with slots (block wiring, token mixer, MLP kind, norm), the
table of its variants, the Hopfield energy and the weight-symmetry measures."""

from models.block import BLOCKS, GatedBlock, ParallelBlock, SerialBlock
from models.energy import BlockWeights, block_weights, energy, integrate, velocity
from models.gated_mlp import GatedMlp
from models.layer_scale import LayerScale
from models.mixer import Mixer, num_params
from models.mlp import MLP_KINDS, AsymmetricMlp, SymmetricMlp, VanillaMlp, build_mlp
from models.norm import NORMS, Affine
from models.symmetry import cosine_symmetry, symmetric_fraction
from models.token_mixer import (
    TOKEN_MIXERS,
    AttentionTokenMixer,
    GatingTokenMixer,
    LinearTokenMixer,
    TokenMixer,
)
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
    "BLOCKS", "MLP_KINDS", "NORMS", "TOKEN_MIXERS", "VARIANTS", "ZOO_TARGETS", "Affine",
    "AsymmetricMlp", "AttentionTokenMixer", "BlockWeights", "GatedBlock", "GatedMlp",
    "GatingTokenMixer", "LayerScale", "LinearTokenMixer", "Mixer", "ParallelBlock",
    "SerialBlock", "TokenMixer", "SymmetricMlp", "VanillaMlp", "Variant", "block_weights",
    "build_mlp", "cosine_symmetry", "display_name", "energy", "format_float", "get_variant",
    "integrate", "lambda_limit", "model_config_errors", "num_params", "register_variant",
    "run_name", "symmetric_fraction", "velocity",
]
