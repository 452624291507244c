"""Target entropy curves: ``make_target(spec)`` -> ``TargetCurve``; ``curve(step, total_steps)``.

Each kind is a ``TargetSpec`` subclass registered in ``TARGETS`` (its fields are the kind's keys;
progress p = step / (total_steps - 1) in [0, 1]). The family is looked up in a Registry rather
than a closed tagged union so a plugin can publish a curve kind (entry-point group
``regulator.targets``) without editing this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from regulator.errors import ConfigError
from regulator.kinds import KindSchema, parse_kind, schema_check
from regulator.registries import Registry

__all__ = ["TARGETS", "TargetCurve", "TargetSpec", "interpolate", "make_target", "parse_points",
           "parse_target"]

#: an entropy in nats (>= 0: every kind is monotone between its values, so the curve stays >= 0)
Nats = Annotated[float, Field(ge=0)]
Shape = Callable[[int, int], float]


def _progress(step: int, total_steps: int) -> float:
    return min(max(step / max(total_steps - 1, 1), 0.0), 1.0)


class TargetCurve:
    """A target entropy (nats) as a function of the step.

    Build with ``make_target``. ``relative`` curves need ``calibrate(initial_entropy)`` before
    use; the Regulator calls it with the first measurement.
    """

    def __init__(self, kind: str, spec: Mapping[str, Any], shape: Shape,
                 relative: bool = False) -> None:
        self.kind = kind
        self.spec = dict(spec)
        self._shape = shape
        self.relative = relative
        self.scale: float | None = None if relative else 1.0

    @property
    def needs_calibration(self) -> bool:
        return self.scale is None

    def calibrate(self, initial_entropy: float) -> None:
        """Fix the reference entropy of a ``relative`` curve (no-op for absolute kinds)."""
        if self.relative and self.scale is None:
            if not math.isfinite(initial_entropy) or initial_entropy < 0:
                raise ValueError(f"relative target needs a finite entropy >= 0, got {initial_entropy}")
            self.scale = float(initial_entropy)

    def __call__(self, step: int, total_steps: int) -> float:
        if self.scale is None:
            raise RuntimeError("relative target curve used before calibrate(initial_entropy)")
        return self.scale * self._shape(step, total_steps)

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.relative:
            self.scale = state.get("scale")

    def __repr__(self) -> str:
        return f"TargetCurve({self.spec})"


def _decay(start: float, end: float, how: str, rate: float = 0.0) -> Shape:
    if how == "linear":
        return lambda s, n: start + (end - start) * _progress(s, n)
    if how == "cosine":
        return lambda s, n: end + (start - end) * (1 + math.cos(math.pi * _progress(s, n))) / 2
    return lambda s, n: end + (start - end) * math.exp(-rate * _progress(s, n))  # exponential


def parse_points(pts: Any, key: str, x_name: str = "step") -> list[tuple[float, float]]:
    """A non-empty list of [x, y] number pairs with strictly increasing x (ConfigError else)."""
    if not isinstance(pts, (list, tuple)) or not pts:
        raise ConfigError(key, f"a non-empty list of [{x_name}, value] pairs", pts)
    clean: list[tuple[float, float]] = []
    for i, p in enumerate(pts):
        ok = isinstance(p, (list, tuple)) and len(p) == 2 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in p
        )
        if not ok:
            raise ConfigError(f"{key}[{i}]", f"a [{x_name}, value] pair of finite numbers", p)
        clean.append((float(p[0]), float(p[1])))
    if any(b[0] <= a[0] for a, b in zip(clean, clean[1:])):
        raise ConfigError(key, f"{x_name} values in strictly increasing order", pts)
    return clean


def interpolate(points: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear through ``points``, held constant outside them."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


# ---------------------------------------------------------------------------------------------
# the kinds


class TargetSpec(KindSchema):
    """Base of the target kinds: ``shape()`` is the curve (relative to the calibrated entropy
    when ``relative``), ``build()`` the TargetCurve."""

    kind: str
    """The curve's shape, a name in the target registry (constant, linear, cosine, ...)."""
    relative: ClassVar[bool] = False

    def shape(self) -> Shape:  # pragma: no cover - every kind overrides it
        raise NotImplementedError

    def build(self, key: str = "control.target") -> TargetCurve:
        return TargetCurve(self.kind, self.resolved(), self.shape(), relative=self.relative)


TARGETS: Registry[type[TargetSpec]] = Registry("target kinds", group="regulator.targets",
                                                check=schema_check(TargetSpec))


@TARGETS.register("constant")
class ConstantTarget(TargetSpec):
    """The same target at every step."""

    kind: Literal["constant"]
    value: Nats
    """the target entropy (nats)"""

    def shape(self) -> Shape:
        v = self.value
        return lambda s, n: v


@TARGETS.register("linear")
class LinearTarget(TargetSpec):
    """start + (end - start) * p."""

    kind: Literal["linear"]
    start: Nats
    """the target at the first step (nats)"""
    end: Nats
    """the target at the last step (nats)"""

    def shape(self) -> Shape:
        return _decay(self.start, self.end, "linear")


@TARGETS.register("cosine")
class CosineTarget(TargetSpec):
    """end + (start - end) * (1 + cos(pi * p)) / 2: flat at both ends."""

    kind: Literal["cosine"]
    start: Nats
    """the target at the first step (nats)"""
    end: Nats
    """the target at the last step (nats)"""

    def shape(self) -> Shape:
        return _decay(self.start, self.end, "cosine")


@TARGETS.register("exponential")
class ExponentialTarget(TargetSpec):
    """end + (start - end) * exp(-rate * p): reaches ``end`` only as rate grows."""

    kind: Literal["exponential"]
    start: Nats
    """the target at the first step (nats)"""
    end: Nats
    """the value the curve decays towards (nats)"""
    rate: Annotated[float, Field(gt=0)]
    """decay rate per unit of progress, > 0 (the curve is at start + (end - start) *
    (1 - e^-rate) at the last step)"""

    def shape(self) -> Shape:
        return _decay(self.start, self.end, "exponential", self.rate)


@TARGETS.register("piecewise")
class PiecewiseTarget(TargetSpec):
    """Linear between [step, value] points, held constant before the first and after the last."""

    kind: Literal["piecewise"]
    points: list[tuple[float, float]]
    """[[step, value], ...] with strictly increasing steps and values >= 0 (nats)"""

    @field_validator("points", mode="before")
    @classmethod
    def _points(cls, v: Any) -> list[tuple[float, float]]:
        clean = parse_points(v, "")
        for i, (_, value) in enumerate(clean):  # linear between points: >= 0 at each is enough
            if value < 0:
                raise ConfigError(f"[{i}]", "a [step, value] pair with value >= 0 (nats)", list(v[i]))
        return clean

    def shape(self) -> Shape:
        pts = list(self.points)
        return lambda step, total_steps: interpolate(pts, step)


@TARGETS.register("relative")
class RelativeTarget(TargetSpec):
    """A fraction of the entropy measured at step 0, moving from ``fraction`` to
    ``end_fraction`` over training (the Regulator calibrates it with its first measurement)."""

    relative: ClassVar[bool] = True
    kind: Literal["relative"]
    fraction: Annotated[float, Field(ge=0)]
    """the target at the first step, as a fraction of the initial entropy"""
    end_fraction: float | None = Field(None, ge=0)
    """the fraction at the last step (default: ``fraction``, a constant fraction)"""
    decay: Literal["linear", "cosine", "exponential"] = "linear"
    """how the fraction moves from ``fraction`` to ``end_fraction``"""
    rate: Annotated[float, Field(gt=0)] = 3.0
    """decay rate of ``decay: exponential`` (per unit of progress, > 0)"""

    @model_validator(mode="after")
    def _end(self) -> RelativeTarget:
        if self.end_fraction is None:
            self.end_fraction = self.fraction
        return self

    def shape(self) -> Shape:
        return _decay(self.fraction, float(self.end_fraction), self.decay, self.rate)


def parse_target(spec: Mapping[str, Any] | float | int | TargetSpec,
                 key: str = "control.target") -> TargetSpec:
    """The validated spec of a target (a bare number means ``constant``); its ``resolved()`` is
    the spec with every default filled in."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"kind": "constant", "value": spec}
    if not isinstance(spec, (Mapping, TargetSpec)):
        raise ConfigError(key, "a mapping with a 'kind' (or a number)", spec)
    return parse_kind(TARGETS, spec, key)


def make_target(spec: Mapping[str, Any] | float | int | TargetSpec,
                key: str = "control.target") -> TargetCurve:
    """Build a TargetCurve from a config mapping (a bare number means ``constant``)."""
    return parse_target(spec, key).build(key)


def _checked_target(v: Any) -> Any:
    if v is not None:
        parse_target(v, key="")  # checked now, built per run
    return v


#: a config field holding a target spec (a mapping or a number; None where the field allows it),
#: checked when the config is read and kept as written
TargetField = Annotated[Any, AfterValidator(_checked_target)]
