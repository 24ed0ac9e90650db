"""The model zoo: one Mixer class, the Hopfield energy and the weight-symmetry measures."""

from models.block import BLOCKS, ParallelBlock, SerialBlock
from models.energy import BlockWeights, block_weights, energy, integrate, velocity
from models.mixer import Mixer, num_params
from models.mlp import MLP_KINDS, AsymmetricMlp, SymmetricMlp, VanillaMlp, build_mlp
from models.symmetry import cosine_symmetry, symmetric_fraction

__all__ = [
    "BLOCKS", "MLP_KINDS", "AsymmetricMlp", "BlockWeights", "Mixer", "ParallelBlock",
    "SerialBlock", "SymmetricMlp", "VanillaMlp", "block_weights", "build_mlp",
    "cosine_symmetry", "energy", "integrate", "num_params", "symmetric_fraction", "velocity",
]
