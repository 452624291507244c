"""``static``: fixed knobs, with presets for the paper's baselines.

Rule for knobs the controller does not actuate: the Regulator holds every knob that is not in
``control.actuate`` at ``control.initial``. So each knob a preset (or ``knobs``) fixes must either
be listed in ``actuate`` (then the controller sets it; it must lie inside ``control.bounds``) or
already have that value in ``control.initial``; otherwise ``reset`` raises a ConfigError naming
``control.actuate``. Example: ``{controller: static, params: {preset: clip_higher},
actuate: [eps_high]}`` runs with eps_high 0.28 and the other knobs at their GRPO values.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import field_validator

from controllers import _params as P
from regulator.controller import Controller
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import DEFAULT_ACTUATE, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema

#: eps_low of a clip-free run: Knobs require eps_low < 1, so the lower ratio bound is 1e-6
#: (a log-ratio of -13.8, never reached in practice) instead of 0.
CLIP_FREE_EPS_LOW = 1.0 - 1e-6

_GRPO = {"w_pos": 1.0, "w_neg": 1.0, "eps_low": 0.2, "eps_high": 0.2}

#: The paper's baselines (arXiv 2511.05993): token-level GRPO and its variants. Each preset
#: fixes all four knobs.
PRESETS: dict[str, dict[str, float]] = {
    "grpo": dict(_GRPO),
    "clip_higher": {**_GRPO, "eps_high": 0.28},  # DAPO Clip-Higher: looser upper bound
    "clip_lower": {**_GRPO, "eps_low": 0.28},    # looser lower bound (collapses entropy)
    "clip_tighter": {**_GRPO, "eps_low": 0.12},  # tighter lower bound
    "clip_free": {**_GRPO, "eps_low": CLIP_FREE_EPS_LOW, "eps_high": math.inf},
    "pos_only": {**_GRPO, "w_neg": 0.0},         # learn from positive-advantage tokens only
    "neg_only": {**_GRPO, "w_pos": 0.0},         # learn from negative-advantage tokens only
}


class StaticParams(Schema):
    """Parameters of ``static``: with neither, it returns ``control.initial`` (a no-op)."""

    preset: str | None = None
    """A literature baseline fixing all four knobs: ``grpo`` (weights 1, eps 0.2/0.2),
    ``clip_higher`` (eps_high 0.28), ``clip_lower`` (eps_low 0.28), ``clip_tighter`` (eps_low
    0.12), ``clip_free`` (eps_low 1 - 1e-6, eps_high inf), ``pos_only`` (w_neg 0), ``neg_only``
    (w_pos 0); every knob not named is at its GRPO value."""
    knobs: P.KnobValues = None
    """Fixed knob values, e.g. ``{w_pos: 0.5}``; they override the preset's."""

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise unknown_name_error("", v, PRESETS, "static presets")
        return v


class StaticController(Controller):
    """Fixed knobs: a literature preset, explicit ``knobs``, or both (``knobs`` win)."""

    name = "static"
    Params = StaticParams
    params: StaticParams
    uses_target: ClassVar[bool] = False  # the bench shares one run across targets

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.preset = p.preset
        self.values: dict[str, float] = {**PRESETS.get(p.preset or "", {}), **(p.knobs or {})}

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = DEFAULT_ACTUATE) -> None:
        super().reset(initial, bounds, actuate)
        who = f"static preset {self.preset!r}" if self.preset else "static knobs"
        # Knobs that already sit at the fixed value in `initial` need not be actuated.
        differ = [k for k, v in self.values.items() if getattr(initial, k) != v]
        missing = [k for k in differ if k not in self.actuate]
        if missing:
            want = ", ".join(f"{k}={self.values[k]}" for k in missing)
            raise ConfigError(
                "control.actuate", f"a list that includes {', '.join(missing)}", list(self.actuate),
                hint=f"{who} sets {want}; list them in control.actuate or set them in control.initial",
            )
        P.require_in_bounds(who, {k: v for k, v in self.values.items() if k in self.actuate}, bounds)

    def act(self, obs: Observation) -> Knobs:
        return self.with_actuated(self.values)

    def state_dict(self) -> dict[str, Any]:
        return {}

