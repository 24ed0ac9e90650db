"""The benchmark's eager reference computes exactly the zoo's maths (so speedups are honest)."""

from __future__ import annotations

import pytest
import torch

from benchmarks.throughput import VARIANTS, reference_from
from models import Mixer

CFG = dict(img_size=8, in_chans=1, patch_size=4, dim=16, depth=2, batch=4)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reference_matches_zoo_forward_and_gradients(variant):
    wiring, mlp = VARIANTS[variant]
    torch.manual_seed(0)
    zoo = Mixer(block=wiring, mlp=mlp, img_size=8, patch_size=4, dim=16, depth=2).double()
    torch.nn.init.normal_(zoo.head.weight)
    ref = reference_from(zoo.float(), wiring, mlp, CFG).double()
    zoo = zoo.double()
    x = torch.randn(4, 1, 8, 8, dtype=torch.double)
    out_zoo, out_ref = zoo(x), ref(x)
    torch.testing.assert_close(out_zoo, out_ref, rtol=1e-10, atol=1e-10)
    out_zoo.square().sum().backward()
    out_ref.square().sum().backward()
    torch.testing.assert_close(zoo.stem.weight.grad, ref.stem.weight.grad, rtol=1e-8, atol=1e-10)
