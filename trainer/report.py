"""What ``regulator train`` prints when a run ends: its result in a few lines, and what to run next."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _f(v: Any, fmt: str = ".3f") -> str:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return "n/a"
    return format(v, fmt) if math.isfinite(v) else "n/a"


def final_report(summary: Mapping[str, Any], run_dir: Path, *, total_steps: int,
                 extendable: bool = True) -> str:
    """A few lines from ``summary.json``: entropy against the target, tracking RMSE raw and
    smoothed, accuracy, control interventions, wall time, the run directory and next commands
    (``extendable``: the target does not depend on ``train.steps``, so the run can be resumed
    for longer)."""
    tr = summary.get("tracking", {})
    steps, wall = summary.get("steps", 0), summary.get("wall_s", math.nan)
    rel = tr.get("rmse_ema_rel", math.nan)
    lines = [
        f"regulator train: {steps} steps in {_f(wall, '.1f')} s "
        f"({_f(summary.get('mean_step_s'), '.3f')} s/step) -> {run_dir}",
        f"  entropy   final {_f(summary.get('final_entropy'))} nats, target "
        f"{_f(summary.get('final_target'))}; tracking RMSE {_f(tr.get('rmse'))} raw, "
        f"{_f(tr.get('rmse_ema'))} EMA({_f(tr.get('ema_alpha'), 'g')}) after step "
        f"{tr.get('burn_in', 0)} ({_f(100 * float(rel), '.1f')} % of the mean target)",
    ]
    acc = f"  accuracy  batch {_f(summary.get('final_accuracy'), '.2f')}"
    if "final_eval_accuracy" in summary:
        acc += (f"; held-out greedy {_f(summary['final_eval_accuracy'], '.2f')} (from "
                f"{_f(summary.get('initial_eval_accuracy'), '.2f')})")
    lines.append(acc)
    control = (f"  control   {summary.get('controller', '?')} on {', '.join(summary.get('actuate', []))}"
               f": {int(summary.get('control/faults', 0))} faults, "
               f"{int(summary.get('control/clamped', 0))} clamps")
    if summary.get("control/frozen_steps"):
        control += f", every weight at its floor on {int(summary['control/frozen_steps'])} steps"
    if summary.get("skipped_steps"):
        control += f", {summary['skipped_steps']} skipped steps"
    if summary.get("reward/failures"):
        control += f"; {int(summary['reward/failures'])} reward failures"
    lines.append(control)
    nxt = [f"regulator plot {run_dir}", f"tensorboard --logdir {run_dir}/tb"]
    if extendable:
        nxt.append(f"regulator train --resume {run_dir} --set train.steps={2 * total_steps}")
    lines.append("  next      " + "  |  ".join(nxt))
    return "\n".join(lines)
