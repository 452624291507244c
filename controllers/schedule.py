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
from collections.abc import Callable
from typing import Any, ClassVar

from controllers import _params as P
from regulator.controller import Controller
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import KnobBounds, Knobs
from regulator.observation import Observation
from regulator.registry import register_controller
from regulator.targets import make_target

Shape = Callable[[int, int], float]

_CURVE_KINDS = ("constant", "linear", "cosine", "exponential", "piecewise")
KINDS = (*_CURVE_KINDS, "stage", "epoch")


def _stage(spec: dict[str, Any], key: str) -> Shape:
    switch = P.number(f"{key}.switch", spec.get("switch", 0.5), minimum=0.0, below=1.0)
    start = P.number(f"{key}.start", spec.get("start", 0.0))
    end = P.number(f"{key}.end", spec.get("end", 1.0))

    def shape(step: int, total: int) -> float:
        p = min(max(step / max(total - 1, 1), 0.0), 1.0)
        if p <= switch:
            return start
        return start + (end - start) * (p - switch) / (1.0 - switch)

    return shape


def _epoch(spec: dict[str, Any], key: str) -> Shape:
    if "epochs" not in spec:
        raise ConfigError(f"{key}.epochs", "an integer >= 2 (required by kind 'epoch')")
    epochs = P.integer(f"{key}.epochs", spec["epochs"], minimum=2)
    start = P.number(f"{key}.start", spec.get("start", 0.0))
    end = P.number(f"{key}.end", spec.get("end", 1.0))

    def shape(step: int, total: int) -> float:
        e = min(step * epochs // max(total, 1), epochs - 1) + 1  # 1-based epoch index
        return start + (end - start) * (e - 1) / (epochs - 1)

    return shape


_EXTRA_FIELDS = {"stage": {"switch", "start", "end"}, "epoch": {"epochs", "start", "end"}}


def make_shape(spec: Any, key: str) -> Shape:
    """Build one knob's schedule from its spec (a bare number means ``constant``)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"kind": "constant", "value": spec}
    spec = P.mapping(key, spec)
    kind = spec.get("kind")
    if kind is None:
        raise ConfigError(f"{key}.kind", f"one of {', '.join(KINDS)}")
    if kind not in KINDS:
        raise unknown_name_error(f"{key}.kind", kind, KINDS, "schedule kinds")
    if kind in _CURVE_KINDS:
        return make_target(spec, key=key)
    for k in spec:
        if k != "kind" and k not in _EXTRA_FIELDS[kind]:
            raise unknown_name_error(f"{key}.{k}", k, sorted(_EXTRA_FIELDS[kind]),
                                     f"fields of kind {kind!r}")
    return _stage(spec, key) if kind == "stage" else _epoch(spec, key)


@register_controller("schedule")
class ScheduleController(Controller):
    """Open-loop schedules, one per knob.

    Params:
        knobs (mapping knob -> schedule spec, required): e.g. ``{w_pos: {kind: stage}}`` (the
            paper's stage-based lambda), ``{w_pos: {kind: epoch, epochs: 4}}`` (epoch-wise),
            ``{eps_high: {kind: linear, start: 0.2, end: 0.28}}``; a bare number is a constant.

    Every scheduled knob must be in ``control.actuate`` (checked at reset); its value is clamped
    into ``control.bounds``. Actuated knobs without a schedule stay at ``control.initial``.
    """

    uses_target: ClassVar[bool] = False  # the bench shares one run across targets

    def __init__(self, knobs: dict[str, Any] | None = None) -> None:
        if knobs is None:
            raise ConfigError("knobs", "a mapping knob -> schedule, e.g. {w_pos: {kind: stage}}")
        specs = P.knob_mapping("knobs", knobs)
        if not specs:
            raise ConfigError("knobs", "at least one scheduled knob", knobs)
        self.shapes: dict[str, Shape] = {k: make_shape(v, f"knobs.{k}") for k, v in specs.items()}
        # values must be valid for the knob at the two ends and the middle of a run
        for k, shape in self.shapes.items():
            for s in (0, 500, 1000):
                P.knob_value(f"knobs.{k}", k, shape(s, 1001))

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = ("w_pos",)) -> None:
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
