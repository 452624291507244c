"""Throughput of the simulated plant: plant-steps per second, batched and single.

    OMP_NUM_THREADS=1 python benchmarks/plant_speed.py [--plants 64] [--steps 200]

Prints plant-steps/s for 64 batched plants at 1 and 4 updates per step (with and without the
dh_pos/dh_neg statistics) and the time of one 300-step episode of a single plant. Each figure is
given by wall clock and by this process's CPU time: on a machine shared with other jobs (the load
average is printed) the wall clock also counts time spent waiting for a core.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from regulator.knobs import Knobs


def _timed(plant: SimPlant, steps: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``steps`` plant steps."""
    knobs = Knobs()
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        plant.rollout()
        plant.update(knobs)
    return time.perf_counter() - w0, time.process_time() - c0


def rate(config: PlantConfig, plants: int, steps: int) -> tuple[float, float]:
    """Plant-steps per second (plants x steps / time) by wall clock and by CPU time."""
    plant = SimPlant(config, plants, seeds=0)
    _timed(plant, 5)  # warm-up
    wall, cpu = _timed(plant, steps)
    return plants * steps / wall, plants * steps / cpu


def episode_seconds(config: PlantConfig, steps: int = 300) -> tuple[float, float]:
    """Wall and CPU seconds of one episode of a single plant, including its construction."""
    w0, c0 = time.perf_counter(), time.process_time()
    plant = SimPlant(config, 1, seeds=0)
    wall, cpu = _timed(plant, steps)
    return wall + (time.perf_counter() - w0 - wall), cpu + (time.process_time() - c0 - cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plants", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = PlantConfig()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"plant {base.as_dict()}")
    for dh in (True, False):
        for mb in (1, 4):
            cfg = base.replace(mini_batches=mb, dh_stats=dh)
            wall, cpu = rate(cfg, args.plants, args.steps)
            print(f"{args.plants} plants, {mb} update(s)/step, dh_stats={dh}: "
                  f"{wall:,.0f} plant-steps/s wall, {cpu:,.0f} per CPU-second")
    for mb in (1, 4):
        wall, cpu = episode_seconds(base.replace(mini_batches=mb))
        print(f"1 plant, one 300-step episode, {mb} update(s)/step: {wall:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
