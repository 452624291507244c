"""Parameter checking shared by the built-in controllers.

Every check raises a ConfigError whose key is the parameter's name; ``make_controller`` prefixes
it with ``control.params.`` so users see e.g. ``control.params.kp: expected a number >= 0``.
Checks that need the run's knobs (``actuate``, ``initial``, ``bounds``) happen at ``reset`` and
name the ``control.*`` key to change.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs
from regulator.targets import parse_points

#: sign of the knob change that *raises* entropy in the paper's regime (a pretrained policy):
#: lower w_pos, raise w_neg, raise eps_high, lower eps_low. Not universal (docs/regimes.md §1):
#: every feedback controller lets a parameter flip it per knob.
PAPER_DIRECTION: dict[str, int] = {"w_pos": -1, "w_neg": 1, "eps_low": -1, "eps_high": 1}


def number(name: str, v: Any, *, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None,
           allow_inf: bool = False) -> float:
    """A real number (not bool, not NaN) in the given range; ``above``/``below`` are strict."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(name, "a number", v)
    v = float(v)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ConfigError(name, "a finite number", v)
    if minimum is not None and v < minimum:
        raise ConfigError(name, f"a number >= {minimum}", v)
    if maximum is not None and v > maximum:
        raise ConfigError(name, f"a number <= {maximum}", v)
    if above is not None and not v > above:
        raise ConfigError(name, f"a number > {above}", v)
    if below is not None and not v < below:
        raise ConfigError(name, f"a number < {below}", v)
    return v


def integer(name: str, v: Any, *, minimum: int | None = None) -> int:
    """An int (a float with an integral value is accepted, bool is not)."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(name, "an integer", v)
    if minimum is not None and v < minimum:
        raise ConfigError(name, f"an integer >= {minimum}", v)
    return v


def boolean(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(name, "true or false", v)
    return v


def choice(name: str, v: Any, choices: Iterable[str], what: str) -> str:
    choices = list(choices)
    if not isinstance(v, str) or v not in choices:
        raise unknown_name_error(name, v, choices, what)
    return v


def mapping(name: str, v: Any) -> dict[str, Any]:
    if not isinstance(v, Mapping):
        raise ConfigError(name, "a mapping", v)
    return dict(v)


def knob_mapping(name: str, v: Any) -> dict[str, Any]:
    """A mapping whose keys are knob names (values unchecked)."""
    d = mapping(name, v)
    for k in d:
        if k not in KNOB_NAMES:
            raise unknown_name_error(f"{name}.{k}", k, KNOB_NAMES, "knob names")
    return d


def knob_value(name: str, knob: str, v: Any) -> float:
    """A value the knob can take (checked by ``Knobs`` itself: weights >= 0, eps_low in [0, 1))."""
    v = number(name, v, allow_inf=(knob == "eps_high"))
    try:
        Knobs(**{knob: v})
    except ConfigError as e:
        raise ConfigError(name, e.expected, v) from None
    return v


def direction(name: str, v: Any) -> int:
    """+1 or -1: the sign of the knob change that raises entropy."""
    if isinstance(v, bool) or v not in (1, -1):
        raise ConfigError(name, "+1 or -1 (the sign of the knob change that raises entropy)", v)
    return int(v)


def points(name: str, v: Any) -> list[tuple[float, float]]:
    """A non-empty list of [x, y] pairs with strictly increasing x."""
    return parse_points(v, name, x_name="x")


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
