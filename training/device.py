"""Pick the torch device from trainer.device."""

from __future__ import annotations

import torch


def resolve_device(spec: str) -> torch.device:
    """auto -> cuda if available else cpu; cpu; cuda or cuda:N (must be available)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"trainer.device={spec!r} but no CUDA device is available; "
                             "valid here: auto, cpu")
        return torch.device(spec)
    raise ValueError(f"trainer.device={spec!r} is invalid; valid: auto, cpu, cuda, cuda:N")
