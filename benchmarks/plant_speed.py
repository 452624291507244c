"""Throughput of the simulated plant: plant-steps per second, batched and single.

    OMP_NUM_THREADS=1 python benchmarks/plant_speed.py [--plants 64] [--steps 200]

Prints plant-steps/s for 64 batched plants at 1 and 4 updates per step (with and without the
dh_pos/dh_neg statistics) and the wall time of one 300-step episode of a single plant.
"""

from __future__ import annotations

import argparse
import time

import torch

from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from regulator.knobs import Knobs


def rate(config: PlantConfig, plants: int, steps: int) -> float:
    """Plant-steps per second (plants x steps / wall time), after a short warm-up."""
    plant = SimPlant(config, plants, seeds=0)
    knobs = Knobs()
    for _ in range(5):
        plant.rollout()
        plant.update(knobs)
    t0 = time.perf_counter()
    for _ in range(steps):
        plant.rollout()
        plant.update(knobs)
    return plants * steps / (time.perf_counter() - t0)


def episode_seconds(config: PlantConfig, steps: int = 300) -> float:
    plant = SimPlant(config, 1, seeds=0)
    t0 = time.perf_counter()
    for _ in range(steps):
        plant.rollout()
        plant.update(Knobs())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plants", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = PlantConfig()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, plant {base.as_dict()}")
    for dh in (False, True):
        for mb in (1, 4):
            cfg = base.replace(mini_batches=mb, dh_stats=dh)
            r = rate(cfg, args.plants, args.steps)
            print(f"{args.plants} plants, {mb} update(s)/step, dh_stats={dh}: {r:,.0f} plant-steps/s")
    for mb in (1, 4):
        s = episode_seconds(base.replace(mini_batches=mb))
        print(f"1 plant, 300-step episode, {mb} update(s)/step: {s:.2f} s")


if __name__ == "__main__":
    main()
