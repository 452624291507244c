"""Leaderboard (CSV + Markdown, mean +/- std over seeds) and ``tracking.png`` of a bench."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regulator.metrics_io import read_metrics
from regulator.tracking import project_into_band

#: leaderboard figures, each reported as <name>_mean and <name>_std over seeds
METRICS = ("rmse_feasible_rel", "out_of_reach", "rmse_feasible", "rmse_ema_rel", "rmse", "rmse_ema", "mae",
           "overshoot",
           "settling_step", "knob_tv", "final_accuracy",
           "final_eval_accuracy", "final_entropy")
#: leaderboard.csv columns
COLUMNS = ("regime", "target", "rank", "controller", "seeds", "settled",
           *(f"{m}_{s}" for m in METRICS for s in ("mean", "std")), "faults")
_TITLES = {"rmse_feasible_rel": "feasible RMSE (EMA, rel.)", "out_of_reach": "out of reach",
           "rmse_feasible": "feasible RMSE (EMA)", "rmse_ema_rel": "RMSE (EMA, rel.)", "rmse": "RMSE",
           "rmse_ema": "RMSE (EMA)", "mae": "MAE",
           "overshoot": "overshoot",
           "settling_step": "settling step", "knob_tv": "knob TV", "final_accuracy": "final acc.",
           "final_eval_accuracy": "held-out greedy", "final_entropy": "final H"}


def _stats(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std())


def leaderboard(summaries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (regime, target, controller) and per (regime, controller) over all targets
    (target ``all``: per seed, the mean over targets; then mean +/- std over seeds), ranked by
    the EMA-smoothed RMSE against the target projected into the reachable band, relative to the
    mean projected target (where no band was measured: against the target itself, relative to its mean)."""
    rows: list[dict[str, Any]] = []
    regimes = list(dict.fromkeys(s["regime"] for s in summaries))
    targets = list(dict.fromkeys(s["target"] for s in summaries))
    labels = list(dict.fromkeys(s["controller"] for s in summaries))
    for regime in regimes:
        mine = [t for t in targets if any(s["regime"] == regime and s["target"] == t for s in summaries)]
        for target in [*mine, "all"] if len(mine) > 1 else mine:
            group = []
            for label in labels:
                runs = [s for s in summaries if s["regime"] == regime and s["controller"] == label
                        and (target == "all" or s["target"] == target)]
                if not runs:
                    continue
                seeds = sorted({s["seed"] for s in runs})
                row: dict[str, Any] = {"regime": regime, "target": target, "controller": label,
                                       "seeds": len(seeds)}
                for m in METRICS:
                    per_seed = [float(np.nanmean([s[m] for s in runs if s["seed"] == k]))
                                if any(math.isfinite(s[m]) for s in runs if s["seed"] == k) else math.nan
                                for k in seeds]
                    row[f"{m}_mean"], row[f"{m}_std"] = _stats(per_seed)
                row["settled"] = float(np.mean([math.isfinite(s["settling_step"]) for s in runs]))
                row["faults"] = float(sum(s["faults"] for s in runs))
                group.append(row)
            rank_by = "rmse_feasible_rel_mean" if any(math.isfinite(r["rmse_feasible_rel_mean"])
                                                      for r in group) else "rmse_ema_rel_mean"
            group.sort(key=lambda r: (math.isnan(r[rank_by]), r[rank_by]))
            for k, r in enumerate(group, 1):
                r["rank"] = k
            rows.extend(group)
    return rows


def _fmt(mean: float, std: float, digits: int = 3) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cell(metric: str, row: dict[str, Any]) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if metric in ("rmse_feasible_rel", "rmse_ema_rel", "out_of_reach"):
        return "–" if math.isnan(mean) else f"{mean:.0%} ± {std:.0%}"
    return _fmt(mean, std, 1 if metric == "settling_step" else 3)


def write_csv(rows: Sequence[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in COLUMNS})


def write_markdown(rows: Sequence[dict[str, Any]], path: Path, header: str) -> None:
    lines = ["# Controller leaderboard", "", header, ""]
    keys = list(dict.fromkeys((r["regime"], r["target"]) for r in rows))
    for regime, target in keys:
        lines += [f"## regime `{regime}`, target `{target}`", "",
                  "| rank | controller | " + " | ".join(_TITLES[m] for m in METRICS) + " | settled |",
                  "|---|---|" + "---|" * len(METRICS) + "---|"]
        for r in (r for r in rows if (r["regime"], r["target"]) == (regime, target)):
            cells = [_cell(m, r) for m in METRICS]
            lines.append(f"| {r['rank']} | {r['controller']} | " + " | ".join(cells)
                         + f" | {r['settled']:.0%} |")
        lines.append("")
    path.write_text("\n".join(lines))


def _trajectories(cfg: Any, out: Path) -> dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]]:
    """(regime, target, label) -> (mean entropy over seeds, target) per step."""
    from envs.bench import run_dir

    acc: dict[tuple[str, str, str], list[tuple[list[float], list[float]]]] = {}
    for run in cfg.runs:
        rows = read_metrics(run_dir(out, cfg, run) / "metrics.jsonl")
        h = [r["entropy/measured"] for r in rows]
        t = [r["entropy/target"] for r in rows]
        acc.setdefault((run[0], run[1], cfg.controllers[run[2]].label), []).append((h, t))
    return {k: (np.nanmean([np.asarray(h) for h, _ in v], axis=0), np.asarray(v[0][1]))
            for k, v in acc.items()}


def _seed_bands(out: Path, regime: str, seeds: Sequence[int]) -> list[dict[str, Any]] | None:
    """Every seed's band (``lo``, ``hi``, ``rises``), or None where one is missing."""
    files = [out / "band" / regime / f"seed{s}.json" for s in seeds]
    if not all(f.is_file() for f in files):
        return None
    return [json.loads(f.read_text()) for f in files]


def _mean_reference(bands: Sequence[dict[str, Any]], target: np.ndarray) -> np.ndarray:
    """The feasible reference of ``target``, per seed's band, averaged over the seeds."""
    n = min(len(target), *(len(b["lo"]) for b in bands))
    return np.mean([project_into_band(target[:n], b["lo"][:n], b["hi"][:n], rises=b.get("rises", []))
                    for b in bands], axis=0)


def plot_tracking(cfg: Any, out: Path, path: Path | None = None, labels: Sequence[str] | None = None,
                  targets: Sequence[str] | None = None) -> None:
    """tracking.png: mean entropy over seeds vs the target, one panel per (regime, target), the
    reachable band (mean over seeds) shaded and the feasible reference the score uses drawn
    dotted (``regulator.tracking.project_into_band``, per seed, averaged). ``labels`` /
    ``targets`` keep only those controllers / targets (a figure for the docs); ``path``
    defaults to ``out/tracking.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traj = _trajectories(cfg, out)
    regimes = cfg.regimes
    shown = {r: [t for t in cfg.targets_of(r) if targets is None or t in targets] for r in regimes}
    regimes = [r for r in regimes if shown[r]]
    entries = [(i, e) for i, e in enumerate(cfg.controllers) if labels is None or e.label in labels]
    ncol = max(len(shown[r]) for r in regimes)
    fig, axes = plt.subplots(len(regimes), ncol, figsize=(7.2 * ncol, 3.8 * len(regimes)),
                             squeeze=False, sharex=True)
    styles = ("-", "--", "-.", ":")  # with the colour: curves that coincide stay distinguishable
    cmap = plt.get_cmap("tab10" if len(cfg.controllers) <= 10 else "tab20")
    for a, regime in enumerate(regimes):
        bands = _seed_bands(out, regime, cfg.seeds)
        band = None if bands is None else (np.mean([b["lo"] for b in bands], axis=0),
                                          np.mean([b["hi"] for b in bands], axis=0))
        for ax in axes[a][len(shown[regime]):]:
            ax.axis("off")
        for b, target in enumerate(shown[regime]):
            ax = axes[a][b]
            tgt = None
            if band is not None:
                ax.fill_between(np.arange(len(band[0])), band[0], band[1], color="0.85",
                                label="reachable band", zorder=0)
            for i, e in entries:
                h, tgt = traj[(regime, target, e.label)]
                ax.plot(h, lw=1.3, color=cmap(i % cmap.N), ls=styles[i % len(styles)], label=e.label)
            if tgt is not None:
                ax.plot(tgt, "k--", lw=1.6, label="target")
                if bands is not None:
                    ax.plot(_mean_reference(bands, tgt), "k:", lw=1.4, label="feasible reference")
            ax.set_title(f"{regime} / {target}", fontsize=10)
            ax.set_xlabel("step")
            ax.set_ylabel("entropy (nats)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(f"entropy vs target (mean over {len(cfg.seeds)} seeds)")
    fig.tight_layout()
    fig.savefig(path or out / "tracking.png", dpi=110)
    plt.close(fig)


def write_reports(cfg: Any, summaries: Sequence[dict[str, Any]], out: Path) -> list[dict[str, Any]]:
    rows = leaderboard(summaries)
    write_csv(rows, out / "leaderboard.csv")
    header = (f"Plant `{cfg.plant}`, {cfg.horizon} steps, seeds {cfg.seeds}; RMSE/MAE after a "
              f"burn-in of {cfg.burn_in} steps; EMA weight {cfg.ema_alpha}; mean ± std over seeds. "
              "Ranked by the RMSE of the EMA-smoothed entropy against the target projected into the "
              "reachable band, relative to the mean projected target (against the target itself "
              "where no band was measured). `settled`: share of runs whose smoothed "
              "entropy ends within 10% of the target (settling step averages those).")
    write_markdown(rows, out / "leaderboard.md", header)
    with open(out / "runs.jsonl", "w") as f:
        for s in summaries:
            f.write(json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                                for k, v in s.items()}) + "\n")
    plot_tracking(cfg, out)
    return rows


def top_lines(rows: Sequence[dict[str, Any]], n: int = 5) -> list[str]:
    """The head of the leaderboard over all targets, per regime, for the terminal."""
    lines = []
    for regime in dict.fromkeys(r["regime"] for r in rows):
        mine = [r for r in rows if r["regime"] == regime]
        scope = "all" if any(r["target"] == "all" for r in mine) else mine[0]["target"]
        ranked = sorted((r for r in mine if r["target"] == scope), key=lambda r: r["rank"])
        key = "rmse_feasible_rel" if math.isfinite(ranked[0].get("rmse_feasible_rel_mean", math.nan)) \
            else "rmse_ema_rel"
        lines.append(f"  {regime} ({'all targets' if scope == 'all' else scope}, {_TITLES[key]}):")
        for r in ranked[:n]:
            v, sd = r[f"{key}_mean"], r[f"{key}_std"]
            shown = f"{100 * v:.1f} ± {100 * sd:.1f} %" if key.endswith("_rel") else f"{v:.4f} ± {sd:.4f}"
            lines.append(f"    {r['rank']:>2}. {r['controller']:<20} {shown}")
    return lines
