"""The paper-reproduction study on the CPU trainer (issue 6): one command per study directory.

    python benchmarks/paper_study.py                    # every task x variant x seed, then the report
    python benchmarks/paper_study.py --report-only      # rebuild the table and plot from OUT
    python benchmarks/paper_study.py --tasks max5 --variants grpo pos_only --seeds 0
    python benchmarks/paper_study.py --config-dir configs/paper/smollm2   # SmolLM2-135M, ~1 h
                                                    # (OUT defaults to runs/paper_smollm2)

Runs every ``CONFIG_DIR/base_<task>.yaml`` (or ``--tasks``) with each variant of
``CONFIG_DIR/variants.yaml`` (its ``set`` entries become ``--set section.key=value``
overrides) through ``trainer.run.train_main``, in ``--workers`` processes of one thread each,
with a progress bar.
Resumable: a run whose ``summary.json`` exists is skipped. Writes ``OUT/paper_table.md``,
``OUT/paper_table.csv`` (mean +/- std over seeds of the final entropy, greedy accuracy, avg@n,
pass@1, pass@n, distinct-1 and ECE at the last evaluation) and ``OUT/entropy_curves.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regulator.config import load_yaml  # noqa: E402

#: (column header, metrics key at the last evaluation or summary key) of the table
COLUMNS = (("final H", "final_entropy"), ("greedy acc", "eval/accuracy"), ("avg@{n}", "eval/avg@{n}"),
           ("pass@1", "eval/pass@1"), ("pass@{n}", "eval/pass@{n}"), ("distinct-1", "eval/distinct_1"),
           ("ECE", "eval/ece"))


def load_variants(config_dir: Path) -> list[dict[str, Any]]:
    """The variant table: label, paper (what it stands for), set (overrides)."""
    variants = load_yaml(config_dir / "variants.yaml")["variants"]
    labels = [v["label"] for v in variants]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate variant labels in {config_dir / 'variants.yaml'}")
    return variants


def study_tasks(config_dir: Path) -> list[str]:
    """The tasks of a study directory: every ``base_<task>.yaml``, sorted."""
    return sorted(p.stem[len("base_"):] for p in config_dir.glob("base_*.yaml"))


def study_seeds(config_dir: Path) -> list[int]:
    """The study's default seeds: ``seeds`` in variants.yaml, else 0, 1, 2."""
    return [int(s) for s in load_yaml(config_dir / "variants.yaml").get("seeds", [0, 1, 2])]


def overrides_for(variant: dict[str, Any], seed: int, out_dir: Path, steps: int | None) -> list[str]:
    """``--set`` strings: the variant's keys (whole values replaced), seed, out_dir, steps."""
    dump = lambda v: yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    out = [f"{k}={dump(v)}" for k, v in (variant.get("set") or {}).items()]
    out += [f"train.seed={seed}", f"train.out_dir={out_dir}"]
    if steps is not None:
        out.append(f"train.steps={steps}")
    return out


def _clean_env() -> None:
    """Worker start: drop a distributed setup inherited from the parent, so the worker's first
    run makes its own one-process group on a fresh port (later runs reuse it)."""
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(var, None)


def _run_one(base: str, overrides: list[str]) -> int:
    """One training run in a worker process (one thread, quiet)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(1)
    from trainer.run import train_main

    return train_main(base, overrides=overrides, overwrite=True)  # a grid point re-run replaces itself


def run_grid(config_dir: Path, out: Path, tasks: list[str], variants: list[dict[str, Any]],
             seeds: list[int], workers: int, steps: int | None) -> list[str]:
    """Run every unfinished (task, variant, seed); returns the failed run directories."""
    todo = []
    for seed in seeds:  # seed-major: a stopped study has whole seeds of every variant
        for task in tasks:
            for v in variants:
                rd = out / task / v["label"] / f"seed{seed}"
                if not (rd / "summary.json").is_file():
                    base = str(config_dir / f"base_{task}.yaml")
                    todo.append((base, overrides_for(v, seed, rd, steps), rd))
    total = len(tasks) * len(variants) * len(seeds)
    print(f"{total - len(todo)} of {total} runs already finished; running {len(todo)} "
          f"in {workers} processes", flush=True)
    failed = []
    if not todo:
        return failed
    from tqdm import tqdm

    t0 = time.perf_counter()
    # spawn, not fork: a parent that already ran torch / DeepSpeed threads can deadlock a fork
    ctx = multiprocessing.get_context("spawn")
    with (ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_clean_env) as pool,
          tqdm(total=len(todo), desc="runs") as bar):
        futs = {pool.submit(_run_one, base, ov): rd for base, ov, rd in todo}
        for f in as_completed(futs):
            rd = futs[f]
            try:
                code = f.result()
            except Exception as e:  # reported, the others go on
                code = f"{type(e).__name__}: {e}"
            if code != 0:
                failed.append(f"{rd} ({code})")
            bar.update(1)
    print(f"grid: {len(todo)} runs in {time.perf_counter() - t0:.0f} s", flush=True)
    return failed


def run_figures(rd: Path) -> dict[str, float] | None:
    """Final entropy (mean of the last 10 steps) and the last evaluation row's eval/* metrics."""
    if not (rd / "summary.json").is_file():
        return None
    summary = json.loads((rd / "summary.json").read_text())
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "eval/accuracy" in r]
    out = {"final_entropy": float(summary["final_entropy"])}
    if evals:
        out.update({k: float(v) for k, v in evals[-1].items() if k.startswith("eval/")
                    and isinstance(v, (int, float))})
    out["curve"] = [float(r["entropy/measured"]) for r in rows]
    return out


def mean_std(xs: list[float]) -> tuple[float, float]:
    xs = [x for x in xs if isinstance(x, float) and math.isfinite(x)]
    if not xs:
        return math.nan, math.nan
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def collect(out: Path, tasks: list[str], variants: list[dict[str, Any]], seeds: list[int]
            ) -> dict[tuple[str, str], list[dict[str, float]]]:
    res = {}
    for task in tasks:
        for v in variants:
            figs = [run_figures(out / task / v["label"] / f"seed{s}") for s in seeds]
            res[(task, v["label"])] = [f for f in figs if f is not None]
    return res


def write_report(out: Path, tasks: list[str], variants: list[dict[str, Any]], seeds: list[int],
                 n: int, threshold: float | None = None) -> Path:
    """paper_table.md / .csv and entropy_curves.png from the finished runs under ``out``."""
    res = collect(out, tasks, variants, seeds)
    cols = [(h.format(n=n), k.format(n=n)) for h, k in COLUMNS]
    md = [f"| task | variant | seeds | {' | '.join(h for h, _ in cols)} |",
          "|---|---|---|" + "---|" * len(cols)]
    csv_rows = []
    for task in tasks:
        for v in variants:
            figs = res[(task, v["label"])]
            cells, row = [], {"task": task, "variant": v["label"], "seeds": len(figs)}
            for _, k in cols:
                m, s = mean_std([f.get(k, math.nan) for f in figs])
                cells.append("—" if math.isnan(m) else f"{m:.3f} ± {s:.3f}")
                row[f"{k}_mean"], row[f"{k}_std"] = m, s
            md.append(f"| {task} | {v['label']} | {len(figs)} | {' | '.join(cells)} |")
            csv_rows.append(row)
    md += ["", _correlations(res)]
    (out / "paper_table.md").write_text("\n".join(md) + "\n")
    with open(out / "paper_table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        w.writeheader()
        w.writerows(csv_rows)
    _plot(out / "entropy_curves.png", res, tasks, variants, threshold)
    return out / "paper_table.md"


def _correlations(res: dict) -> str:
    """Spearman rank correlations over every finished run (all tasks, variants, seeds): final
    entropy vs distinct-1 (the paper: entropy tracks diversity) and vs ECE (collapse worsens
    calibration)."""
    from scipy.stats import spearmanr

    figs = [f for fs in res.values() for f in fs]
    parts = []
    for name, key in (("distinct-1", "eval/distinct_1"), ("ECE", "eval/ece")):
        pairs = [(f["final_entropy"], f[key]) for f in figs
                 if key in f and math.isfinite(f.get(key, math.nan))]
        if len(pairs) >= 3:
            rho, p = spearmanr([a for a, _ in pairs], [b for _, b in pairs])
            parts.append(f"Spearman rho(final H, {name}) = {rho:.2f} (p = {p:.1e}, {len(pairs)} runs)")
    return "; ".join(parts)


#: the panel a variant's curve goes in, by the first word of its label (others: "other")
FAMILIES = {"clip": "clip bounds (4 updates/step)", "updates": "updates per step",
            "pos": "token weights", "neg": "token weights", "w": "token weights",
            "par": "positive-advantage reweighting", "pid": "feedback", "bandit": "feedback"}


def _family(label: str) -> str:
    return FAMILIES.get(label.split("_")[0], "other")


def _plot(path: Path, res: dict, tasks: list[str], variants: list[dict[str, Any]],
          threshold: float | None) -> None:
    import matplotlib.pyplot as plt

    fig = entropy_figure(res, tasks, variants, threshold)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def entropy_figure(res: dict, tasks: list[str], variants: list[dict[str, Any]],
                   threshold: float | None) -> Any:
    """Small multiples: a row per task, a column per variant family, GRPO in every panel as
    the black reference; one legend per column, above the top row, so no curve is covered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = list(dict.fromkeys(_family(v["label"]) for v in variants if v["label"] != "grpo"))
    families = families or ["baseline"]  # a study of GRPO alone: one panel per task
    fig, axes = plt.subplots(len(tasks), len(families), figsize=(3.6 * len(families), 3.0 * len(tasks) + 1.2),
                             squeeze=False, sharey="row")
    cmap = plt.get_cmap("tab10")

    def mean_curve(task: str, label: str) -> list[float]:
        curves = [f["curve"] for f in res.get((task, label), []) if f.get("curve")]
        if not curves:
            return []
        length = min(len(c) for c in curves)
        return [statistics.fmean(c[t] for c in curves) for t in range(length)]

    for r, task in enumerate(tasks):
        ref = mean_curve(task, "grpo")
        for c, fam in enumerate(families):
            ax = axes[r][c]
            if ref:
                ax.plot(range(len(ref)), ref, color="k", lw=1.0, label="grpo")
            members = [v["label"] for v in variants if v["label"] != "grpo" and _family(v["label"]) == fam]
            for i, label in enumerate(members):
                curve = mean_curve(task, label)
                if curve:
                    ax.plot(range(len(curve)), curve, color=cmap(i % 10), lw=1.2, label=label,
                            ls="-" if i < 10 else "--")
            if threshold is not None:
                ax.axhline(threshold, color="k", lw=0.6, ls=":")
            ax.set_yscale("log")
            ax.set_title(f"{task}: {fam}", fontsize=9)
            if r == len(tasks) - 1:
                ax.set_xlabel("step")
            if c == 0:
                ax.set_ylabel("entropy (nats, mean over seeds)")
            if r == 0:
                ax.legend(fontsize=7, ncol=2, loc="lower center", bbox_to_anchor=(0.5, 1.12),
                          frameon=False)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config-dir", type=Path, default=ROOT / "configs" / "paper")
    ap.add_argument("--out", type=Path, default=None,
                    help="default: runs/paper (configs/paper), runs/paper_<name> (configs/paper/<name>)")
    ap.add_argument("--tasks", nargs="+", default=None,
                    help="default: every base_<task>.yaml in --config-dir")
    ap.add_argument("--variants", nargs="+", default=None, help="labels (default: all)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None,
                    help="default: `seeds` in variants.yaml, else 0 1 2")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None, help="override train.steps (smoke runs)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--no-plant", action="store_true",
                    help="skip the simulated plant's two regimes (benchmarks/paper_plant.py, ~5 s)")
    a = ap.parse_args(argv)
    if not (a.config_dir / "variants.yaml").is_file():
        ap.error(f"no {a.config_dir / 'variants.yaml'}")
    variants = load_variants(a.config_dir)
    a.tasks = a.tasks or study_tasks(a.config_dir)
    if a.out is None:
        name = a.config_dir.resolve().name
        a.out = ROOT / "runs" / ("paper" if name == "paper" else f"paper_{name}")
    a.seeds = a.seeds if a.seeds is not None else study_seeds(a.config_dir)
    if a.variants:
        known = {v["label"] for v in variants}
        unknown = [x for x in a.variants if x not in known]
        if unknown:
            ap.error(f"unknown variants {unknown}; known: {sorted(known)}")
        variants = [v for v in variants if v["label"] in a.variants]
    for task in a.tasks:
        if not (a.config_dir / f"base_{task}.yaml").is_file():
            ap.error(f"no {a.config_dir / f'base_{task}.yaml'}")
    a.out.mkdir(parents=True, exist_ok=True)
    failed = [] if a.report_only else run_grid(a.config_dir, a.out, a.tasks, variants, a.seeds,
                                               a.workers, a.steps)
    base = load_yaml(a.config_dir / f"base_{a.tasks[0]}.yaml")
    n = int(base["train"].get("eval_samples", 0))
    target = base.get("control", {}).get("target", {})
    threshold = float(target["value"]) if target.get("kind") == "constant" else None
    table = write_report(a.out, a.tasks, variants, a.seeds, n, threshold)
    print(table.read_text())
    print(f"table: {table}\nplot: {a.out / 'entropy_curves.png'}")
    if not a.no_plant:
        import paper_plant

        print("\nThe simulated plant's two regimes (benchmarks/paper_plant.py):")
        print(paper_plant.run(a.out, [0, 1, 2, 3, 4], 300), end="")
        print(f"plant table: {a.out / 'plant_table.md'}")
    if failed:
        print("FAILED runs:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
