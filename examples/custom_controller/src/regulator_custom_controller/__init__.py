"""An example plugin controller: an integrating (incremental) P step on one knob.

Each step: knob <- clip(knob + direction * gain * e), e = target - entropy (nats). With the
paper's direction for w_pos (-1) entropy below target lowers w_pos. It is registered by the
entry point in this package's pyproject.toml; no import of this module is needed by users.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from regulator import ConfigError, Controller, KnobBounds, Knobs, Observation
from regulator.schema import Schema


class ProportionalStepParams(Schema):
    """``control.params`` of ``ProportionalStep``: each field's docstring is its documentation
    (``regulator config --explain control.params.gain``)."""

    knob: Literal["w_pos", "w_neg", "eps_low", "eps_high"] = "w_pos"
    """The knob this controller moves."""
    gain: float = Field(0.5, gt=0)
    """Knob change per nat of tracking error and step."""
    direction: Literal[1, -1] = -1
    """Sign of the knob change that raises entropy (-1 for w_pos on a pretrained policy)."""


class ProportionalStep(Controller):
    """knob_t = clip(knob_{t-1} + direction * gain * (target - entropy))."""

    Params = ProportionalStepParams  # validated by Controller.__init__ into self.params
    params: ProportionalStepParams

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = ("w_pos",)) -> None:
        super().reset(initial, bounds, actuate)
        if self.params.knob not in self.actuate:
            raise ConfigError("control.actuate", f"a list that includes {self.params.knob}", list(actuate))
        self.value = getattr(initial, self.params.knob)

    def act(self, obs: Observation) -> Knobs:
        p = self.params
        lo, hi = self.bounds.range(p.knob)
        self.value = min(max(self.value + p.direction * p.gain * obs.error, lo), hi)
        return self.with_actuated({p.knob: self.value})

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
