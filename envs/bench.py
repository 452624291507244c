"""``regulator bench CONFIG``: rank controllers on a grid of targets x regimes x seeds.

Both plants run through the same loop (``regulator.plant.run_loop``: measure, Regulator.step,
update). On the simulated plant every run of a regime is one plant of a batched ``SimPlant``
(the grid is split into ``workers`` chunks, one process each), each with its own Regulator. On
``plant: trainer`` each run is a ``TrainerPlant`` built from the training config with the grid
point's overrides, under the Regulator of its ``control`` section. Outputs: ``OUT/leaderboard.csv``,
``OUT/leaderboard.md``, ``OUT/tracking.png`` and each run's
``OUT/runs/<regime>/<target>/<label>/seed<k>/metrics.jsonl`` (a trainer run's folder also holds
its resolved ``config.yaml``).
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from envs.band import Band, band_corners, band_from_paths, sim_bands
from envs.bench_config import BenchConfig, ControllerEntry, parse_bench_config
from envs.bench_report import top_lines, write_reports
from regulator.config import apply_overrides, load_yaml
from regulator.errors import ConfigError
from regulator.knobs import KNOB_NAMES
from regulator.metrics_io import read_metrics, write_metrics
from regulator.plant import run_loop
from regulator.tracking import feasible_tracking, tracking_summary

log = logging.getLogger(__name__)

GridPoint = tuple[str, str, int, int]  # one run of the grid: regime, target name, controller index, seed
_PROGRESS: Any = None  # a worker's progress queue (set by the pool initialiser)


def run_dir(out: Path, cfg: BenchConfig, run: GridPoint) -> Path:
    regime, target, i, seed = run
    return out / "runs" / regime / target / cfg.controllers[i].label / f"seed{seed}"


def score_run(cfg: BenchConfig, run: GridPoint, rows: Sequence[dict[str, float]],
              band: Band | None = None) -> dict[str, Any]:
    """Tracking figures of one run (regulator.tracking) plus final batch and held-out greedy
    accuracy (the latter on the trainer, where the config evaluates) and faults; with the
    reachable ``band``, the tracking error against the target projected into it."""
    regime, target, i, seed = run
    h = [r["entropy/measured"] for r in rows]
    t = [r["entropy/target"] for r in rows]
    knobs = {k: [r[f"knobs/{k}"] for r in rows] for k in KNOB_NAMES}
    s = tracking_summary(h, t, knobs=knobs, burn_in=cfg.burn_in, ema_alpha=cfg.ema_alpha)
    s["rmse_ema_rel"] = s["rmse_ema"] / abs(s["mean_target"]) if s["mean_target"] else math.nan
    tail = max(1, len(rows) // 10)  # final accuracy: mean over the last 10% of steps
    acc = [r["reward/accuracy"] for r in rows[-tail:]]
    s["final_accuracy"] = sum(acc) / len(acc)
    s["final_entropy"] = sum(h[-tail:]) / tail
    s["final_eval_accuracy"] = float(rows[-1].get("eval/accuracy", math.nan)) if rows else math.nan
    s["faults"] = float(rows[-1].get("control/faults", 0.0)) if rows else 0.0
    nan = {"rmse_feasible": math.nan, "rmse_feasible_rel": math.nan, "out_of_reach": math.nan}
    s.update(nan if band is None else feasible_tracking(h, t, band.lo, band.hi, burn_in=cfg.burn_in,
                                                        ema_alpha=cfg.ema_alpha, rises=band.rises))
    return {"regime": regime, "target": target, "controller": cfg.controllers[i].label,
            "seed": seed, **s}


class _BarTicks:
    """The progress queue's ``put`` for runs in this process: straight onto the bar."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def put(self, n: int) -> None:
        self.bar.update(n)


#: what ``trainer.engine.init_distributed`` sets for a single-process run; a worker clears them
#: so that its run makes its own process group on its own port
_DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _init_worker(progress: Any, fresh_process: bool = False, parent: int | None = None,
                 grace_s: float = 120.0) -> None:
    global _PROGRESS
    _PROGRESS = progress
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent, grace_s), daemon=True).start()
    if fresh_process:
        for k in _DIST_ENV:
            os.environ.pop(k, None)
        logging.getLogger("regulator.safety").setLevel(logging.ERROR)  # as bench_main does
    import torch

    torch.set_num_threads(1)


def _exit_with_parent(parent: int, grace_s: float, poll_s: float = 1.0) -> None:
    """A worker whose bench process is gone (killed, or stopped with SIGTERM, which does not
    reach the pool) stops too, instead of training on unseen: first with a SIGTERM, then, if
    something caught that, ``grace_s`` later, the process itself (it would otherwise wait for the
    dead parent's next task for ever)."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(143)


def _sim_chunk(cfg: BenchConfig, out: str, regime: str, runs: list[GridPoint],
               bands: dict[tuple[str, int], Band]) -> list[dict[str, Any]]:
    """Run a chunk of one regime's grid as one batched plant; write each run's metrics."""
    from envs.plant import SimPlant
    from envs.sim_loop import SimPlants

    plant = SimPlants(SimPlant(cfg.plant_config(regime), len(runs), seeds=[r[3] for r in runs]),
                      cfg.horizon)
    regs = [cfg.controllers[i].regulator(cfg.target_specs[t], cfg.horizon) for _, t, i, _ in runs]
    all_rows = run_loop(plant, regs, on_step=_tick)
    out_path = Path(out)
    summaries = []
    for run, rows in zip(runs, all_rows):
        write_metrics(run_dir(out_path, cfg, run) / "metrics.jsonl", rows)
        summaries.append(score_run(cfg, run, rows, bands.get((regime, run[3]))))
    return summaries


def _train(cfg: BenchConfig, regime: str, seed: int, rd: Path, entry: ControllerEntry,
           target: Any, evaluate: bool = True) -> list[dict[str, Any]]:
    """One run of the real trainer (a TrainerPlant under its config's Regulator, through
    ``run_loop``); its metrics rows, the last with the final policy's held-out greedy accuracy
    when ``evaluate`` and the config evaluates. With ``cfg.resume`` a finished run of the same
    spec in ``rd`` is read back instead (a reused run is counted in the bar's start:
    _reused_steps)."""
    spec = run_spec(cfg, regime, seed, rd, entry, target)
    rows = _finished_run(rd, spec, cfg.horizon) if cfg.resume else None
    if rows is None:
        from trainer.config import TrainConfig  # heavy: imported only for plant: trainer
        from trainer.plant import TrainerPlant

        train = TrainConfig.from_mapping(apply_overrides(load_yaml(spec["trainer_config"]),
                                                         spec["overrides"]))
        regulator = train.control.build(train.train.steps)
        shutil.rmtree(rd, ignore_errors=True)  # an unfinished or outdated run of this grid point
        rd.mkdir(parents=True)
        (rd / "config.yaml").write_text(yaml.safe_dump(train.raw, sort_keys=False))
        plant = TrainerPlant(train)
        rows = run_loop(plant, [regulator], on_step=_tick)[0]
        if evaluate and train.train.eval_every and rows:
            rows[-1]["eval/accuracy"] = plant.evaluate()
        write_metrics(rd / "metrics.jsonl", rows)
        (rd / _SPEC_FILE).write_text(json.dumps(spec))  # written last: marks the run finished
    return rows


def _tick(rows: Sequence[dict[str, float]]) -> None:
    """A step of ``len(rows)`` runs done: onto the progress bar."""
    if _PROGRESS is not None:
        _PROGRESS.put(len(rows))


def _reusable(cfg: BenchConfig, regime: str, seed: int, rd: Path, entry: ControllerEntry,
              target: Any) -> bool:
    """Whether ``--resume`` will read this trainer run back instead of training it."""
    return cfg.resume and _finished_run(rd, run_spec(cfg, regime, seed, rd, entry, target),
                                        cfg.horizon) is not None


def _reused_steps(cfg: BenchConfig) -> int:
    """Steps of the grid's trainer runs that ``--resume`` will read back (the bar starts there)."""
    if cfg.plant != "trainer" or not cfg.resume:
        return 0
    return sum(cfg.horizon for g in _trainer_groups(cfg)
               if _reusable(cfg, *_train_args(cfg, Path(cfg.out_dir), g[0])))


_SPEC_FILE = "bench_run.json"  # what a finished trainer run was: its config and overrides


def run_spec(cfg: BenchConfig, regime: str, seed: int, rd: Path, entry: ControllerEntry,
             target: Any) -> dict[str, Any]:
    """What makes one trainer run: the base config (path and text) and the overrides that set
    its grid point (``control.*``, ``train.steps``, ``train.seed``, ``train.out_dir``)."""
    dump = lambda v: yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    overrides = [
        f"train.steps={cfg.horizon}", f"train.seed={seed}", f"train.out_dir={rd}",
        f"control.controller={entry.controller}", f"control.params={dump(entry.params)}",
        f"control.target={dump(target)}", f"control.actuate={dump(list(entry.actuate))}",
        f"control.initial={dump(entry.initial.as_dict())}",
        f"control.bounds={dump({k: list(entry.bounds.range(k)) for k in KNOB_NAMES})}",
    ]
    base = cfg.trainer_config_of(regime)
    return {"trainer_config": base, "trainer_config_text": Path(base).read_text() if base else None,
            "overrides": overrides}


def _placeless(spec: dict[str, Any]) -> dict[str, Any]:
    """A run spec without its run directory: a bench directory moved or copied elsewhere holds
    the same runs (the directory is where the run is found, not a setting of it)."""
    return {**spec, "overrides": [o for o in spec.get("overrides", []) if not o.startswith("train.out_dir=")]}


def _finished_run(rd: Path, spec: dict[str, Any], horizon: int) -> list[dict[str, Any]] | None:
    """The rows of a finished run in ``rd`` made from ``spec``, or None (then it is trained)."""
    try:
        if _placeless(json.loads((rd / _SPEC_FILE).read_text())) != _placeless(spec):
            return None
        rows = read_metrics(rd / "metrics.jsonl")
    except (OSError, ValueError):
        return None
    return rows if len(rows) == horizon else None


def _retarget(rows: Sequence[dict[str, Any]], target: Any, horizon: int) -> list[dict[str, Any]]:
    """A target-independent run's rows with ``entropy/target`` from another target curve (a
    relative curve is calibrated on the first finite measurement, as the Regulator does)."""
    from regulator.targets import make_target

    curve = make_target(dict(target))
    if curve.needs_calibration:
        curve.calibrate(next(r["entropy/measured"] for r in rows if math.isfinite(r["entropy/measured"])))
    return [{**r, "entropy/target": curve(int(r["step"]), horizon)} for r in rows]


def _trainer_groups(cfg: BenchConfig) -> list[list[GridPoint]]:
    """The grid's trainer runs, grouped by the training run they need: a controller that ignores
    the target (``Controller.uses_target``) trains once per regime and seed for every target."""
    from regulator.registry import get_controller_class

    groups: dict[tuple[Any, ...], list[GridPoint]] = {}
    for run in cfg.runs:
        regime, _, i, seed = run
        shared = not get_controller_class(cfg.controllers[i].controller).uses_target
        groups.setdefault((regime, i, seed) if shared else run, []).append(run)
    return list(groups.values())


def _train_args(cfg: BenchConfig, out: Path, run: GridPoint) -> tuple[str, int, Path, ControllerEntry, Any]:
    """``_train``'s arguments for a grid point: regime, seed, run dir, controller entry, target."""
    regime, target, i, seed = run
    return regime, seed, run_dir(out, cfg, run), cfg.controllers[i], cfg.target_specs[target]


def _trainer_run(cfg: BenchConfig, out: str, runs: list[GridPoint],
                 bands: dict[tuple[str, int], Band]) -> list[dict[str, Any]]:
    """One training run on the real trainer, scored for every grid point in ``runs`` (several
    only for a target-independent controller; the others get its rows re-targeted)."""
    regime, seed, *_ = args = _train_args(cfg, Path(out), runs[0])
    rows = _train(cfg, *args)
    out_rows = [rows]
    for run in runs[1:]:
        out_rows.append(_retarget(rows, cfg.target_specs[run[1]], cfg.horizon))
        write_metrics(run_dir(Path(out), cfg, run) / "metrics.jsonl", out_rows[-1])
    return [score_run(cfg, run, r, bands.get((regime, seed))) for run, r in zip(runs, out_rows)]


def _band_entry(corner: Any, entries: Sequence[ControllerEntry]) -> ControllerEntry:
    """A static controller holding the knobs at one corner of the knob box."""
    from regulator.knobs import KnobBounds

    names = tuple(k for k in KNOB_NAMES if any(k in e.actuate for e in entries))
    bounds = KnobBounds(**{k: (min(getattr(corner, k), entries[0].bounds.range(k)[0]),
                               max(getattr(corner, k), entries[0].bounds.range(k)[1])) for k in KNOB_NAMES})
    return ControllerEntry(label="band", controller="static", actuate=names, initial=corner, bounds=bounds,
                           params={"knobs": {k: getattr(corner, k) for k in names}})


_BAND_TARGET = {"kind": "constant", "value": 1.0}  # any: the band's runs are open loop


def _band_dir(out: Path, regime: str, seed: int, j: int) -> Path:
    return out / "band" / regime / f"corner{j}" / f"seed{seed}"


def _band_run(cfg: BenchConfig, regime: str, seed: int, rd: Path, entry: ControllerEntry) -> list[float]:
    """One open-loop trainer run at a corner of the knob box: its entropy path."""
    return [r["entropy/measured"] for r in _train(cfg, regime, seed, rd, entry, _BAND_TARGET, evaluate=False)]


def measure_bands(cfg: BenchConfig, out: Path, progress_bar: bool = True) -> dict[tuple[str, int], Band]:
    """The reachable band of every (regime, seed) (``envs.band``); written to OUT/band/.
    On the trainer the open-loop runs share the ``workers`` processes, with their own bar."""
    if not cfg.band:
        return {}
    corners = band_corners(cfg.controllers)
    bands: dict[tuple[str, int], Band] = {}
    if cfg.plant == "trainer":
        from tqdm import tqdm

        keys = [(r, s, j) for r in cfg.regimes for s in cfg.seeds for j in range(len(corners))]
        if progress_bar:
            print(f"regulator bench: measuring the reachable band first ({len(keys)} open-loop runs of "
                  f"{cfg.horizon} steps)", flush=True)
        entries = [_band_entry(c, cfg.controllers) for c in corners]
        args = [(cfg, r, s, _band_dir(out, r, s, j), entries[j]) for r, s, j in keys]
        reused = sum(cfg.horizon for a in args if _reusable(*a, _BAND_TARGET))
        bar = tqdm(total=len(keys) * cfg.horizon, initial=reused, unit="step", desc="band",
                   disable=not progress_bar, smoothing=0.1, mininterval=1.0)
        paths = _run_tasks(cfg, [(_band_run, a) for a in args], bar)
        bar.close()
        for regime in cfg.regimes:
            for seed in cfg.seeds:
                bands[(regime, seed)] = band_from_paths(
                    [p for (r, s, _), p in zip(keys, paths) if (r, s) == (regime, seed)], cfg.ema_alpha)
    else:
        for regime in cfg.regimes:
            per_seed = sim_bands(cfg.plant_config(regime), cfg.seeds, corners, cfg.horizon, cfg.ema_alpha)
            bands.update({(regime, seed): band for seed, band in per_seed.items()})
    for (regime, seed), band in bands.items():
        path = out / "band" / regime / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"lo": band.lo, "hi": band.hi, "rises": band.rises,
                                    "corners": [c.as_dict() for c in corners]}))
    return bands


def _tasks(cfg: BenchConfig, bands: dict[tuple[str, int], Band]) -> list[tuple[Any, tuple[Any, ...]]]:
    """(function, args) per unit of work: sim runs in ``workers`` batched chunks per regime."""
    out = cfg.out_dir
    if cfg.plant == "trainer":
        return [(_trainer_run, (cfg, out, g, bands)) for g in _trainer_groups(cfg)]
    tasks = []
    for regime in cfg.regimes:
        runs = [r for r in cfg.runs if r[0] == regime]
        k = min(cfg.workers, len(runs))
        size = math.ceil(len(runs) / k)
        for j in range(0, len(runs), size):
            tasks.append((_sim_chunk, (cfg, out, regime, runs[j : j + size], bands)))
    return tasks


def _run_tasks(cfg: BenchConfig, tasks: Sequence[tuple[Any, tuple[Any, ...]]], bar: Any) -> list[Any]:
    """Each task's result, in order: in this process (``workers: 1``) or in ``workers`` processes.
    Runs report their steps to ``bar`` as they go. Trainer runs get freshly spawned processes:
    each makes its own DeepSpeed process group, which a forked child would share with its parent."""
    if cfg.workers == 1 or len(tasks) == 1:
        _init_worker(_BarTicks(bar))  # in this process: every step moves the bar at once
        return [fn(*args) for fn, args in tasks]
    fresh = cfg.plant == "trainer"
    ctx = mp.get_context("fork" if not fresh and "fork" in mp.get_all_start_methods() else "spawn")
    q = ctx.Queue()
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(q, fresh, os.getpid())) as pool:
        futures = [pool.submit(fn, *args) for fn, args in tasks]
        while not all(f.done() for f in futures):
            try:
                bar.update(q.get(timeout=0.2))
            except queue.Empty:
                pass
        results = [f.result() for f in futures]
        while not q.empty():
            bar.update(q.get())
    return results


def check_trainer_configs(cfg: BenchConfig) -> None:
    """``plant: trainer``: every regime's training config, with each controller entry's settings
    over it, is a valid ``regulator train`` config; checked before any run starts. A mistake is a
    ConfigError: a missing or unreadable file under the ``trainer_config`` key, a mistake inside
    it under its own key, with a hint naming the file."""
    if cfg.plant != "trainer":
        return
    from trainer.config import TrainConfig  # heavy: imported only for plant: trainer

    for regime in cfg.regimes or []:
        path = cfg.trainer_config_of(regime)
        key = "trainer_config" if isinstance(cfg.trainer_config, str) else f"trainer_config.{regime}"
        try:
            raw = load_yaml(path or "")
        except ConfigError as e:
            raise e.with_key(key) from None
        target = cfg.targets_of(regime)[0]
        for i, entry in enumerate(cfg.controllers):
            run = (regime, target, i, cfg.seeds[0])
            spec = run_spec(cfg, regime, cfg.seeds[0], run_dir(Path(cfg.out_dir), cfg, run), entry,
                            cfg.target_specs[target])
            try:
                TrainConfig.from_mapping(apply_overrides(raw, spec["overrides"]))
            except ConfigError as e:
                where = f"in {key} {path!r}"
                raise ConfigError(e.key, e.expected, e._given,
                                  hint=f"{e.hint}; {where}" if e.hint else where) from None


def run_bench(cfg: BenchConfig, progress_bar: bool = True) -> list[dict[str, Any]]:
    """Run the whole grid; return one summary per run (and write every output)."""
    from tqdm import tqdm

    check_trainer_configs(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_config.yaml").write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))
    bands = measure_bands(cfg, out, progress_bar)  # before the grid's bar: its ETA counts only the grid
    total = (len(_trainer_groups(cfg)) if cfg.plant == "trainer" else len(cfg.runs)) * cfg.horizon
    bar = tqdm(total=total, initial=_reused_steps(cfg), unit="plant-step", disable=not progress_bar,
               smoothing=0.1, mininterval=1.0)
    summaries = [s for part in _run_tasks(cfg, _tasks(cfg, bands), bar) for s in part]
    bar.close()
    rows = write_reports(cfg, summaries, out)
    print("\n".join(top_lines(rows)), flush=True)
    return summaries


def bench_main(config_path: str, overrides: Sequence[str] = (), resume: bool = False,
               overwrite: bool = False) -> int:
    """Entry point of ``regulator bench``: 0 on success, 1 on a failure during the runs
    (a ConfigError propagates to the CLI, which exits 2). ``resume``: trainer runs already
    finished in the output folder with the same settings are read back, not trained again.
    An output folder that holds an earlier bench's leaderboard is replaced only with
    ``overwrite`` (or added to with ``resume``), so no result is lost by a repeated command."""
    cfg = parse_bench_config(apply_overrides(load_yaml(config_path), list(overrides)))
    if resume and overwrite:
        raise ConfigError("--overwrite", "either --resume or --overwrite, not both", True)
    earlier = Path(cfg.out_dir) / "leaderboard.csv"
    if earlier.exists() and not (resume or overwrite):
        raise ConfigError("out_dir", "a folder without an earlier bench's results", str(cfg.out_dir),
                          hint="it holds leaderboard.csv; pass --overwrite to replace them, "
                          "--resume to keep its finished trainer runs, or --set out_dir=...")
    cfg.resume = resume
    t0 = time.perf_counter()
    # hundreds of runs: per-step control warnings (frozen, faults) stay in each run's metrics
    # (control/frozen_steps, control/faults) instead of flooding the terminal
    logging.getLogger("regulator.safety").setLevel(logging.ERROR)
    try:
        summaries = run_bench(cfg)
    except ConfigError:
        raise
    except Exception as e:  # a failure during the runs
        log.error("bench failed: %s: %s", type(e).__name__, e)
        return 1
    print(f"regulator bench: {len(summaries)} runs in {time.perf_counter() - t0:.1f} s -> "
          f"{cfg.out_dir}/leaderboard.md")
    return 0
