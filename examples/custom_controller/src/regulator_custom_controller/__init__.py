"""An example plugin controller: an integrating (incremental) P step on one knob.

Each step: knob <- clip(knob + direction * gain * e), e = target - entropy (nats). With the
paper's direction for w_pos (-1) entropy below target lowers w_pos. It is registered by the
entry point in this package's pyproject.toml; no import of this module is needed by users.
"""

from __future__ import annotations

from typing import Any

from regulator import ConfigError, Controller, KnobBounds, Knobs, Observation


class ProportionalStep(Controller):
    """knob_t = clip(knob_{t-1} + direction * gain * (target - entropy)).

    Params: knob ["w_pos"], gain [0.5] (> 0), direction [-1] (+1 or -1: the knob change that
    raises entropy).
    """

    def __init__(self, knob: str = "w_pos", gain: float = 0.5, direction: int = -1) -> None:
        if not isinstance(gain, (int, float)) or isinstance(gain, bool) or not gain > 0:
            raise ConfigError("gain", "a number > 0", gain)
        if direction not in (1, -1) or isinstance(direction, bool):
            raise ConfigError("direction", "+1 or -1", direction)
        self.knob, self.gain, self.direction = knob, float(gain), int(direction)

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = ("w_pos",)) -> None:
        super().reset(initial, bounds, actuate)
        if self.knob not in self.actuate:
            raise ConfigError("control.actuate", f"a list that includes {self.knob}", list(actuate))
        self.value = getattr(initial, self.knob)

    def act(self, obs: Observation) -> Knobs:
        lo, hi = self.bounds.range(self.knob)
        self.value = min(max(self.value + self.direction * self.gain * obs.error, lo), hi)
        return self.with_actuated({self.knob: self.value})

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
