"""Calibrate the simulated plant to real training runs by replaying their knobs.

    python benchmarks/calibrate_plant.py RUN_DIR [RUN_DIR ...] [--seeds 16] [--top 8] [--out plant.yaml]

Each RUN_DIR holds a ``metrics.jsonl`` (``regulator train`` or ``regulator bench`` runs, open or
closed loop). The plant is driven open loop with each run's logged knobs (``knobs/*`` per step),
``--seeds`` plants per run, and its mean entropy path, relative to its first measurement, is
compared with the run's, relative to its own: H_sim(t) / H_sim(0) against H_real(t) / H_real(0).
Replaying the knobs a controller chose makes closed-loop runs calibration data too: the fit sees
the collapse speed (GRPO runs), the knobs' effects (the runs that moved them) and the noise.

The search is a grid over the plant's regime, learning rate, response length, vocabulary and
prompts per step (``GRID``; the other fields at the plant's defaults). Printed: the best grid points
by mismatch (RMSE of the relative paths over all runs and steps), then, for the best, each run's
RMSE and the step-to-step noise of the real and the simulated relative entropy. ``--out`` writes
the best point as ``plant_params`` for a bench config (``plant: sim``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np
import torch
import yaml

from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from regulator.knobs import KNOB_NAMES

GRID = {
    "regime": ["pretrained", "scratch"],
    "lr": [0.05, 0.1, 0.2, 0.3, 0.5, 1.0],
    "length": [1, 3, 6],
    "vocab": [6, 12, 24],
    "prompts_per_step": [4, 16],  # sets the sampling noise of the measurement
}


def load_run(run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(relative entropy path [T], knobs [T, 4]) of one run; NaN entropies are carried forward."""
    rows = [json.loads(line) for line in open(Path(run_dir) / "metrics.jsonl")]
    h = np.array([math.nan if r.get("entropy/measured") is None else r["entropy/measured"] for r in rows])
    for t in range(1, len(h)):
        if not math.isfinite(h[t]):
            h[t] = h[t - 1]
    knobs = np.array([[r[f"knobs/{k}"] for k in KNOB_NAMES] for r in rows], dtype=np.float32)
    return h / h[0], knobs


def replay(config: PlantConfig, knob_paths: list[np.ndarray], seeds: int
           ) -> tuple[list[np.ndarray], np.ndarray]:
    """Per run, the mean relative entropy path of ``seeds`` plants driven by the run's knobs;
    and every plant's relative path, [steps, runs, seeds]."""
    n = len(knob_paths)
    steps = max(len(k) for k in knob_paths)
    plant = SimPlant(config, n * seeds, seeds=list(range(n * seeds)))
    paths = []
    for t in range(steps):
        h = plant.rollout()["entropy"]
        paths.append(h)
        kt = torch.tensor(np.stack([knob_paths[i][min(t, len(knob_paths[i]) - 1)]
                                    for i in range(n) for _ in range(seeds)]))
        plant.update(kt)
    H = torch.stack(paths).view(steps, n, seeds).numpy()
    rel = H / H[0]
    return [rel[: len(knob_paths[i]), i].mean(-1) for i in range(n)], rel


def plant_config(point: dict) -> PlantConfig:
    """A grid point as a PlantConfig (forks: the regime's default, capped by PlantConfig at the length)."""
    return PlantConfig(**point, dh_stats=False)


def calibrate(real: list[tuple[np.ndarray, np.ndarray]], grid: dict[str, list], seeds: int
              ) -> list[tuple[float, dict]]:
    """Every grid point with its mismatch (RMSE of the relative entropy paths over all runs and
    steps), best first."""
    knob_paths = [k for _, k in real]
    results = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values))
        sims, _ = replay(plant_config(point), knob_paths, seeds)
        err = np.concatenate([s - h for s, (h, _) in zip(sims, real)])
        results.append((float(np.sqrt(np.mean(err**2))), point))
    return sorted(results, key=lambda x: x[0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--seeds", type=int, default=16, help="simulated plants per run")
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--out", help="write the best plant_params here (YAML)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    real = [load_run(r) for r in args.runs]
    knob_paths = [k for _, k in real]
    results = calibrate(real, GRID, args.seeds)
    print(f"{len(real)} runs, {len(results)} plant configurations, {args.seeds} plants per run")
    for rmse, point in results[: args.top]:
        print(f"  RMSE {rmse:.3f} (relative entropy)  {point}")
    best = results[0][1]
    sims, rel = replay(plant_config(best), knob_paths, args.seeds)
    print(f"best {best}: per run (RMSE of the relative path; final 10 % mean real vs sim; "
          "step-to-step noise of the relative path, real vs one simulated plant)")
    for j, (run, s, (h, _)) in enumerate(zip(args.runs, sims, real)):
        tail = max(1, len(h) // 10)
        noise_real = float(np.std(np.diff(h)) / math.sqrt(2))
        noise_sim = float(np.mean(np.std(np.diff(rel[: len(h), j], axis=0), axis=0)) / math.sqrt(2))
        print(f"  {run}: RMSE {np.sqrt(np.mean((s - h) ** 2)):.3f}; final {h[-tail:].mean():.3f} vs "
              f"{s[-tail:].mean():.3f}; noise {noise_real:.3f} vs {noise_sim:.3f}")
    if args.out:
        Path(args.out).write_text(yaml.safe_dump({"regimes": [best["regime"]], "plant_params": {
            k: v for k, v in best.items() if k != "regime"}}, sort_keys=False))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
