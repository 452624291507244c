"""``regulator plot RUN_DIR [RUN_DIR ...]``: one PNG of one or several runs, overlaid.

Four panels sharing the step axis: entropy (raw, thin; EMA, thick) against the target (dashed),
the knobs, accuracy (batch EMA, held-out greedy as markers), and the clip fractions. One colour
per run; each panel's legend sits outside the axes, right of the curves, so it covers nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regulator.errors import ConfigError
from regulator.metrics_io import read_metrics
from regulator.tracking import ema

PANELS = ("entropy (nats)", "knobs", "accuracy", "clip fraction")
_KNOB_STYLE = {"w_pos": "-", "w_neg": "--", "eps_low": ":", "eps_high": "-."}


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], float(r[key])) for r in rows if key in r]
    pts = [(s, v) for s, v in pts if math.isfinite(v)]
    if not pts:
        return np.zeros(0), np.zeros(0)
    s, v = zip(*pts)
    return np.asarray(s, dtype=float), np.asarray(v, dtype=float)


def _label(run_dir: Path, all_dirs: Sequence[Path]) -> str:
    names = [p.name for p in all_dirs]
    return run_dir.name if names.count(run_dir.name) == 1 else str(run_dir)


def load_run(run_dir: str | Path) -> list[dict[str, Any]]:
    """The metrics rows of a run directory (ConfigError naming it when there are none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise ConfigError("RUN_DIR", "a run directory with metrics.jsonl", str(run_dir))
    rows = read_metrics(path)
    if not rows:
        raise ConfigError("RUN_DIR", "a run with at least one logged step", str(run_dir))
    return rows


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, *, ema_alpha: float = 0.6
              ) -> dict[str, list[str]]:
    """Write the PNG of ``run_dirs`` to ``out``; return each panel's legend entries."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dirs = [Path(d) for d in run_dirs]
    runs = [(d, load_run(d)) for d in dirs]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(11, 11), sharex=True)
    for i, (d, rows) in enumerate(runs):
        c, name = colours[i % len(colours)], _label(d, dirs)
        prefix = f"{name}: " if len(runs) > 1 else ""

        def tag(series: str, prefix: str = prefix) -> str:
            return prefix + series

        s, h = _series(rows, "entropy/measured")
        ax = axes[0]
        ax.plot(s, h, color=c, lw=0.6, alpha=0.35, label=tag("entropy"))
        ax.plot(s, ema(h, ema_alpha), color=c, lw=2.0, label=tag(f"entropy EMA({ema_alpha:g})"))
        ts, t = _series(rows, "entropy/target")
        ax.plot(ts, t, color=c, lw=1.2, ls="--", label=tag("target"))
        for knob, style in _KNOB_STYLE.items():
            ks, kv = _series(rows, f"knobs/{knob}")
            if kv.size and (np.ptp(kv) > 0 or knob.startswith("w_")):  # constant clips: noise
                axes[1].plot(ks, kv, color=c, ls=style, lw=1.3, label=tag(knob))
        a_s, a = _series(rows, "reward/accuracy")
        axes[2].plot(a_s, ema(a, ema_alpha), color=c, lw=1.3, label=tag("batch accuracy (EMA)"))
        es, e = _series(rows, "eval/accuracy")
        if e.size:
            axes[2].plot(es, e, color=c, ls="none", marker="o", ms=4, label=tag("held-out greedy"))
        for key, style in (("clip/frac_low", "-"), ("clip/frac_high", "--")):
            cs, cv = _series(rows, key)
            if cv.size:
                axes[3].plot(cs, cv, color=c, ls=style, lw=1.0, label=tag(key.split("/")[1]))
    legends: dict[str, list[str]] = {}
    for ax, title in zip(axes, PANELS):
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                      frameon=False)
        legends[title] = labels
    axes[-1].set_xlabel("step")
    fig.suptitle(", ".join(_label(d, dirs) for d in dirs), fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return legends


def output_path(run_dirs: Sequence[str], out: str | None = None) -> Path:
    """Where ``regulator plot`` writes: OUT (``.png`` added when it has no suffix; an existing
    directory gets ``plot.png`` inside), else RUN_DIR/plot.png for one run, plot.png here for
    several. A suffix matplotlib cannot write is a ConfigError naming ``--out``."""
    if not out:
        return Path(run_dirs[0]) / "plot.png" if len(run_dirs) == 1 else Path("plot.png")
    target = Path(out)
    if target.is_dir():
        return target / "plot.png"
    if not target.suffix:
        return target.with_suffix(".png")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = sorted(FigureCanvasAgg.get_supported_filetypes())
    if target.suffix[1:].lower() not in formats:
        raise ConfigError("--out", f"a file ending in one of .{', .'.join(formats)} (or no suffix "
                          "for .png)", out)
    return target


def plot_main(run_dirs: Sequence[str], out: str | None = None) -> int:
    """``regulator plot``: writes the plot where ``output_path`` says and prints that path."""
    target = output_path(run_dirs, out)
    plot_runs(run_dirs, target)
    print(f"regulator plot: {len(run_dirs)} run(s) -> {target}")
    return 0
