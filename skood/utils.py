"""Small tensor utilities shared across skood's layers."""

from __future__ import annotations

import torch

__all__ = ["to_model_input"]


def to_model_input(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Move a stored batch to ``device`` as float32 (uint8 images are scaled to [0, 1])."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()
