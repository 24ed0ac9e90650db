"""training/adamw.py: torch's AdamW without the torch._dynamo import. Checked against
torch.optim.AdamW step for step (the trainer's two param groups, its lr schedule and gradient
clip), across a checkpoint round trip in both directions, and in a fresh process that trains a
step, checkpoints and resumes without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.adamw import AdamW
from training.checkpoint import load_checkpoint, save_checkpoint
from training.schedule import warmup_cosine

ROOT = Path(__file__).resolve().parents[1]


def model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.LayerNorm(8), torch.nn.GELU(),
                               torch.nn.Linear(8, 3))


def groups(m: torch.nn.Module, weight_decay: float = 0.05) -> list[dict]:
    """The trainer's groups: decay on matrices, none on biases and norm gains."""
    named = list(m.named_parameters())
    return [{"params": [p for _, p in named if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for _, p in named if p.ndim <= 1], "weight_decay": 0.0}]


def train(m: torch.nn.Module, opt: torch.optim.Optimizer, sched, steps: int,
          seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(m(x), y).backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()


def pair(cls: type, m: torch.nn.Module, **kw) -> tuple[torch.optim.Optimizer, object]:
    opt = cls(groups(m), lr=1e-3, betas=(0.9, 0.999), **kw)
    return opt, warmup_cosine(opt, 30, 5, 2e-2, 1e-6)


def assert_same(a: torch.nn.Module, b: torch.nn.Module, atol: float = 1e-6) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=0, atol=atol), name


@pytest.mark.parametrize("kw", [{}, {"amsgrad": True}, {"eps": 1e-6, "foreach": True}])
def test_every_step_equals_torch_adamw(kw):
    ours, theirs = model(), model()
    opt_a, sched_a = pair(AdamW, ours, **kw)
    opt_b, sched_b = pair(torch.optim.AdamW, theirs, **kw)
    start = [p.detach().clone() for p in ours.parameters()]
    for _ in range(20):
        train(ours, opt_a, sched_a, 1)
        train(theirs, opt_b, sched_b, 1)
        assert_same(ours, theirs, atol=1e-6)
    # training moved the weights, and the decayed group was decayed (a weight the gradient
    # never reaches is still pulled towards 0: check the update formula on one step by hand)
    assert any(not torch.equal(s, p) for s, p in zip(start, ours.parameters(), strict=True))
    assert opt_a.param_groups[0]["weight_decay"] == 0.05
    assert opt_a.param_groups[1]["weight_decay"] == 0.0


def test_decoupled_weight_decay_by_hand():
    """One step with a zero gradient: only the decay acts, theta <- theta (1 - lr lam)."""
    w = torch.nn.Parameter(torch.ones(2, 2))
    opt = AdamW([{"params": [w], "weight_decay": 0.5}], lr=0.1)
    w.grad = torch.zeros_like(w)
    opt.step()
    assert torch.allclose(w, torch.full((2, 2), 1 - 0.1 * 0.5), rtol=0, atol=1e-7)


@pytest.mark.parametrize("first, then", [(AdamW, torch.optim.AdamW),
                                         (torch.optim.AdamW, AdamW), (AdamW, AdamW)])
def test_a_checkpoint_resumes_to_the_same_weights_with_either_class(tmp_path, first, then):
    """Train 7 steps, checkpoint (the trainer's file, weights_only load), resume with the other
    class for 8 more: the same weights as 15 uninterrupted steps of torch's AdamW."""
    straight = model()
    opt, sched = pair(torch.optim.AdamW, straight)
    train(straight, opt, sched, 7)
    train(straight, opt, sched, 8, seed=2)

    m = model()
    opt, sched = pair(first, m)
    train(m, opt, sched, 7)
    save_checkpoint(tmp_path / "ckpt.pt", {"model": m.state_dict(), "optimizer": opt.state_dict(),
                                           "scheduler": sched.state_dict(), "epoch": 1,
                                           "fingerprint": ""})
    state = load_checkpoint(tmp_path / "ckpt.pt")
    resumed = model(seed=5)  # other weights: everything must come from the checkpoint
    resumed.load_state_dict(state["model"])
    opt, sched = pair(then, resumed)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    assert opt.state_dict()["state"][0]["step"] == 7
    train(resumed, opt, sched, 8, seed=2)
    assert_same(resumed, straight, atol=1e-6)


def test_step_hooks_and_closure_work_as_on_torch_adamw():
    m = model()
    opt, _ = pair(AdamW, m)
    seen = []
    opt.register_step_pre_hook(lambda o, args, kwargs: seen.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: seen.append("post"))
    x = torch.randn(4, 6)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = m(x).square().mean()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert seen == ["pre", "post"] and loss.grad_fn is not None  # the closure ran with grad
    assert all(p.grad is not None for p in m.parameters())


def test_differentiable_is_refused_with_what_is_valid():
    with pytest.raises(ValueError, match="differentiable=True.*valid: differentiable=False"):
        AdamW(model().parameters(), differentiable=True)


def test_training_and_resuming_never_import_dynamo():
    """The point of the class: a fresh process builds it, trains, saves and loads its state
    without importing torch._dynamo (~1.5-2 s per job); torch's own AdamW does import it."""
    code = """if True:
        import sys, torch
        from training.adamw import AdamW
        from training.schedule import warmup_cosine
        m = torch.nn.Linear(4, 2)
        opt = AdamW([{"params": [m.weight], "weight_decay": 0.05},
                     {"params": [m.bias], "weight_decay": 0.0}], lr=1e-3)
        sched = warmup_cosine(opt, 10, 2, 1e-3, 1e-6)
        for _ in range(2):
            opt.zero_grad()
            m(torch.randn(3, 4)).sum().backward()
            opt.step()
            sched.step()
        opt.load_state_dict(opt.state_dict())
        print("ours", "torch._dynamo" in sys.modules)
        torch.optim.AdamW(m.parameters()).zero_grad()
        print("torch", "torch._dynamo" in sys.modules)
    """
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert out[:2] == ["ours False", "torch True"]
