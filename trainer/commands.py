"""The subcommands ``trainer`` publishes to ``regulator``: train, plot, controllers, config."""

from __future__ import annotations

import argparse

from regulator.cli import EXIT_OK, Command
from regulator.errors import ConfigError


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a config value (repeatable)")


def control_override(path: str) -> str:
    """``--control FILE`` as the ``--set control=...`` it stands for (FILE's ``control:``
    section, or the whole file when it has none)."""
    import yaml

    from regulator.config import load_yaml

    try:
        data = load_yaml(path)
    except ConfigError as e:  # load_yaml names the file as CONFIG, here it came from --control
        raise e.with_key("--control") from None
    section = data.get("control", data)
    if not isinstance(section, dict):
        raise ConfigError("--control", "a YAML file with a control: mapping", path)
    return "control=" + yaml.safe_dump(section, default_flow_style=True, width=10**6).strip()


def _train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("config", nargs="?", help="YAML config (see configs/default.yaml); optional "
                   "with --resume, which uses the run's own config.yaml")
    _overrides(t)
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    t.add_argument("--control", metavar="FILE", help="replace the config's control: section by "
                   "FILE's (e.g. the control.yaml `regulator tune` writes)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run already in train.out_dir (its metrics and checkpoints)")


def _train(args: argparse.Namespace) -> int:
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


def _plot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="a run directory (with its metrics.jsonl); several are overlaid")
    p.add_argument("-o", "--out", metavar="FILE", help="output file, its format from its suffix "
                   "(.png added when it has none; a directory gets plot.png inside; default "
                   "RUN_DIR/plot.png, or plot.png here for several runs)")


def _plot(args: argparse.Namespace) -> int:
    from trainer.plot import plot_main

    return plot_main(args.run_dirs, args.out)


def _controllers(_args: argparse.Namespace) -> int:
    from regulator.registry import controller_origins

    origins = controller_origins()
    width = max((len(n) for n in origins), default=4)
    for name, origin in origins.items():
        print(f"{name:<{width}}  {origin}")
    return EXIT_OK


def _config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--explain", metavar="KEY", nargs="?", const="",
                   help="document KEY (e.g. optim.lr, control.params.kp for the configured "
                   "controller); with no KEY, every key")
    p.add_argument("config", nargs="?", help="a config to resolve and print with every default")
    _overrides(p)


def _config(args: argparse.Namespace) -> int:
    from trainer.config_docs import config_main

    return config_main(args.config, overrides=args.set, explain=args.explain)


TRAIN = Command("train with a target-entropy config", _train_arguments, _train)
PLOT = Command("plot one or several runs (entropy vs target, knobs, accuracy, clip fractions) "
               "into one PNG", _plot_arguments, _plot)
CONTROLLERS = Command("list every registered controller with its origin", lambda p: None,
                      _controllers)
CONFIG = Command("print a config with every default resolved, or document its keys",
                 _config_arguments, _config)
