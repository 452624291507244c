"""Learning-rate schedules, as a pure function of the optimizer-step index.

``lr_factor(kind, t, total, warmup)`` multiplies ``optim.lr`` at optimizer step ``t``
(0-based; ``total`` = train.steps x mini_batches x epochs):

- warmup (``t < warmup``): linear from ``1/warmup`` at t = 0 up to 1 (no zero-lr first step);
- then ``constant``: 1; ``linear``: 1 -> 0 at ``total``; ``cosine``: (1 + cos(pi p)) / 2,
  p the progress after warmup.

These are the shapes of transformers' ``get_{constant,linear,cosine}_schedule_with_warmup``
that TRL users set with ``lr_scheduler_type`` and ``warmup_steps`` / ``warmup_ratio``, apart
from the first warmup step (ours is 1/warmup of the lr, theirs 0). A function of the step alone,
so a resumed run continues with exactly the lr it would have had: nothing to checkpoint.
"""

from __future__ import annotations

import math

SCHEDULERS = ("constant", "linear", "cosine")


def lr_factor(kind: str, t: int, total: int, warmup: int = 0) -> float:
    """The factor on the base learning rate at optimizer step ``t``."""
    if warmup > 0 and t < warmup:
        return (t + 1) / warmup
    if kind == "constant":
        return 1.0
    span = max(total - warmup, 1)
    p = min(max((t - warmup) / span, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - p
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown scheduler {kind!r}")


def warmup_steps(total: int, steps: int, ratio: float) -> int:
    """Warmup in optimizer steps: ``steps`` if given, else ``ratio`` of ``total`` (rounded up)."""
    return steps if steps > 0 else math.ceil(ratio * total)
