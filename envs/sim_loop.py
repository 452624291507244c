"""The closed loop on the simulated plant, as the trainer runs it: measure, regulate, update.

``run_regulated`` drives B plants with B Regulators (one controller each) and returns the per-step
metric rows under the trainer's metric names. The bench uses it; the env adapters are tested against it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from envs.plant import SimPlant
from regulator.knobs import KNOB_NAMES, Knobs
from regulator.safety import Regulator

_MEASURED = ("accuracy", "reward_mean", "pos_token_frac", "neg_token_frac", "dh_pos", "dh_neg",
             "mixed_groups")


def controller_metrics(measure: Mapping[str, torch.Tensor], last_update: Mapping[str, torch.Tensor] | None,
                       b: int) -> dict[str, float]:
    """What plant ``b`` hands the controller besides entropy (Observation field names; the rest
    go to ``extras``): this batch's measurements and the previous update's clip fractions
    (0 before the first update)."""
    out = {k: float(measure[k][b]) for k in _MEASURED if k in measure}
    for k in ("clip_frac_low", "clip_frac_high"):
        out[k] = float(last_update[k][b]) if last_update is not None else 0.0
    return out


def metrics_row(step: int, entropy: float, target: float, knobs: Knobs, measure: Mapping[str, torch.Tensor],
                update: Mapping[str, torch.Tensor], b: int, step_s: float = math.nan) -> dict[str, float]:
    """One metrics.jsonl row (the trainer's metric names) for plant ``b`` at ``step``."""
    row: dict[str, float] = {"step": step, "entropy/measured": entropy, "entropy/target": target}
    row.update({f"knobs/{k}": getattr(knobs, k) for k in KNOB_NAMES})
    row.update({
        "reward/mean": float(measure["reward_mean"][b]),
        "reward/accuracy": float(measure["accuracy"][b]),
        "loss/policy": float(update["loss"][b]),
        "clip/frac_low": float(update["clip_frac_low"][b]),
        "clip/frac_high": float(update["clip_frac_high"][b]),
        "tokens/pos_frac": float(measure["pos_token_frac"][b]),
        "tokens/neg_frac": float(measure["neg_token_frac"][b]),
    })
    if not math.isnan(step_s):
        row["time/step_s"] = step_s
    for k in ("dh_pos", "dh_neg"):
        if k in measure:
            row[f"control/{k}"] = float(measure[k][b])
    return row


def run_regulated(plant: SimPlant, regulators: Sequence[Regulator], steps: int,
                  on_step: Callable[[int], Any] | None = None) -> list[list[dict[str, float]]]:
    """Run ``steps`` training steps of every plant under its Regulator; rows per plant."""
    if len(regulators) != plant.num_plants:
        raise ValueError(f"need one Regulator per plant ({plant.num_plants}), got {len(regulators)}")
    rows: list[list[dict[str, float]]] = [[] for _ in regulators]
    last_update = None
    for t in range(steps):
        t0 = time.perf_counter()
        measure = plant.rollout()
        entropy = measure["entropy"].tolist()
        knobs = [reg.step(t, entropy[b], **controller_metrics(measure, last_update, b))
                 for b, reg in enumerate(regulators)]
        update = plant.update(knobs)
        dt = (time.perf_counter() - t0) / plant.num_plants
        for b, reg in enumerate(regulators):
            row = metrics_row(t, entropy[b], reg.target_at(t), knobs[b], measure, update, b, dt)
            row.update(reg.metrics())
            rows[b].append(row)
        last_update = update
        if on_step is not None:
            on_step(t)
    return rows
