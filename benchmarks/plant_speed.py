"""Throughput of the simulated plant: plant-steps per second, batched and single.

    python benchmarks/plant_speed.py [--plants 64] [--steps 200] [--threads 0] [--busy 3]

Prints plant-steps/s for 64 batched plants at 1 and 4 updates per step (with and without the
dh_pos/dh_neg statistics) and the time of one 300-step episode of a single plant. Each figure is
given by wall clock and by this process's CPU time: on a machine shared with other jobs (the load
average is printed) the wall clock also counts time spent waiting for a core.

``--busy N`` starts N busy processes (pure-Python loops) for the measurement, as parallel envs or
bench workers would be; ``--threads 0`` leaves torch's default thread count (the plant runs on
one intra-op thread whatever the setting, ``envs.plant.single_threaded``).
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
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--busy", type=int, default=0, help="busy processes running meanwhile")
    ap.add_argument("--quick", action="store_true", help="only the 64-plant, 1-update figure")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import multiprocessing as mp

    busy = [mp.get_context("spawn").Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for p in busy:
        p.start()
    try:
        _report(args)
    finally:
        for p in busy:
            p.terminate()


def _spin() -> None:  # pragma: no cover - a busy neighbour
    while True:
        pass


def _report(args: argparse.Namespace) -> None:
    base = PlantConfig()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.busy} busy "
          f"processes, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.quick:
        wall, cpu = rate(base, args.plants, args.steps)
        print(f"{args.plants} plants, 1 update/step: {wall:,.0f} plant-steps/s wall, "
              f"{cpu:,.0f} per CPU-second")
        return
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
