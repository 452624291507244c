"""The reachable band: how fast and how slow entropy can move under the knob bounds.

A target the knobs cannot reach is physics, not a controller's fault. For each plant and seed the
bench runs the plant open loop at every corner of the knob box (each actuated knob at its lower
or upper bound, the others at ``initial``): the pointwise lowest and highest EMA-smoothed
entropy over the corners are the fastest and slowest paths. Between them a controller can hold
any level it reaches on the way (braking every weight to its minimum stops learning, and with it
entropy change), so the tracking score projects the target into [lo, hi]
(``regulator.tracking.feasible_tracking``), moving no faster than the plant did at each level.

How fast entropy can climb back after a descent is not on those paths (they all start at the
initial entropy), so on the simulated plant the band also runs *switch* paths: the fastest
descent until the lowest path first reaches a share of the initial entropy (``SWITCHES``),
then the corner highest on average.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from regulator.knobs import KNOB_NAMES, Knobs
from regulator.plant import run_open_loop
from regulator.tracking import ema

#: the levels, as shares of the initial entropy, from which the switch paths climb
SWITCHES = (0.75, 0.5, 0.25)


class Band(NamedTuple):
    """The reachable band of one plant and seed (EMA-smoothed entropy per step)."""

    lo: list[float]
    """The lowest path: the fastest descent."""
    hi: list[float]
    """The highest path."""
    rises: Sequence[Sequence[float]] = ()
    """Climbs from lower levels (the switch paths from their switch step on)."""


def band_corners(entries: Sequence[Any]) -> list[Knobs]:
    """Every corner of the union of the entries' knob boxes (actuated knobs only).

    ``entries`` have ``actuate``, ``initial`` and ``bounds`` (``envs.bench_config.ControllerEntry``);
    knobs no entry actuates stay at the first entry's ``initial``.
    """
    ranges: dict[str, tuple[float, float]] = {}
    for e in entries:
        for k in e.actuate:
            lo, hi = e.bounds.range(k)
            old = ranges.get(k, (lo, hi))
            ranges[k] = (min(old[0], lo), max(old[1], hi))
    base = entries[0].initial
    names = [k for k in KNOB_NAMES if k in ranges]
    corners = []
    for ends in itertools.product(*[sorted(set(ranges[k])) for k in names]):
        corners.append(base.replace(**dict(zip(names, ends))))
    return corners or [base]


def band_from_paths(paths: Sequence[Sequence[float]], ema_alpha: float = 0.6) -> Band:
    """(lo, hi) per step: the lowest and highest EMA-smoothed path."""
    smooth = np.stack([ema(p, ema_alpha) for p in paths])
    return Band(np.nanmin(smooth, axis=0).tolist(), np.nanmax(smooth, axis=0).tolist())


def switch_plan(paths: Sequence[Sequence[float]], horizon: int,
                ema_alpha: float = 0.6) -> list[tuple[int, int, int]]:
    """(switch step, corner before, corner after) of each climbing path: the corner lowest when
    the lowest path first reaches each of ``SWITCHES`` x the initial entropy, then the one
    highest on average (corner indices into ``paths``). Levels never reached: no path."""
    smooth = np.stack([ema(p, ema_alpha) for p in paths])
    up = int(np.nanargmax(np.nanmean(smooth, axis=1)))
    lowest = np.nanmin(smooth, axis=0)
    plan = []
    for f in SWITCHES:
        below = np.nonzero(lowest[: horizon - 2] <= f * lowest[0])[0]
        if below.size and below[0] > 0:
            s = int(below[0])
            plan.append((s, int(np.nanargmin(smooth[:, s])), up))
    return plan


def sim_bands(plant_config: Any, seeds: Sequence[int], corners: Sequence[Knobs], horizon: int,
              ema_alpha: float = 0.6) -> dict[int, Band]:
    """The band of every seed on the simulated plant: one batched plant per corner and seed,
    then one per switch path and seed."""
    from envs.plant import SimPlant
    from envs.sim_loop import SimPlants

    def run(schedules: list[list[Knobs]], plant_seeds: list[int]) -> np.ndarray:
        plant = SimPlants(SimPlant(plant_config, len(schedules), seeds=plant_seeds), horizon)
        return np.asarray(run_open_loop(plant, schedules, horizon))

    n = len(corners)
    per_run = run([[c] * horizon for _ in seeds for c in corners], [s for s in seeds for _ in range(n)])
    plans = {s: switch_plan(per_run[i * n:(i + 1) * n], horizon, ema_alpha) for i, s in enumerate(seeds)}
    jobs = [(s, at, [corners[a]] * at + [corners[b]] * (horizon - at))
            for s in seeds for at, a, b in plans[s]]
    climbs = run([sch for _, _, sch in jobs], [s for s, _, _ in jobs]) if jobs else []
    out = {}
    for i, s in enumerate(seeds):
        band = band_from_paths(per_run[i * n:(i + 1) * n], ema_alpha)
        rises = [ema(p, ema_alpha)[at:].tolist() for (js, at, _), p in zip(jobs, climbs) if js == s]
        out[s] = band._replace(rises=rises)
    return out
