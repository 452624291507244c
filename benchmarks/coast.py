"""How far entropy keeps moving after the weights brake: the plant's coast.

    python benchmarks/coast.py [--seeds 16] [--trainer-seeds 2] [--no-trainer]

Open loop: train at (w_pos, w_neg) = (2, 0) or (1, 1) until step T0, then brake: either both
weights to 0 (the full brake) or both to a tenth of their value (a partial brake). A full brake
leaves no gradient, and both plants then step the optimiser at zero learning rate (its
momentum decays, the weights stay), so the policy stops at once.
A partial brake still steps a momentum optimiser: Adam's first moment decays by beta1 per step,
so the updates after the brake keep about 1 / (1 - beta1) = 10 of the last one's size before
they shrink. The script prints, per plant, switch step and brake, the rate of change before
the brake (nats per step over the last 5 steps), the further fall after it (the mean over steps
T0+20..T0+40 against the level at T0) and their ratio, the *coast* in steps. A controller that
eases off only on arrival lands that many steps' worth of motion below its target; ``auto``'s
derivative looks ``coast`` steps ahead for that reason.

Plants: the simulated plant in both regimes (``--seeds`` seeds each) and the tiny trainer
(``configs/default.yaml``, max5, and ``configs/paper/base_parity.yaml``, ``--trainer-seeds``
seeds each: 32 short trainings at the default 2 seeds).
"""

from __future__ import annotations

import argparse

import numpy as np

from envs.tune import Runner, sim_runner, trainer_runner
from regulator.config import load_yaml
from regulator.knobs import Knobs

BEFORE = {"tilted (2,0)": (2.0, 0.0), "plain (1,1)": (1.0, 1.0)}
BRAKES = {"full": 0.0, "a tenth": 0.1}  # the weights after T0, as a share of those before
LABELS = [f"{b} {k} brake" for b in BEFORE for k in BRAKES]


def schedules(t0: int, steps: int) -> list[list[Knobs]]:
    """One schedule per (BEFORE, BRAKES) pair: its weights until t0, then the brake."""
    base = Knobs()
    return [[base.replace(w_pos=a, w_neg=b)] * t0 + [base.replace(w_pos=a * f, w_neg=b * f)] * (steps - t0)
            for a, b in BEFORE.values() for f in BRAKES.values()]


def coast(path: np.ndarray, t0: int) -> tuple[float, float, float]:
    """(rate before the brake, fall after it, fall / -rate in steps) of a mean entropy path."""
    rate = (path[t0] - path[t0 - 5]) / 5.0
    fall = path[t0] - path[t0 + 20:t0 + 40].mean()
    return rate, fall, fall / -rate if rate < 0 else float("nan")


def report(name: str, t0: int, paths: np.ndarray) -> None:
    """paths: (schedules, seeds, steps)."""
    for label, mean in zip(LABELS, paths.mean(axis=1)):
        rate, fall, steps = coast(mean, t0)
        print(f"{name:18s} T0={t0:3d} {label:27s} H={mean[t0]:.3f}  rate={rate:+.4f}/step  "
              f"fall after={fall:+.3f}  coast={steps:5.1f} steps")


def measure(runner: Runner, t0: int, seeds: int) -> np.ndarray:
    """(schedules, seeds, steps) entropy paths of ``schedules(t0, t0 + 40)`` on ``runner``."""
    return runner(schedules(t0, t0 + 40), list(range(seeds)), t0 + 40)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=16, help="seeds per simulated plant")
    ap.add_argument("--trainer-seeds", type=int, default=2, help="seeds per tiny-trainer task")
    ap.add_argument("--no-trainer", action="store_true", help="the simulated plant only")
    a = ap.parse_args()
    for regime, t0s in (("scratch", (40, 80)), ("pretrained", (30, 60))):
        for t0 in t0s:
            report(f"sim {regime}", t0, measure(sim_runner({"regime": regime}, progress=False), t0, a.seeds))
    if a.no_trainer:
        return
    for task, config in (("max5", "configs/default.yaml"), ("parity", "configs/paper/base_parity.yaml")):
        for t0 in (40, 80):
            report(f"trainer {task}", t0, measure(trainer_runner(load_yaml(config), progress=False), t0,
                                                  a.trainer_seeds))


if __name__ == "__main__":
    main()
