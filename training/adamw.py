"""``torch.optim.AdamW`` without its ``torch._dynamo`` import: the same class, the same kernels,
the same state dict; only torch.compile's guards are left out.

Why: torch wraps ``Optimizer.add_param_group``, ``zero_grad``, ``state_dict`` and
``load_state_dict`` in ``torch._disable_dynamo`` (torch/_compile.py), which imports
``torch._dynamo`` on its first call, and ``Adam.step`` in ``_use_grad_for_differentiable``
(torch/optim/optimizer.py), which imports it on every call, whatever the optimizer's options
(torch 2.13). That import costs ~1.5-2 s per process (sympy about half of it), ~40 % of a job's
start on a CPU (docs/PERFORMANCE.md "Job start"), and buys nothing to an optimizer that runs
eagerly, as this project's does (``trainer.compile`` compiles the model, not the optimizer). No
documented switch skips it (``TORCHDYNAMO_DISABLE`` is read by dynamo once imported).

How: each wrapped method is called through the ``__wrapped__`` attribute ``functools.wraps``
left on torch's wrapper, i.e. torch's own undecorated code; ``step`` runs torch's undecorated
``Adam.step`` under ``torch.no_grad()``, which is what ``_use_grad_for_differentiable`` does
around it besides dynamo's graph breaks (``differentiable`` is False here). The update is thus
torch's AdamW bit for bit (decoupled weight decay, param groups, foreach / fused choice), its
``state_dict`` loads into ``torch.optim.AdamW`` and back (checkpoints of either resume with
either), and step hooks and lr schedulers work as on torch's class. Should a torch release drop
``__wrapped__``, the decorated method is used (correct, only slower);
tests/test_optimizer.py fails then, as it does if the update drifts from torch's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Adam, Optimizer


def _undecorated(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` without torch's dynamo wrapper (itself if it has none)."""
    return getattr(fn, "__wrapped__", fn)


_ADD_PARAM_GROUP = _undecorated(Optimizer.add_param_group)
_ZERO_GRAD = _undecorated(Optimizer.zero_grad)
_STATE_DICT = _undecorated(Optimizer.state_dict)
_LOAD_STATE_DICT = _undecorated(Optimizer.load_state_dict)
_STEP = _undecorated(Adam.step)


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW(params, lr, betas, eps, weight_decay, ...)``, same arguments and
    update: theta <- theta - lr * (lam * theta + m_hat / (sqrt(v_hat) + eps)) per group, with
    m, v the bias-corrected first and second moments (amsgrad as set)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("differentiable"):
            raise ValueError("training.adamw.AdamW(differentiable=True) is not supported; "
                             "valid: differentiable=False (use torch.optim.AdamW)")
        super().__init__(*args, **kwargs)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _ADD_PARAM_GROUP(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        _ZERO_GRAD(self, set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return _STATE_DICT(self)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        _LOAD_STATE_DICT(self, state_dict)

    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        with torch.no_grad():  # torch's wrapper: grad off unless differentiable (refused here)
            return _STEP(self, closure)
