"""Run outputs: metrics.jsonl (flushed every step), tensorboard scalars, a progress bar,
events.jsonl (regulator interventions) and summary.json. Rank 0 writes them; every other rank
writes only ``metrics.rank{r}.jsonl`` (so one can check that all ranks saw the same entropy and
applied the same knobs).

Metric names (listed in docs/trainer.md) are the same in metrics.jsonl and tensorboard; the
file's one format (NaN and infinities as strings) is ``regulator.metrics_io``'s.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from regulator.metrics_io import json_value, metric_lines, metrics_line
from regulator.metrics_io import read_metrics as read_metrics  # the one reader, re-exported
from regulator.tracking import tracking_summary
from trainer.trackers import make_trackers, tracked_values

log = logging.getLogger("trainer")

#: every per-step metric the trainer's metric names (each metrics.jsonl line has all of them)
SPEC_METRICS = (
    "step", "entropy/measured", "entropy/target", "knobs/w_pos", "knobs/w_neg", "knobs/eps_low",
    "knobs/eps_high", "reward/mean", "reward/accuracy", "loss/policy", "clip/frac_low",
    "clip/frac_high", "tokens/pos_frac", "tokens/neg_frac", "time/step_s", "time/generate_s",
    "time/update_s",
)


def truncate_metrics(path: Path, keep_before: int) -> None:
    """Drop rows with step >= ``keep_before`` (a resumed run rewrites them) and a torn last
    line, atomically."""
    if not path.exists():
        return
    kept = [line for line, row in metric_lines(path) if row["step"] < keep_before]
    _write_atomic(path, "".join(line + "\n" for line in kept))


#: TensorBoard's CUSTOM SCALARS tab: the curves one wants on a single chart
TB_LAYOUT = {
    "control": {
        "entropy vs target": ["Multiline", ["entropy/measured", "entropy/target"]],
        "loss weights": ["Multiline", ["knobs/w_pos", "knobs/w_neg"]],
        "clip bounds": ["Multiline", ["knobs/eps_low", "knobs/eps_high"]],
        "clip fractions": ["Multiline", ["clip/frac_low", "clip/frac_high"]],
    },
    "learning": {"accuracy": ["Multiline", ["reward/accuracy", "eval/accuracy"]]},
}


def flat_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optim.lr": 0.001, ...}``: scalars as they are, anything else as its YAML-ish text."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flat_config(v, f"{name}."))
        elif isinstance(v, (bool, int, float, str)):
            out[name] = v
        else:
            out[name] = json.dumps(v, default=str)
    return out


def _tensorboard_layout(tb: Any, config: Mapping[str, Any]) -> None:
    """The custom-scalars layout and the resolved config as hparams (HPARAMS tab)."""
    from torch.utils.tensorboard.summary import hparams

    tb.add_custom_scalars(TB_LAYOUT)
    if config:
        for summary in hparams(flat_config(config), {"entropy/measured": math.nan}):
            tb.file_writer.add_summary(summary)


class RunLogger:
    """Writes one row per step to every sink (rank 0), or to metrics.rank{r}.jsonl (others)."""

    def __init__(self, run_dir: Path, *, total_steps: int, start_step: int, rank: int = 0,
                 tensorboard: bool = True, progress: bool = True,
                 config: Mapping[str, Any] | None = None, backends: Sequence[Any] = ()) -> None:
        self.enabled = rank == 0
        self.run_dir = run_dir
        self._tb = self._bar = None
        self._trackers = []  # built first: a missing tracker package fails before any file opens
        if self.enabled and backends:
            self._trackers = make_trackers(list(backends), run_dir=run_dir, config=config or {},
                                           start_step=start_step)
        name = "metrics.jsonl" if rank == 0 else f"metrics.rank{rank}.jsonl"
        truncate_metrics(run_dir / name, start_step)
        self._metrics = open(run_dir / name, "a")  # closed in close()
        if not self.enabled:
            tensorboard = progress = False
        self._events = open(run_dir / "events.jsonl", "a") if self.enabled else None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(run_dir / "tb"), purge_step=start_step)
            if start_step == 0:
                _tensorboard_layout(self._tb, config or {})
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True,
                             mininterval=0.5)

    def log(self, row: Mapping[str, Any]) -> None:
        self._metrics.write(metrics_line(row))
        self._metrics.flush()
        step = int(row["step"])
        if self._tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
        if self._bar is not None:
            self._bar.update(1)
            post = {"H": f"{row['entropy/measured']:.3f}", "target": f"{row['entropy/target']:.3f}",
                    "acc": f"{row['reward/accuracy']:.2f}"}
            if "eval/accuracy" in row:
                post["eval"] = f"{row['eval/accuracy']:.2f}"
            self._bar.set_postfix(post, refresh=False)
        if self._trackers:
            values = tracked_values(row)
            for t in self._trackers:
                t.log(values, step)

    def event(self, step: int, message: str) -> None:
        """A regulator intervention (fault or clamp): events.jsonl and the log. The message names
        its step already (``Regulator.last_event``: ``step N: ...``)."""
        if not self.enabled or not message:
            return
        self._events.write(json.dumps({"step": step, "event": message}) + "\n")
        self._events.flush()
        log.info("regulator: %s", message)

    def close(self) -> None:
        self._metrics.close()
        if self._events is not None:
            self._events.close()
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
        if self._bar is not None:
            self._bar.close()
        for t in self._trackers:
            try:
                t.close()
            except Exception as e:  # a tracker's upload must not fail the run
                log.warning("tracker %s did not close cleanly: %s", type(t).__name__, e)


def summarise(rows: Sequence[Mapping[str, Any]], *, burn_in: int, ema_alpha: float,
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Final figures of a run: tracking quality after ``burn_in``, final entropy and accuracy."""
    if not rows:
        return dict(extra or {})
    # skipped steps (no response tokens, non-finite entropy) measured nothing: left out of the figures
    all_rows, rows = rows, [r for r in rows if not r.get("train/skipped")] or list(rows)
    tail = rows[-min(10, len(rows)):]
    ent = [float(r["entropy/measured"]) for r in rows]
    tgt = [float(r["entropy/target"]) for r in rows]
    knobs = {k: [float(r[f"knobs/{k}"]) for r in rows] for k in ("w_pos", "w_neg", "eps_low", "eps_high")}
    track = tracking_summary(ent, tgt, knobs=knobs, burn_in=burn_in, ema_alpha=ema_alpha)
    mean = lambda key: sum(float(r[key]) for r in tail) / len(tail)
    out: dict[str, Any] = {
        "steps": int(all_rows[-1]["step"]) + 1,
        "skipped_steps": sum(1 for r in all_rows if r.get("train/skipped")),
        "final_entropy": mean("entropy/measured"),
        "final_target": float(rows[-1]["entropy/target"]),
        "final_accuracy": mean("reward/accuracy"),
        "initial_entropy": ent[0],
        "initial_accuracy": float(rows[0]["reward/accuracy"]),
        "mean_step_s": sum(float(r["time/step_s"]) for r in rows) / len(rows),
        "tracking": {**track, "burn_in": burn_in, "ema_alpha": ema_alpha,
                     "rmse_rel": track["rmse"] / track["mean_target"] if track["mean_target"] else math.nan,
                     "rmse_ema_rel": (track["rmse_ema"] / track["mean_target"]
                                      if track["mean_target"] else math.nan)},
        "final_knobs": {k: v[-1] for k, v in knobs.items()},
    }
    evals = [r for r in rows if "eval/accuracy" in r]
    if evals:
        out["initial_eval_accuracy"] = float(evals[0]["eval/accuracy"])
        out["final_eval_accuracy"] = float(evals[-1]["eval/accuracy"])
    for key in ("control/faults", "control/clamped", "control/frozen_steps"):
        if key in rows[-1]:
            out[key] = float(rows[-1][key])
    out["reward/failures"] = sum(float(r.get("reward/failures", 0.0)) for r in all_rows)
    out.update(extra or {})
    return {k: json_value(v) if not isinstance(v, dict) else {kk: json_value(vv) for kk, vv in v.items()}
            for k, v in out.items()}


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` through a temporary file: the old content survives any
    failure (a full disk), and no temporary file is left behind."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    _write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
