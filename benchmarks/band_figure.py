"""A compact tracking figure from a finished ``regulator bench`` run, for the docs.

    python benchmarks/band_figure.py CONFIG PNG [--controllers default grpo ...] [--targets a b ...]

CONFIG is the bench config the run was made with (its ``out_dir`` holds the runs). Mean entropy
over seeds against the target, the reachable band shaded, for the chosen controllers and targets
only (``OUT/tracking.png`` holds every one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from envs.bench_config import parse_bench_config
from envs.bench_report import plot_tracking
from regulator.config import load_yaml
from regulator.errors import ConfigError, unknown_name_error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path, help="the bench config of a finished run")
    ap.add_argument("png", type=Path)
    ap.add_argument("--controllers", nargs="+", help="labels to draw (default: all)")
    ap.add_argument("--targets", nargs="+", help="target names to draw (default: all)")
    args = ap.parse_args()
    try:
        cfg = parse_bench_config(load_yaml(args.config))
        known = {"--controllers": {e.label for e in cfg.controllers},
                 "--targets": {t for r in cfg.regimes for t in cfg.targets_of(r)}}
        for flag, names in (("--controllers", args.controllers), ("--targets", args.targets)):
            for name in names or ():
                if name not in known[flag]:
                    raise unknown_name_error(flag, name, known[flag], "names in the config")
    except ConfigError as e:
        sys.exit(f"band_figure: {e}")
    plot_tracking(cfg, Path(cfg.out_dir), path=args.png, labels=args.controllers, targets=args.targets)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
