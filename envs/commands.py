"""The subcommands ``envs`` publishes to ``regulator``: bench and tune."""

from __future__ import annotations

import argparse

from regulator.cli import Command


def _bench_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("config", help="bench YAML config (e.g. configs/bench/suite_sim.yaml)")
    b.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (repeatable)")
    b.add_argument("--resume", action="store_true", help="plant: trainer: keep the runs already "
                   "finished in out_dir with the same settings, train the rest")
    b.add_argument("--overwrite", action="store_true",
                   help="replace the results of an earlier bench in out_dir")


def _bench(args: argparse.Namespace) -> int:
    from envs.bench import bench_main

    return bench_main(args.config, overrides=args.set, resume=args.resume, overwrite=args.overwrite)


def _tune_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("config", help="tune YAML config (e.g. configs/tune/sim_pretrained.yaml)")
    t.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (repeatable)")


def _tune(args: argparse.Namespace) -> int:
    from envs.tune import tune_main

    return tune_main(args.config, overrides=args.set)


BENCH = Command("rank controllers on a grid of targets and seeds", _bench_arguments, _bench)
TUNE = Command("identify knob directions and gains, recommend a controller", _tune_arguments, _tune)
