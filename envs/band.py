"""The reachable band: how fast and how slow entropy can move under the knob bounds.

A target the knobs cannot reach is physics, not a controller's fault. For each plant and seed the
bench runs the plant open loop at every corner of the knob box (each actuated knob at its lower
or upper bound, the others at ``initial``): the pointwise lowest and highest EMA-smoothed
entropy over the corners are the fastest and slowest paths. Between them a controller can hold
any level it reaches on the way (braking every weight to its minimum stops learning, and with it
entropy change), so the tracking score projects the target into [lo, hi]
(``regulator.tracking.feasible_tracking``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from regulator.knobs import KNOB_NAMES, Knobs
from regulator.plant import run_open_loop
from regulator.tracking import ema


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


def band_from_paths(paths: Sequence[Sequence[float]],
                    ema_alpha: float = 0.6) -> tuple[list[float], list[float]]:
    """(lo, hi) per step: the lowest and highest EMA-smoothed path."""
    smooth = np.stack([ema(p, ema_alpha) for p in paths])
    return np.nanmin(smooth, axis=0).tolist(), np.nanmax(smooth, axis=0).tolist()


def sim_bands(plant_config: Any, seeds: Sequence[int], corners: Sequence[Knobs], horizon: int,
              ema_alpha: float = 0.6) -> dict[int, tuple[list[float], list[float]]]:
    """The band of every seed on the simulated plant: one batched plant per corner and seed."""
    from envs.plant import SimPlant
    from envs.sim_loop import SimPlants

    n = len(corners)
    plant = SimPlants(SimPlant(plant_config, n * len(seeds), seeds=[s for s in seeds for _ in range(n)]),
                      horizon)
    per_run = np.asarray(run_open_loop(plant, [[c] * horizon for _ in seeds for c in corners], horizon))
    return {s: band_from_paths(per_run[i * n:(i + 1) * n], ema_alpha) for i, s in enumerate(seeds)}
