"""Soak: every built-in controller runs 100,000 Regulator steps against the simulated plant.

1,000 plants x 100 steps, one Regulator (and controller) per plant, the closed loop of
``envs.sim_loop.run_regulated`` (measure -> Regulator.step -> update) with sensor glitches mixed
in: about 1% of readings are NaN, 1% are +inf and 1% are a wild 50 nats. After every step all
1,000 knob vectors are checked: finite, inside the bounds, non-actuated knobs at their initial
values, no move larger than the rate limit. Memory: Python allocations (tracemalloc) must not grow
between step 20 and the end; an unbounded per-step history would add >= 2 MB over those 80,000
controller steps.
"""

from __future__ import annotations

import gc
import logging
import math
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from regulator import Controller, KnobBounds, Knobs, Regulator, make_controller
from regulator.knobs import KNOB_NAMES
from regulator.registry import controller_origins

PLANTS, STEPS = 1_000, 100            # 100,000 controller steps per controller
WARMUP = 20                           # memory is compared from here to the end
MAX_BLOCKS_PER_STEP = 0.1             # a per-step history adds >= 1 block (a float) per step
MAX_RSS_PER_STEP = 64.0               # bytes (5 MB over the 80,000 steps after the warm-up)
PLANT = {"prompts": 4, "prompts_per_step": 2, "group_size": 4, "length": 3, "vocab": 4}
BOUNDS = KnobBounds(w_pos=(0.0, 1.0), w_neg=(0.0, 2.0), eps_low=(0.1, 0.3), eps_high=(0.2, 0.4),
                    max_delta=0.2)
INITIAL = Knobs(w_pos=1.0, w_neg=1.0, eps_low=0.2, eps_high=0.28)
TARGET = {"kind": "piecewise", "points": [[0, 0.5], [49, 0.5], [50, 0.3]]}
_MEASURED = ("accuracy", "reward_mean", "pos_token_frac", "neg_token_frac", "dh_pos", "dh_neg",
             "mixed_groups")


def _wild_policy(obs: np.ndarray) -> np.ndarray:
    """A policy for the ``policy`` adapter whose actions leave [-1, 1] and are sometimes NaN."""
    x = float(obs.sum())
    return np.array([math.nan if int(abs(x) * 1e3) % 50 == 0 else 3.0 * math.sin(x)])


# name -> (params, actuate); every built-in controller must appear (checked below).
SOAKED = {  # the slowest first, so two workers finish together
    "auto": ({}, ("w_pos", "w_neg", "eps_high")),
    "predictive": ({}, ("w_pos", "w_neg")),
    "policy": ({"policy": _wild_policy}, ("w_pos",)),
    "bang_bang": ({"direction": "auto"}, ("w_pos",)),
    "bandit": ({"arms": {"w_pos": [0.0, 0.5, 1.0], "eps_high": [0.2, 0.3]}, "hold": 3},
               ("w_pos", "eps_high")),
    "pid": ({"kp": 2.0, "ki": 0.2, "kd": 0.5}, ("w_pos", "w_neg")),
    "schedule": ({"knobs": {"w_pos": {"kind": "stage"}}}, ("w_pos",)),
    "static": ({"knobs": {"w_pos": 0.5}}, ("w_pos",)),
}


def test_every_builtin_controller_is_soaked():
    own = {n for n, origin in controller_origins().items()
           if origin.startswith(("controllers.", "envs."))}
    assert own == set(SOAKED)


def _glitch(entropy: list[float], t: int) -> list[float]:
    """Sensor glitches: NaN, +inf and a wild 50 nats on ~1% of the readings each."""
    out = list(entropy)
    for b in range(len(out)):
        h = (b * 7919 + t * 104729) % 100
        out[b] = math.nan if h == 0 else math.inf if h == 1 else 50.0 if h == 2 else out[b]
    return out


def _rss() -> int:
    """Resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _check(knobs: list[Knobs], previous: list[Knobs], actuate: tuple[str, ...]) -> None:
    k = np.array([[getattr(x, n) for n in KNOB_NAMES] for x in knobs])
    p = np.array([[getattr(x, n) for n in KNOB_NAMES] for x in previous])
    assert np.isfinite(k).all()
    for j, name in enumerate(KNOB_NAMES):
        if name in actuate:
            lo, hi = BOUNDS.range(name)
            assert (k[:, j] >= lo).all() and (k[:, j] <= hi).all(), name
            assert (np.abs(k[:, j] - p[:, j]) <= BOUNDS.rate(name) + 1e-9).all(), name
        else:
            assert (k[:, j] == getattr(INITIAL, name)).all(), name


@dataclass
class Soak:
    calls: int                # Regulator.step calls
    faults: int               # summed over the Regulators
    blocks_per_step: float    # growth of live Python objects (pymalloc blocks) per controller step
    rss_per_step: float       # growth of the resident set per controller step, bytes
    distinct_knobs: int       # distinct final knob vectors over the plants


def _soak(make: Callable[[], Controller], actuate: tuple[str, ...], plants: int = PLANTS,
          steps: int = STEPS) -> Soak:
    """The closed loop of ``envs.sim_loop.run_regulated`` with glitches and per-step checks."""
    torch.set_num_threads(1)
    plant = SimPlant(PlantConfig.from_mapping(PLANT), plants, seeds=list(range(plants)))
    regs = [Regulator(make(), TARGET, initial=INITIAL, bounds=BOUNDS, actuate=actuate,
                      total_steps=steps) for _ in range(plants)]
    previous = [r.knobs for r in regs]
    calls, last, base = 0, None, (0, 0)
    for t in range(steps):
        if t == WARMUP:
            gc.collect()
            base = (sys.getallocatedblocks(), _rss())
        m = plant.rollout()
        cols = {k: m[k].tolist() for k in _MEASURED if k in m}
        for k in ("clip_frac_low", "clip_frac_high"):
            cols[k] = last[k].tolist() if last is not None else [0.0] * plants
        entropy = _glitch(m["entropy"].tolist(), t)
        knobs = [reg.step(t, entropy[b], **{k: v[b] for k, v in cols.items()})
                 for b, reg in enumerate(regs)]
        calls += len(regs)
        _check(knobs, previous, actuate)
        previous = knobs
        last = plant.update(knobs)
        del m, cols, entropy, knobs
    gc.collect()
    after = plants * (steps - WARMUP)
    return Soak(calls, sum(r.faults for r in regs), (sys.getallocatedblocks() - base[0]) / after,
                (_rss() - base[1]) / after, len({r.knobs for r in regs}))


def _soak_named(name: str) -> Soak:
    """One built-in controller's soak (runs in a worker process)."""
    logging.getLogger("regulator.safety").setLevel(logging.ERROR)  # 2,000 expected glitch warnings
    params, actuate = SOAKED[name]
    return _soak(lambda: make_controller(name, **params), actuate)


@pytest.fixture(scope="module")
def soaks() -> dict[str, Soak]:
    """Every soak, two worker processes at a time (CI machines have 2 cores)."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds threads
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1), mp_context=ctx) as pool:
        return dict(zip(SOAKED, pool.map(_soak_named, SOAKED)))


@pytest.mark.parametrize("name", list(SOAKED))
def test_soak(name, soaks):
    res = soaks[name]
    assert res.calls == 100_000
    # every NaN / inf reading is a fault (knobs held); a controller adds faults only when broken
    glitches = sum(1 for t in range(STEPS) for h in _glitch([0.0] * PLANTS, t) if not math.isfinite(h))
    if name == "policy":  # the wild policy's NaN actions are faults too
        assert res.faults > glitches
    else:
        assert res.faults == glitches
    assert res.blocks_per_step < MAX_BLOCKS_PER_STEP, res
    assert res.rss_per_step < MAX_RSS_PER_STEP, res
    assert res.distinct_knobs > 1 or name == "static", res  # the knobs moved


class _Leaky(Controller):
    """Test-only: keeps every observation (an unbounded history)."""

    def __init__(self) -> None:
        self.history: list = []

    def act(self, obs):
        self.history.append(obs)
        return self.initial


def test_the_memory_check_catches_an_unbounded_history(caplog):
    caplog.set_level(logging.ERROR, logger="regulator.safety")
    res = _soak(_Leaky, ("w_pos",), plants=100, steps=WARMUP + 20)
    assert res.blocks_per_step > 10 * MAX_BLOCKS_PER_STEP, res  # caught with a wide margin
