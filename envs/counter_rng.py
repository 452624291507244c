"""Counter-based uniform random numbers: u = hash(seed, step, stream, index), batched.

Each plant's random numbers depend only on its own seed and step, never on how many plants
share the batch, and a whole batch is drawn in a few int64 tensor ops (one ``torch.Generator``
call per plant per step cost more than the rest of a plant step). The mixer is SplitMix64's
finaliser (Steele et al. 2014) with logical right shifts emulated on signed int64.
"""

from __future__ import annotations

import torch

_M1 = 0xBF58476D1CE4E5B9 - (1 << 64)  # the SplitMix64 constants as signed int64
_M2 = 0x94D049BB133111EB - (1 << 64)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_STEP = 0xD1B54A32D192ED03 - (1 << 64)  # an odd constant separating steps


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


def uniform(seeds: torch.Tensor, steps: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """Float32 uniforms in [0, 1) of shape [B, n]: plant b's draw depends on (seeds[b], steps[b],
    stream, position) only. SplitMix64: a Weyl sequence from a per-(seed, step) key, mixed."""
    key = _mix(seeds.long() * _GOLDEN + steps.long() * _STEP + stream)  # [B]
    z = _mix(key[:, None] + torch.arange(1, n + 1, dtype=torch.long)[None, :] * _GOLDEN)
    return _shr(z, 40).float() * (1.0 / (1 << 24))
