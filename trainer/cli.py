"""The ``regulator`` command: train, bench, tune, controllers.

Exit codes: 0 success, 2 bad config or arguments (one line naming the key), 1 failure during
a run. Heavy modules are imported only by the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from regulator.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_CONFIG = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own exit code is 2 already; keep it one line
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_CONFIG, f"regulator: error: {message}\n")


def control_override(path: str) -> str:
    """``--control FILE`` as the ``--set control=...`` it stands for (FILE's ``control:``
    section, or the whole file when it has none)."""
    import yaml

    from regulator.config import load_yaml

    data = load_yaml(path)
    section = data.get("control", data)
    if not isinstance(section, dict):
        raise ConfigError("--control", "a YAML file with a control: mapping", path)
    return "control=" + yaml.safe_dump(section, default_flow_style=True, width=10**6).strip()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("entropy-regulator")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="regulator", description="Adaptive entropy regulation for RLVR.")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train with a target-entropy config")
    t.add_argument("config", nargs="?", help="YAML config (see configs/default.yaml); optional "
                   "with --resume, which uses the run's own config.yaml")
    t.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (repeatable)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    t.add_argument("--control", metavar="FILE", help="replace the config's control: section by "
                   "FILE's (e.g. the control.yaml `regulator tune` writes)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run already in train.out_dir (its metrics and checkpoints)")
    b = sub.add_parser("bench", help="rank controllers on a grid of targets and seeds")
    b.add_argument("config")
    b.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    b.add_argument("--resume", action="store_true", help="plant: trainer: keep the runs already "
                   "finished in out_dir with the same settings, train the rest")
    tu = sub.add_parser("tune", help="identify knob directions and gains, recommend a controller")
    tu.add_argument("config")
    tu.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    pl = sub.add_parser("plot", help="plot one or several runs (entropy vs target, knobs, "
                        "accuracy, clip fractions) into one PNG")
    pl.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    pl.add_argument("-o", "--out", metavar="PNG", help="output file (default RUN_DIR/plot.png, "
                    "or plot.png here for several runs)")
    sub.add_parser("controllers", help="list every registered controller with its origin")
    return p


def _controllers() -> int:
    from regulator.registry import controller_origins

    origins = controller_origins()
    width = max((len(n) for n in origins), default=4)
    for name, origin in origins.items():
        print(f"{name:<{width}}  {origin}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "controllers":
            return _controllers()
        if args.command == "plot":
            from trainer.plot import plot_main

            return plot_main(args.run_dirs, args.out)
        if args.command == "train":
            from trainer.run import train_main

            if args.overwrite and args.resume:
                raise ConfigError("--overwrite", "either --resume or --overwrite, not both", True)
            overrides = list(args.set)
            if args.control:
                if args.resume:
                    raise ConfigError("--control", "a new run (a resumed run keeps its controller "
                                      "and its state)", args.control)
                overrides.insert(0, control_override(args.control))
            return train_main(args.config, overrides=overrides, resume=args.resume,
                              overwrite=args.overwrite)
        if args.command == "bench":
            from envs.bench import bench_main

            return bench_main(args.config, overrides=args.set, resume=args.resume)
        if args.command == "tune":
            from envs.tune import tune_main

            return tune_main(args.config, overrides=args.set)
    except ConfigError as e:
        print(f"regulator {args.command}: config error: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except OSError as e:  # the machine, not the config: a full disk, a permission
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"regulator {args.command}: error: {e.strerror or e}{where}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"regulator {args.command}: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
