"""Small utilities shared across skood's layers: named seed streams and model input.

* :func:`seed_stream`: the seed of one named consumer of randomness in a fit
  (:data:`SEED_STREAMS`), so each part of a fit draws from its own stream.
* :func:`to_model_input`: a stored batch (uint8 images or float rows) as the
  float32 input every network and scorer sees.
"""

from __future__ import annotations

import torch

__all__ = ["SEED_STREAMS", "seed_stream", "to_model_input"]

#: The named random streams of one fit, as offsets of its seed (``fit`` draws the
#: seed from ``random_state``). Each consumer of randomness takes its own stream,
#: so adding or reordering draws in one part of a fit leaves the others' unchanged.
SEED_STREAMS: dict[str, int] = {
    "net": 0,  # a training phase: initial weights, data order, the objective's device generator
    "net_cpu": 1,  # a training phase's CPU generator (scalars drawn without a device sync)
    "dum_variance_net": 1,  # DUM's variance network on image features, after the encoder's phase
    "semsad_pool": 2,  # SemSAD: the random pool searched for semantic neighbourhoods
    "semsad_discriminator": 3,  # SemSAD: the pair discriminator's training phase
    "bank": 4,  # the subsample of the training set kept as the scoring bank (``max_bank``)
    "distillneg_affine": 5,  # DistillNeg: the random affine maps of tabular negatives
    "rotaux_affine": 7,  # RotAuxMSP: the random affine maps of its tabular auxiliary task
}


def seed_stream(seed: int, name: str) -> int:
    """The seed of the random stream ``name`` (a key of :data:`SEED_STREAMS`) of a fit."""
    return seed + SEED_STREAMS[name]


def to_model_input(x: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Move a stored batch to ``device`` as float32 (uint8 images are scaled to [0, 1])."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()
