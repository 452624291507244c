"""Replay a finished training run's readings through its controller, or a changed one.

    python benchmarks/replay_controller.py RUN_DIR [--set control.params.ascent_level=0 ...]

RUN_DIR is a run directory (``regulator train``'s out_dir, or a bench run's
``runs/<regime>/<target>/<label>/seed<k>``): its ``config.yaml`` builds the Regulator and its
``metrics.jsonl`` supplies, step by step, what the trainer handed the controller (the measured
entropy, accuracy, mean reward, token fractions, the previous update's clip fractions, dh and the
mixed-group fraction). Without ``--set`` the replayed knobs equal the logged ones (the check
that the replay is faithful). With it, the script prints where the changed controller would have
acted differently on the same readings. It cannot say how the policy would then have moved: the
readings stay those of the logged run, so it answers "what would this rule have done here",
which costs seconds instead of a real run.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

from regulator.config import apply_overrides, load_yaml
from regulator.errors import ConfigError
from regulator.knobs import KNOB_NAMES, Knobs
from regulator.plant import METRIC_NAMES
from trainer.config import TrainConfig
from trainer.logging import read_metrics


def signals_of(row: dict[str, Any], previous: dict[str, Any] | None) -> dict[str, float]:
    """What the trainer handed the Regulator at ``row``'s step (``previous``: the row before)."""
    out = {name: float(row[k]) for name, k in METRIC_NAMES.items() if row.get(k) is not None}
    if row.get("groups/zero_var_frac") is not None:
        out["mixed_groups"] = 1.0 - float(row["groups/zero_var_frac"])
    for side in ("low", "high"):  # the clip fractions of the update before this step
        v = 0.0 if previous is None else previous.get(f"clip/frac_{side}", 0.0)
        out[f"clip_frac_{side}"] = 0.0 if v is None or not math.isfinite(v) else float(v)
    return out


def same_knobs(a: Knobs, b: Knobs) -> bool:
    """Whether two knob settings agree on every knob (to 1e-9)."""
    return all(math.isclose(getattr(a, k), getattr(b, k), abs_tol=1e-9) for k in KNOB_NAMES)


def replay(run_dir: Path, overrides: list[str] = ()) -> list[tuple[int, Knobs, Knobs]]:
    """(step, logged knobs, replayed knobs) for every logged step of ``run_dir``."""
    cfg = TrainConfig.from_mapping(apply_overrides(load_yaml(run_dir / "config.yaml"), overrides))
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if "entropy/measured" in r]
    regulator = cfg.control.build(cfg.train.steps)
    out, previous = [], None
    for row in rows:
        knobs = regulator.step(int(row["step"]), float(row["entropy/measured"]), **signals_of(row, previous))
        logged = Knobs(**{k: float(row[f"knobs/{k}"]) for k in KNOB_NAMES})
        out.append((int(row["step"]), logged, knobs))
        previous = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override the run's config (e.g. control.params.ascent_level=0)")
    args = ap.parse_args()
    logging.getLogger("regulator").setLevel(logging.ERROR)  # the run's events were logged already
    try:
        steps = replay(args.run_dir, args.overrides)
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"replay_controller: {e}")
    differ = 0
    for step, logged, knobs in steps:
        same = same_knobs(logged, knobs)
        differ += not same
        mark = "" if same else "  <- differs"
        print(f"step {step:4d}  logged w=({logged.w_pos:.2f}, {logged.w_neg:.2f})  "
              f"replayed w=({knobs.w_pos:.2f}, {knobs.w_neg:.2f}){mark}")
    print(f"{len(steps) - differ} of {len(steps)} steps give the logged knobs")


if __name__ == "__main__":
    main()
