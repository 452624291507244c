"""Parameter types shared by the built-in controllers' ``Params`` models, and the checks that
need the run's knobs.

The types below are pydantic field types: a mistake raises a ConfigError whose key is relative
to the field (``""`` the field, ``".w_pos"`` or ``"[1]"`` inside it), and ``parse`` prefixes the
location (``control.params.gains.w_pos``). Checks that need the run's knobs (``actuate``,
``initial``, ``bounds``) happen at ``reset`` and name the ``control.*`` key to change.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import PlainValidator

from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs

#: sign of the knob change that *raises* entropy in the paper's regime (a pretrained policy):
#: lower w_pos, raise w_neg, raise eps_high, lower eps_low. Not universal (docs/regimes.md §1):
#: every feedback controller lets a parameter flip it per knob.
PAPER_DIRECTION: dict[str, int] = {"w_pos": -1, "w_neg": 1, "eps_low": -1, "eps_high": 1}

#: a knob name
Knob = Literal["w_pos", "w_neg", "eps_low", "eps_high"]
assert set(Knob.__args__) == set(KNOB_NAMES)  # type: ignore[attr-defined]

_DIRECTION = "+1 or -1 (the sign of the knob change that raises entropy)"


def _direction(v: Any) -> int:
    if isinstance(v, bool) or v not in (1, -1):
        raise ConfigError("", _DIRECTION, v)
    return int(v)


def _direction_or_auto(v: Any) -> int | str | None:
    return v if v is None or v == "auto" else _direction(v)


#: +1 or -1: the sign of the knob change that raises entropy
Direction = Annotated[int, PlainValidator(_direction)]
#: a Direction, ``auto`` (estimated online) or None (the paper's)
DirectionOrAuto = Annotated[int | str | None, PlainValidator(_direction_or_auto)]


def knob_value(knob: str, v: Any, key: str = "") -> float:
    """A value ``knob`` can take (checked by ``Knobs`` itself: weights >= 0, eps_low in [0, 1),
    eps_high may be inf)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise ConfigError(key, "a number", v)
    if math.isinf(v) and knob != "eps_high":
        raise ConfigError(key, "a finite number", v)
    try:
        Knobs(**{knob: float(v)})
    except ConfigError as e:
        raise ConfigError(key, e.expected, v) from None
    return float(v)


def knob_mapping(v: Any, value: Callable[[str, Any, str], Any], what: str) -> dict[str, Any]:
    """A mapping knob name -> ``value(knob, v, key)``; ``what`` describes it in errors."""
    if not isinstance(v, Mapping):
        raise ConfigError("", f"a mapping knob -> {what}", v)
    for k in v:
        if k not in KNOB_NAMES:
            raise unknown_name_error(f".{k}", k, KNOB_NAMES, "knob names")
    return {k: value(k, x, f".{k}") for k, x in v.items()}


def knob_map(value: Callable[[str, Any, str], Any], what: str, of: Any = Any) -> Any:
    """A pydantic field type: a mapping knob name -> a value (of type ``of``) checked by
    ``value(knob, v, key)``; None passes (the field's default, e.g. "no knobs")."""

    def check(v: Any) -> dict[str, Any] | None:
        return None if v is None else knob_mapping(v, value, what)

    return Annotated[dict[str, of] | None, PlainValidator(check)]  # type: ignore[valid-type]


#: knob -> a value the knob can take (``Knobs``' own checks)
KnobValues = knob_map(knob_value, "value", float)


def require_actuated(who: str, knobs: Iterable[str], actuate: tuple[str, ...]) -> None:
    """Reset-time check: every knob a controller moves must be listed in ``control.actuate``."""
    missing = [k for k in knobs if k not in actuate]
    if missing:
        raise ConfigError(
            "control.actuate", f"a list that includes {', '.join(missing)} ({who} moves them)",
            list(actuate), hint="the Regulator holds knobs that are not in actuate at control.initial",
        )


def require_in_bounds(who: str, values: Mapping[str, float], bounds: KnobBounds) -> None:
    """Reset-time check: fixed knob values must lie inside ``control.bounds``."""
    for k, v in values.items():
        lo, hi = bounds.range(k)
        if not lo <= v <= hi:
            raise ConfigError(f"control.bounds.{k}", f"a range that contains {v} ({who} sets {k}={v})",
                              [lo, hi])


def u_range(gains: Mapping[str, float], initial: Knobs, bounds: KnobBounds) -> tuple[float, float]:
    """[u_lo, u_hi] of a scalar command u moving each knob k to ``initial_k + g_k u``: beyond it
    every knob with a nonzero g_k is saturated (-inf, inf when none moves)."""
    ends = []
    for k, g in gains.items():
        if abs(g) < 1e-12:
            continue
        b_lo, b_hi = bounds.range(k)
        x0 = getattr(initial, k)
        a, b = (b_lo - x0) / g, (b_hi - x0) / g
        ends.append((min(a, b), max(a, b)))
    if not ends:
        return -math.inf, math.inf
    return min(e[0] for e in ends), max(e[1] for e in ends)
