"""``schedule``: open-loop knob values as functions of training progress.

Progress p = step / (total_steps - 1) in [0, 1] (``Observation.progress``). Kinds per knob:

- ``constant`` [value]
- ``linear`` [start, end]: start + (end - start) p
- ``cosine`` [start, end]: end + (start - end) (1 + cos(pi p)) / 2
- ``exponential`` [start, end, rate]: end + (start - end) exp(-rate p)
- ``piecewise`` [points: [[step, value], ...]]: linear between points (x in steps), held outside
- ``stage`` [switch=0.5, start=0, end=1]: the paper's stage-based lambda: ``start`` while
  p <= switch, then linear start -> end: lambda = start + (end - start) (p - switch) / (1 - switch)
- ``epoch`` [epochs, start=0, end=1]: the paper's epoch-wise lambda = (e - 1) / (E - 1) for epoch
  e = 1..E (scaled onto [start, end]); epoch e = floor(step E / total_steps) + 1.

The first five are the target-curve shapes of ``regulator.targets`` (same formulas).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from controllers import _params as P
from regulator.controller import Controller
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import DEFAULT_ACTUATE, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema, parse
from regulator.targets import make_target

Shape = Callable[[int, int], float]

_CURVE_KINDS = ("constant", "linear", "cosine", "exponential", "piecewise")
KINDS = (*_CURVE_KINDS, "stage", "epoch")


class StageShape(Schema):
    """The paper's stage-based lambda: ``start`` while p <= switch, then linear to ``end``."""

    kind: Literal["stage"]
    switch: float = Field(0.5, ge=0, lt=1)
    """Training progress at which the ramp starts."""
    start: float = 0.0
    """Value up to ``switch``."""
    end: float = 1.0
    """Value at the end of training."""

    def __call__(self, step: int, total: int) -> float:
        p = min(max(step / max(total - 1, 1), 0.0), 1.0)
        if p <= self.switch:
            return self.start
        return self.start + (self.end - self.start) * (p - self.switch) / (1.0 - self.switch)


class EpochShape(Schema):
    """The paper's epoch-wise lambda: (e - 1) / (E - 1) for epoch e = 1..E, onto [start, end]."""

    kind: Literal["epoch"]
    epochs: int = Field(ge=2)
    """Number of epochs E; epoch e = floor(step E / total_steps) + 1."""
    start: float = 0.0
    """Value in the first epoch."""
    end: float = 1.0
    """Value in the last epoch."""

    def __call__(self, step: int, total: int) -> float:
        e = min(step * self.epochs // max(total, 1), self.epochs - 1) + 1  # 1-based epoch index
        return self.start + (self.end - self.start) * (e - 1) / (self.epochs - 1)


_SHAPES: dict[str, type[StageShape] | type[EpochShape]] = {"stage": StageShape, "epoch": EpochShape}


def make_shape(spec: Any, key: str) -> Shape:
    """Build one knob's schedule from its spec (a bare number means ``constant``)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"kind": "constant", "value": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(key, "a mapping with a 'kind' (or a number)", spec)
    kind = spec.get("kind")
    if kind is None:
        raise ConfigError(f"{key}.kind", f"one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise unknown_name_error(f"{key}.kind", kind, KINDS, "schedule kinds")
    if kind in _CURVE_KINDS:
        return make_target(spec, key=key)
    return parse(_SHAPES[kind], spec, key)


def _knob_schedule(knob: str, spec: Any, key: str) -> Any:
    """A schedule spec whose values are valid for ``knob`` at the two ends and the middle of a run."""
    shape = make_shape(spec, key)
    for s in (0, 500, 1000):
        P.knob_value(knob, shape(s, 1001), key)
    return spec


#: knob -> schedule spec
Schedules = P.knob_map(_knob_schedule, "schedule")


class ScheduleParams(Schema):
    """Parameters of ``schedule``."""

    knobs: Schedules
    """Knob -> schedule spec (required), e.g. ``{w_pos: {kind: stage}}`` (the paper's
    stage-based lambda), ``{w_pos: {kind: epoch, epochs: 4}}`` (epoch-wise),
    ``{eps_high: {kind: linear, start: 0.2, end: 0.28}}``; a bare number is a constant."""

    @field_validator("knobs")
    @classmethod
    def _some_knob(cls, v: dict[str, Any] | None) -> dict[str, Any]:
        if not v:
            raise ConfigError("", "at least one scheduled knob, e.g. {w_pos: {kind: stage}}", v)
        return v


class ScheduleController(Controller):
    """Open-loop schedules, one per knob.

    Every scheduled knob must be in ``control.actuate`` (checked at reset); its value is clamped
    into ``control.bounds``. Actuated knobs without a schedule stay at ``control.initial``.
    """

    name = "schedule"
    Params = ScheduleParams
    params: ScheduleParams
    uses_target: ClassVar[bool] = False  # the bench shares one run across targets

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.shapes: dict[str, Shape] = {k: make_shape(v, f"knobs.{k}")
                                         for k, v in (self.params.knobs or {}).items()}

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = DEFAULT_ACTUATE) -> None:
        super().reset(initial, bounds, actuate)
        P.require_actuated("schedule", self.shapes, self.actuate)

    def value(self, knob: str, step: int, total_steps: int) -> float:
        """The scheduled (unclamped) value of ``knob`` at ``step``."""
        return float(self.shapes[knob](step, total_steps))

    def act(self, obs: Observation) -> Knobs:
        vals = {k: self.value(k, obs.step, obs.total_steps) for k in self.shapes}
        if not all(math.isfinite(v) for v in vals.values()):
            raise ValueError(f"schedule produced a non-finite value: {vals}")
        return self.with_actuated(vals)
