"""The actuators: token loss weights by advantage sign and the PPO clip bounds."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated

from pydantic import PlainSerializer, PlainValidator

from regulator.errors import ConfigError, unknown_name_error

KNOB_NAMES: tuple[str, ...] = ("w_pos", "w_neg", "eps_low", "eps_high")


def _as_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(name, "a number", value)
    return float(value)


@dataclass(frozen=True)
class Knobs:
    """Knob values applied to one training step.

    w_pos / w_neg: loss weights of tokens with positive / negative advantage (>= 0).
    eps_low / eps_high: PPO clip bounds, ratio clipped to [1 - eps_low, 1 + eps_high];
    eps_low in [0, 1), eps_high >= 0 (``inf`` = no upper clipping).
    """

    w_pos: float = 1.0
    w_neg: float = 1.0
    eps_low: float = 0.2
    eps_high: float = 0.2

    def __post_init__(self) -> None:
        for name in KNOB_NAMES:
            v = _as_float(name, getattr(self, name))
            object.__setattr__(self, name, v)
            if math.isnan(v):
                raise ConfigError(name, "a number, not NaN", v)
        for name in ("w_pos", "w_neg"):
            v = getattr(self, name)
            if v < 0 or math.isinf(v):
                raise ConfigError(name, "a finite weight >= 0", v)
        if not 0.0 <= self.eps_low < 1.0:
            raise ConfigError("eps_low", "a value in [0, 1)", self.eps_low)
        if self.eps_high < 0:
            raise ConfigError("eps_high", "a value >= 0 (inf = no upper clipping)", self.eps_high)

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in KNOB_NAMES}  # (asdict deep-copies: slow)

    def replace(self, **changes: float) -> Knobs:
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None, key: str = "initial") -> Knobs:
        """Build from a config mapping; unknown names raise a ConfigError naming `key`."""
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(key, "a mapping knob -> value", values)
        values = dict(values or {})
        unknown = set(values) - set(KNOB_NAMES)
        if unknown:
            bad = sorted(unknown)[0]
            raise unknown_name_error(f"{key}.{bad}", bad, KNOB_NAMES, "knob names")
        try:
            return cls(**values)  # type: ignore[arg-type]
        except ConfigError as e:
            raise e.with_key(f"{key}.{e.key}") from None


_DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "w_pos": (0.0, 1.0),
    "w_neg": (0.0, 2.0),
    "eps_low": (0.0, 0.5),
    "eps_high": (0.0, 0.5),
}


def _knob_range(name: str, pair: object) -> tuple[float, float]:
    """A checked [min, max] of knob ``name`` (weights finite and >= 0, eps_low inside [0, 1),
    eps_high >= 0)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ConfigError(name, "a [min, max] pair", list(pair) if isinstance(pair, tuple) else pair)
    lo, hi = (_as_float(name, x) for x in pair)
    if math.isnan(lo) or math.isnan(hi):
        raise ConfigError(name, "a [min, max] pair without NaN", list(pair))
    if lo > hi:
        raise ConfigError(name, "min <= max", [lo, hi])
    if name.startswith("w_") and (lo < 0 or not math.isfinite(hi)):
        raise ConfigError(name, "a finite weight range with min >= 0", [lo, hi])
    if name == "eps_low" and not (0 <= lo and hi < 1):
        raise ConfigError(name, "a range inside [0, 1)", [lo, hi])
    if name == "eps_high" and lo < 0:
        raise ConfigError(name, "a range with min >= 0", [lo, hi])
    return lo, hi


def _rate_limit(md: object) -> float | dict[str, float]:
    """A checked ``max_delta``: one positive number, or a mapping knob -> positive number."""
    if not isinstance(md, Mapping):
        v = _as_float("max_delta", md)
        if not v > 0:
            raise ConfigError("max_delta", "a positive number or a mapping knob -> number", md)
        return v
    clean = {}
    for k, v in md.items():
        if k not in KNOB_NAMES:
            raise unknown_name_error(f"max_delta.{k}", k, KNOB_NAMES, "knob names")
        v = _as_float(f"max_delta.{k}", v)
        if not v > 0:
            raise ConfigError(f"max_delta.{k}", "a positive number", v)
        clean[k] = v
    return clean


@dataclass(frozen=True)
class KnobBounds:
    """Per-knob [min, max] and an optional maximum change per step.

    ``max_delta`` is None (no rate limit), one float for every knob, or a mapping knob -> float.
    """

    w_pos: tuple[float, float] = _DEFAULT_RANGES["w_pos"]
    w_neg: tuple[float, float] = _DEFAULT_RANGES["w_neg"]
    eps_low: tuple[float, float] = _DEFAULT_RANGES["eps_low"]
    eps_high: tuple[float, float] = _DEFAULT_RANGES["eps_high"]
    max_delta: float | Mapping[str, float] | None = field(default=None)

    def __post_init__(self) -> None:
        for name in KNOB_NAMES:
            object.__setattr__(self, name, _knob_range(name, getattr(self, name)))
        if self.max_delta is not None:
            object.__setattr__(self, "max_delta", _rate_limit(self.max_delta))

    def range(self, name: str) -> tuple[float, float]:
        return getattr(self, name)

    def as_config(self) -> dict[str, object]:
        """The bounds as a config mapping (every knob's [min, max], and max_delta when set)."""
        out: dict[str, object] = {k: list(self.range(k)) for k in KNOB_NAMES}
        if self.max_delta is not None:
            md = self.max_delta
            out["max_delta"] = dict(md) if isinstance(md, Mapping) else md
        return out

    def rate(self, name: str) -> float | None:
        md = self.max_delta
        if md is None:
            return None
        if isinstance(md, Mapping):
            return md.get(name)
        return float(md)

    def clamp(
        self, knobs: Knobs, previous: Knobs | None = None, only: tuple[str, ...] = KNOB_NAMES
    ) -> Knobs:
        """Clamp the knobs named in `only` into their ranges and, given the previous knobs,
        their rate limits; the other knobs pass unchanged."""
        out = knobs.as_dict()
        for name in only:
            v = getattr(knobs, name)
            lo, hi = self.range(name)
            rate = self.rate(name)
            if previous is not None and rate is not None:
                p = getattr(previous, name)
                v = min(max(v, p - rate), p + rate)
            out[name] = min(max(v, lo), hi)
        return Knobs(**out)

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | None, key: str = "bounds") -> KnobBounds:
        """Build from a config mapping such as ``{w_pos: [0, 1], max_delta: 0.1}``."""
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(key, "a mapping knob -> [min, max] (and max_delta)", values)
        values = dict(values or {})
        allowed = (*KNOB_NAMES, "max_delta")
        for k in values:
            if k not in allowed:
                raise unknown_name_error(f"{key}.{k}", k, allowed, "bounds keys")
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()}
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except ConfigError as e:
            raise e.with_key(f"{key}.{e.key}") from None


def check_initial_in_bounds(initial: Knobs, bounds: KnobBounds, actuate: Sequence[str],
                            key: str = "initial") -> None:
    """An actuated knob must start inside its bounds (it would be clamped silently otherwise)."""
    for name in actuate:
        lo, hi = bounds.range(name)
        v = getattr(initial, name)
        if not lo <= v <= hi:
            raise ConfigError(f"{key}.{name}", f"a start value inside bounds.{name} [{lo}, {hi}]", v)


# --- config types shared by every schema that names knobs (control, envs, bench, tune) --------

def _knobs_field(v: object) -> Knobs:
    return v if isinstance(v, Knobs) else Knobs.from_mapping(v, key="")  # type: ignore[arg-type]


def _bounds_field(v: object) -> KnobBounds:
    return v if isinstance(v, KnobBounds) else KnobBounds.from_mapping(v, key="")  # type: ignore[arg-type]


def check_actuate(value: object, key: str = "actuate") -> tuple[str, ...]:
    """A knob name or a list of distinct knob names, as a tuple; errors name ``key[i]``."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(key, "a list of knob names", value)
    for i, k in enumerate(value):
        if k not in KNOB_NAMES:
            raise unknown_name_error(f"{key}[{i}]", k, KNOB_NAMES, "knob names")
        if k in value[:i]:
            raise ConfigError(f"{key}[{i}]", "each knob once", k,
                              hint=f"already at [{list(value).index(k)}]")
    return tuple(value)


def _actuate_field(v: object) -> tuple[str, ...]:
    return check_actuate(v, key="")


#: ``initial:`` in a config: a mapping knob -> value, checked by ``Knobs`` itself
KnobsField = Annotated[Knobs, PlainValidator(_knobs_field), PlainSerializer(lambda k: k.as_dict())]
#: ``bounds:`` in a config: knob -> [min, max] and ``max_delta``
BoundsField = Annotated[KnobBounds, PlainValidator(_bounds_field),
                        PlainSerializer(lambda b: b.as_config())]
#: ``actuate:`` in a config: a knob name or a list of them (an empty list is allowed here)
Actuate = Annotated[tuple[str, ...], PlainValidator(_actuate_field), PlainSerializer(list)]
#: the knobs a controller moves when neither the config nor the controller says otherwise
DEFAULT_ACTUATE: tuple[str, ...] = ("w_pos",)
