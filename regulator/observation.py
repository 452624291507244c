"""What a controller sees each step."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from regulator.errors import ConfigError
from regulator.knobs import Knobs


@dataclass(frozen=True)
class Observation:
    """One step's measurements, handed to ``Controller.act``.

    ``entropy`` is the token-mean entropy (nats) of the rollout batch under the policy before
    this step's update; ``target`` the target for this step and ``next_target`` for the next;
    ``preview`` the targets of the steps after it (t+1, t+2, ...: as many as the controller's
    ``preview_steps`` asks for, the last step's target repeated past the end). ``knobs`` are
    the knobs applied at the previous step. The optional fields are NaN when the source does
    not provide them; ``extras`` carries anything more (e.g. ``dh_pos``, ``dh_neg``).
    """

    step: int
    total_steps: int
    entropy: float
    target: float
    next_target: float = math.nan
    preview: tuple[float, ...] = ()
    knobs: Knobs = field(default_factory=Knobs)
    reward_mean: float = math.nan
    accuracy: float = math.nan
    pos_token_frac: float = math.nan
    neg_token_frac: float = math.nan
    clip_frac_low: float = math.nan
    clip_frac_high: float = math.nan
    extras: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.step, bool) or not isinstance(self.step, int) or self.step < 0:
            raise ConfigError("step", "an integer >= 0", self.step)
        if (
            isinstance(self.total_steps, bool)
            or not isinstance(self.total_steps, int)
            or self.total_steps < 1
        ):
            raise ConfigError("total_steps", "an integer >= 1", self.total_steps)
        for name in ("entropy", "target"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(name, "a number", v)
            object.__setattr__(self, name, float(v))
        if not math.isfinite(self.target):
            raise ConfigError("target", "a finite number", self.target)
        if math.isnan(self.next_target):
            object.__setattr__(self, "next_target", self.target)
        object.__setattr__(self, "preview", tuple(float(x) for x in self.preview))
        object.__setattr__(self, "extras", {str(k): float(v) for k, v in self.extras.items()})

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        return min(max(self.step / max(self.total_steps - 1, 1), 0.0), 1.0)

    @property
    def error(self) -> float:
        """Tracking error e = target - entropy (positive: entropy too low)."""
        return self.target - self.entropy
