"""The plant protocol: what a closed loop drives, and the loop itself.

A plant is anything that learns one training step at a time: the real DeepSpeed trainer
(``trainer.plant.TrainerPlant``) or a batch of simulated GRPO learners
(``envs.sim_loop.SimPlants``). One training step is::

    measurements = plant.measure()          # sample the rollout batch, measure it before any update
    knobs = [reg.step(...) for each plant]  # the controller's knobs (through the Regulator)
    updates = plant.update(knobs)           # the regulated update of that batch
    rows = [metrics_row(...)]               # one metrics.jsonl row per plant

``loop_step`` is that step and ``run_loop`` repeats it; ``regulator train``, the bench, ``regulator
tune`` and the gym environments all drive their plants through these two methods, so a controller
sees the same numbers under the same names everywhere.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from regulator.knobs import KNOB_NAMES, Knobs
from regulator.safety import Regulator

#: the logged name of each measured signal (the rest of a row's names come from the plant's
#: ``update`` and ``Measurement.metrics``, the Regulator and the loop)
METRIC_NAMES = {
    "accuracy": "reward/accuracy",
    "reward_mean": "reward/mean",
    "pos_token_frac": "tokens/pos_frac",
    "neg_token_frac": "tokens/neg_frac",
    "dh_pos": "entropy/dh_pos",
    "dh_neg": "entropy/dh_neg",
}


@dataclass
class Measurement:
    """One plant's measurement of this step's rollout batch, under the policy before the update."""

    entropy: float
    """Token-mean entropy of the batch's responses, in nats; NaN when nothing could be measured
    (the loop then skips the controller and the update holds the weights)."""
    signals: dict[str, float] = field(default_factory=dict)
    """What the controller sees besides the entropy: Observation field names (``accuracy``,
    ``reward_mean``, ``pos_token_frac``, ``neg_token_frac``, the previous update's
    ``clip_frac_low``/``clip_frac_high``, 0 before the first), the rest going to
    ``Observation.extras`` (``dh_pos``, ``dh_neg``, ``mixed_groups``)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Extra row entries under their logged names (e.g. ``reward/failures``, ``time/generate_s``).
    ``time/control_s`` here is the plant's share of the control time; the loop adds the
    Regulator's."""
    note: str = ""
    """Why the entropy is NaN, for the skip event (e.g. ``over 0 response tokens``)."""


@runtime_checkable
class Plant(Protocol):
    """``num_plants`` learners driven together, one training step per ``measure`` + ``update``.

    ``measure()`` samples this step's rollout batch and returns one Measurement per plant;
    ``update(knobs)`` (one Knobs per plant) applies the regulated update to that batch, advances
    ``step`` and returns per plant the update's row entries under their logged names
    (``loss/policy``, ``clip/frac_low``, ``clip/frac_high`` ...). A plant whose measurement was
    NaN is not updated (its row entries are NaN).
    """

    num_plants: int
    """Learners driven together (the real trainer: 1)."""
    step: int
    """Training steps done: the step the next ``measure()`` belongs to."""
    total_steps: int
    """The run's length (target curves and schedules are laid out over it)."""

    def measure(self) -> Sequence[Measurement]: ...

    def update(self, knobs: Sequence[Knobs]) -> Sequence[Mapping[str, float]]: ...


def metrics_row(step: int, measured: Measurement, target: float, knobs: Knobs,
                updated: Mapping[str, float]) -> dict[str, float]:
    """One metrics.jsonl row of one plant (without the Regulator's ``control/*`` entries)."""
    row: dict[str, float] = {"step": step, "entropy/measured": measured.entropy, "entropy/target": target}
    row.update({f"knobs/{k}": getattr(knobs, k) for k in KNOB_NAMES})
    row.update({name: measured.signals[k] for k, name in METRIC_NAMES.items() if k in measured.signals})
    row.update(updated)
    row.update(measured.metrics)
    row["train/skipped"] = float(not math.isfinite(measured.entropy))
    return row


def loop_step(plant: Plant, regulators: Sequence[Regulator]) -> list[dict[str, float]]:
    """One training step of every plant under its Regulator; one metrics row per plant.

    A plant with a NaN entropy measured nothing: its controller is not asked, its knobs are
    held and the Regulator's ``last_event`` says why.
    """
    if len(regulators) != plant.num_plants:
        raise ValueError(f"need one Regulator per plant ({plant.num_plants}), got {len(regulators)}")
    step = plant.step
    t0 = time.perf_counter()
    measured = plant.measure()
    knobs, control_s = [], []
    for reg, m in zip(regulators, measured):
        t = time.perf_counter()
        if math.isfinite(m.entropy):
            knobs.append(reg.step(step, m.entropy, **m.signals))
        else:
            knobs.append(reg.knobs)
            why = f" {m.note}" if m.note else ""
            reg.last_event = (f"step {step} skipped: entropy {m.entropy}{why} (no controller call, "
                              "no update, knobs held)")
        control_s.append(time.perf_counter() - t)
    updated = plant.update(knobs)
    step_s = (time.perf_counter() - t0) / plant.num_plants
    rows = []
    for reg, m, k, u, c in zip(regulators, measured, knobs, updated, control_s):
        row = metrics_row(step, m, reg.target_at(step), k, u)
        row["time/step_s"] = step_s
        row["time/control_s"] = c + m.metrics.get("time/control_s", 0.0)
        row.update(reg.metrics())
        rows.append(row)
    return rows


def run_loop(plant: Plant, regulators: Sequence[Regulator], steps: int | None = None,
             on_step: Callable[[list[dict[str, float]]], Any] | None = None) -> list[list[dict[str, float]]]:
    """``steps`` training steps (default: up to ``plant.total_steps``); the rows of each plant.
    ``on_step(rows)`` gets every step's rows as they come."""
    n = plant.total_steps - plant.step if steps is None else steps
    out: list[list[dict[str, float]]] = [[] for _ in regulators]
    for _ in range(n):
        rows = loop_step(plant, regulators)
        for b, row in enumerate(rows):
            out[b].append(row)
        if on_step is not None:
            on_step(rows)
    return out


def run_open_loop(plant: Plant, schedules: Sequence[Sequence[Knobs]], steps: int,
                  on_step: Callable[[int], Any] | None = None) -> list[list[float]]:
    """``steps`` measurements of every plant with no controller: plant b's update at step t
    uses ``schedules[b][t]`` (no update after the last measurement). Entropy per plant and step."""
    if len(schedules) != plant.num_plants:
        raise ValueError(f"need one schedule per plant ({plant.num_plants}), got {len(schedules)}")
    out: list[list[float]] = [[] for _ in schedules]
    for t in range(steps):
        for b, m in enumerate(plant.measure()):
            out[b].append(m.entropy)
        if t < steps - 1:
            plant.update([sch[t] for sch in schedules])
        if on_step is not None:
            on_step(t)
    return out
