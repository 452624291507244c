"""The simulated plant as a ``regulator.plant.Plant``: B simulated learners driven by one loop.

``SimPlants`` turns ``SimPlant``'s batched tensors into one Measurement and one update row per
plant, under the names the trainer uses, so the bench, ``regulator tune`` and the gym env drive
it exactly as they drive the real trainer (``regulator.plant.loop_step``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from envs.plant import SimPlant
from regulator.knobs import Knobs
from regulator.plant import Measurement, run_loop
from regulator.safety import Regulator

#: the measurements handed to the controller (besides entropy and the clip fractions)
_SIGNALS = ("accuracy", "reward_mean", "pos_token_frac", "neg_token_frac", "dh_pos", "dh_neg",
            "mixed_groups")
#: SimPlant.update's names -> the logged names
_UPDATED = {"loss": "loss/policy", "clip_frac_low": "clip/frac_low", "clip_frac_high": "clip/frac_high"}


class SimPlants:
    """The ``num_plants`` plants of a SimPlant as one Plant (``regulator.plant.Plant``), from
    step 0 (wrap a freshly built or reset SimPlant; the clip fractions start at 0)."""

    def __init__(self, plant: SimPlant, total_steps: int) -> None:
        self.plant = plant
        self.num_plants = plant.num_plants
        self.total_steps = int(total_steps)
        self.step = 0
        self.clip = [{"clip_frac_low": 0.0, "clip_frac_high": 0.0} for _ in range(self.num_plants)]

    def measure(self) -> list[Measurement]:
        m = self.plant.rollout()
        values = {k: m[k].tolist() for k in _SIGNALS if k in m}
        entropy = m["entropy"].tolist()
        return [Measurement(entropy[b], {**{k: v[b] for k, v in values.items()}, **self.clip[b]})
                for b in range(self.num_plants)]

    def update(self, knobs: Sequence[Knobs] | Knobs | torch.Tensor) -> list[dict[str, float]]:
        out = self.plant.update(knobs)
        u = {name: out[k].tolist() for k, name in _UPDATED.items()}
        rows = [{name: v[b] for name, v in u.items()} for b in range(self.num_plants)]
        self.clip = [{"clip_frac_low": r["clip/frac_low"], "clip_frac_high": r["clip/frac_high"]}
                     for r in rows]
        self.step += 1
        return rows


def run_regulated(plant: SimPlant, regulators: Sequence[Regulator], steps: int,
                  on_step: Callable[[int], Any] | None = None) -> list[list[dict[str, float]]]:
    """Run ``steps`` training steps of every plant under its Regulator (``run_loop``); rows
    per plant. ``on_step(t)`` is called after step ``t``."""
    plants = SimPlants(plant, steps)
    tick = None if on_step is None else (lambda _rows: on_step(plants.step - 1))
    return run_loop(plants, regulators, steps, on_step=tick)
