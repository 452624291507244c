"""Target entropy curves: ``make_target(spec)`` -> ``TargetCurve``; ``curve(step, total_steps)``.

Kinds (spec keys in brackets, progress p = step / (total_steps - 1) in [0, 1]):

- ``constant`` [value]
- ``linear`` [start, end]: start + (end - start) * p
- ``cosine`` [start, end]: end + (start - end) * (1 + cos(pi * p)) / 2
- ``exponential`` [start, end, rate]: end + (start - end) * exp(-rate * p)
- ``piecewise`` [points: [[step, value], ...]]: linear between points, held outside
- ``relative`` [fraction, end_fraction (default = fraction), decay: linear|cosine|exponential,
  rate]: a fraction of the entropy measured at step 0 (set with ``calibrate``), moving to
  ``end_fraction`` over training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from regulator.errors import ConfigError, unknown_name_error


def _num(spec: Mapping[str, Any], name: str, key: str, default: float | None = None) -> float:
    if name not in spec:
        if default is not None:
            return default
        raise ConfigError(f"{key}.{name}", f"a number (required by kind {spec.get('kind')!r})")
    v = spec[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{key}.{name}", "a finite number", v)
    return float(v)


def _progress(step: int, total_steps: int) -> float:
    return min(max(step / max(total_steps - 1, 1), 0.0), 1.0)


class TargetCurve:
    """A target entropy (nats) as a function of the step.

    Build with ``make_target``. ``relative`` curves need ``calibrate(initial_entropy)`` before
    use; the Regulator calls it with the first measurement.
    """

    def __init__(self, kind: str, spec: Mapping[str, Any], shape: Callable[[int, int], float],
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


def _decay(start: float, end: float, how: str, rate: float, key: str) -> Callable[[int, int], float]:
    if how == "linear":
        return lambda s, n: start + (end - start) * _progress(s, n)
    if how == "cosine":
        return lambda s, n: end + (start - end) * (1 + math.cos(math.pi * _progress(s, n))) / 2
    if how == "exponential":
        return lambda s, n: end + (start - end) * math.exp(-rate * _progress(s, n))
    raise unknown_name_error(f"{key}.decay", how, ["linear", "cosine", "exponential"], "decays")


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


def _piecewise(spec: Mapping[str, Any], key: str) -> Callable[[int, int], float]:
    clean = parse_points(spec.get("points"), f"{key}.points")
    for i, (_, v) in enumerate(clean):  # linear between points: >= 0 at every point is enough
        if v < 0:
            raise ConfigError(f"{key}.points[{i}]", "a [step, value] pair with value >= 0 (nats)",
                              list(spec["points"][i]))
    return lambda step, total_steps: interpolate(clean, step)


_KINDS = {
    "constant": {"value"},
    "linear": {"start", "end"},
    "cosine": {"start", "end"},
    "exponential": {"start", "end", "rate"},
    "piecewise": {"points"},
    "relative": {"fraction", "end_fraction", "decay", "rate"},
}


def make_target(spec: Mapping[str, Any] | float | int, key: str = "control.target") -> TargetCurve:
    """Build a TargetCurve from a config mapping (a bare number means ``constant``)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = {"kind": "constant", "value": spec}
    if not isinstance(spec, Mapping):
        raise ConfigError(key, "a mapping with a 'kind' (or a number)", spec)
    kind = spec.get("kind")
    if kind is None:
        raise ConfigError(f"{key}.kind", f"one of {', '.join(_KINDS)}")
    if not isinstance(kind, str) or kind not in _KINDS:
        raise unknown_name_error(f"{key}.kind", kind, _KINDS, "target kinds")
    for k in spec:
        if k != "kind" and k not in _KINDS[kind]:
            raise unknown_name_error(f"{key}.{k}", k, sorted(_KINDS[kind]), f"fields of kind {kind!r}")
    for name in ("value", "start", "end"):  # every kind is monotone between these values
        if name in spec and _num(spec, name, key) < 0:
            raise ConfigError(f"{key}.{name}", "an entropy target >= 0 (nats)", spec[name])
    if kind == "constant":
        v = _num(spec, "value", key)
        shape: Callable[[int, int], float] = lambda s, n: v  # noqa: E731
    elif kind in ("linear", "cosine"):
        shape = _decay(_num(spec, "start", key), _num(spec, "end", key), kind, 0.0, key)
    elif kind == "exponential":
        shape = _decay(_num(spec, "start", key), _num(spec, "end", key), kind,
                       _num(spec, "rate", key), key)
    elif kind == "piecewise":
        shape = _piecewise(spec, key)
    else:  # relative
        frac = _num(spec, "fraction", key)
        end = _num(spec, "end_fraction", key, default=frac)
        shape = _decay(frac, end, str(spec.get("decay", "linear")), _num(spec, "rate", key, 3.0), key)
        for name, v in (("fraction", frac), ("end_fraction", end)):
            if v < 0:
                raise ConfigError(f"{key}.{name}", "a fraction >= 0", v)
        return TargetCurve(kind, spec, shape, relative=True)
    return TargetCurve(kind, spec, shape)
