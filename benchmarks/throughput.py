"""Step-time breakdown of the trainer: regulated vs unregulated, 1 vs 2 updates per step.

For each model (``tiny`` = the default config's 0.1M char Llama, ``4m`` = the same Llama scaled
to ~4M parameters, ``smollm2`` = SmolLM2-135M at a small batch) four variants are built in one
process from the same seed: {pid (the default config's regulated run), static (plain GRPO)} x
{1 update per step (the on-policy, shared-forward path), 2 updates per step (mini_batches: 2)}.
Each repeat restores every variant to the same starting state (weights, optimizer, controller,
prompt stream) and times ``--steps`` real ``train_step`` calls; the variants are interleaved
(their order rotates every repeat), so a load spike on the shared machine hits them alike.
Ratios are paired within a repeat and reported as median [min, max] over the repeats.

Per step: generation, the old-log-prob/entropy pass (``time/measure_s`` minus the entropy
statistics), update (backward + optimizer, plus the extra forwards of a second update), control
(Regulator + controller + entropy statistics: ``time/control_s``), other (rewards, advantages,
bookkeeping); generated tokens per second; peak memory (CUDA: max allocated per variant; CPU:
the model's process peak RSS, all four variants together).

    OMP_NUM_THREADS=1 python benchmarks/throughput.py --models tiny,4m,smollm2 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "old_logprob", "update", "control", "other")

#: model name -> (config overrides on top of configs/default.yaml, default repeats, steps per repeat)
MODELS: dict[str, tuple[dict[str, Any], int, int]] = {
    "tiny": ({}, 5, 3),
    "4m": ({"model": {"name": "tiny-char", "hidden": 256, "layers": 4, "heads": 4,
                      "intermediate": 1024},
            "rollout": {"prompts": 8, "group_size": 8, "max_new_tokens": 16}}, 5, 3),
    "smollm2": ({"model": {"name": "smollm2-135m"},
                 "task": {"kind": "addition", "digits": 1, "terms": 2, "format": "natural",
                          "seed": 0},
                 "reward": {"kind": "numeric"},
                 "rollout": {"prompts": 2, "group_size": 4, "max_new_tokens": 16},
                 "optim": {"lr": 3e-5}, "train": {"threads": 0}}, 2, 1),
}
VARIANTS = ("pid/1", "static/1", "pid/2", "static/2")


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def variant_config(base: dict[str, Any], model_over: dict[str, Any], variant: str,
                   tiny: bool) -> dict[str, Any]:
    """The default config with the model's overrides and the variant's controller/updates."""
    cfg = copy.deepcopy(base)
    for section, values in model_over.items():
        replace = section in ("model", "task", "reward")  # a different kind: no merging
        cfg[section] = dict(values) if replace else {**cfg.get(section, {}), **values}
    controller, updates = variant.split("/")
    if controller == "static":
        cfg["control"] = {**cfg["control"], "controller": "static", "params": {}}
    cfg["optim"] = {**cfg["optim"], "mini_batches": int(updates), "epochs": 1}
    cfg["train"] = {**cfg["train"], "eval_every": 0, "save_every": 0, "out_dir": "/nonexistent"}
    if tiny:  # the test's smoke mode: the smallest batch that still has two mini-batches
        cfg["model"] = {"name": "tiny-char", "hidden": 16, "layers": 1, "heads": 2}
        cfg["rollout"] = {**cfg["rollout"], "prompts": 2, "group_size": 2, "max_new_tokens": 2}
    return cfg


class Variant:
    """A built session plus the snapshot every repeat starts from."""

    def __init__(self, name: str, raw: dict[str, Any]):
        from trainer.config import TrainConfig
        from trainer.run import build_session

        self.name = name
        session = build_session(TrainConfig.from_mapping(raw))
        self.run, self.regulator = session.plant, session.regulator
        eng = self.run.engine
        self.regulator_s = 0.0  # Regulator.step alone (control_s minus it = entropy statistics)
        reg, step = self.regulator, self.regulator.step

        def timed_step(*args, **kw):
            t0 = time.perf_counter()
            out = step(*args, **kw)
            self.regulator_s = time.perf_counter() - t0
            return out

        reg.step = timed_step
        self.snapshot = (copy.deepcopy(eng.module.state_dict()),
                         copy.deepcopy(eng.optimizer.state_dict()),
                         self.regulator.state_dict(), self.run.stream.state_dict())

    def restore(self) -> None:
        model, optim, reg, stream = self.snapshot
        self.run.engine.module.load_state_dict(model)
        self.run.engine.optimizer.load_state_dict(copy.deepcopy(optim))
        self.regulator.load_state_dict(copy.deepcopy(reg))
        self.run.stream.load_state_dict(copy.deepcopy(stream))
        self.run.last_clip = {"clip_frac_low": 0.0, "clip_frac_high": 0.0}
        self.run.step = 0

    def steps(self, n: int) -> list[dict[str, float]]:
        from trainer.run import train_step

        self.restore()
        rows = []
        for _ in range(n):
            c0 = time.process_time()  # this process's CPU time: robust to other processes' load
            rows.append(train_step(self.run, self.regulator))
            rows[-1]["_cpu_s"] = time.process_time() - c0
            rows[-1]["_regulator_s"] = self.regulator_s
        return rows


def breakdown(row: dict[str, float], n_seq: int) -> dict[str, float]:
    """One step's row -> stage seconds, tokens and rates."""
    stats_s = row["time/control_s"] - row.get("_regulator_s", 0.0)
    out = {"step": row["time/step_s"], "cpu_step": row["_cpu_s"], "generate": row["time/generate_s"],
           "old_logprob": row["time/measure_s"] - min(stats_s, row["time/measure_s"]),
           "update": row["time/update_s"], "control": row["time/control_s"],
           "regulator": row["_regulator_s"], "entropy_stats": stats_s}
    out["other"] = max(out["step"] - sum(out[k] for k in STAGES[:-1]), 0.0)  # rewards, advantages
    out["tokens"] = row["response/length"] * n_seq
    return out


def child(model: str, repeats: int, steps: int, tiny: bool, config: str | None = None
          ) -> dict[str, Any]:
    """Build the four variants of ``model`` (or of ``config``: its own model, task and control)
    and time them interleaved; returns the raw numbers."""
    import torch
    import yaml

    from regulator.config import load_yaml

    base = load_yaml(config or ROOT / "configs" / "default.yaml")
    over = {} if config else MODELS[model][0]
    if model == "smollm2" and not tiny:
        from trainer.models import smollm2_dir

        if not (smollm2_dir() / "model.safetensors").is_file():
            return {"model": model, "skipped": f"no converted SmolLM2 in {smollm2_dir()} "
                                               "(run `make smollm2` once)"}
    cuda = torch.cuda.is_available()
    variants = [Variant(v, variant_config(base, over, v, tiny)) for v in VARIANTS]
    cfg0 = variants[0].run.cfg
    n_seq = cfg0.rollout.prompts * cfg0.rollout.group_size
    n_params = sum(p.numel() for p in variants[0].run.engine.module.parameters())
    for v in variants:  # warm-up: first-call costs (allocator, kernels, lazy imports) off the clock
        v.steps(1)
    per: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    peak: dict[str, float] = {}
    load_before = load_avg()
    for r in range(repeats):
        order = variants[r % len(variants):] + variants[:r % len(variants)]
        for v in order:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            rows = v.steps(steps)
            if cuda:
                peak[v.name] = max(peak.get(v.name, 0.0), torch.cuda.max_memory_allocated() / 2**20)
            b = [breakdown(row, n_seq) for row in rows]
            per[v.name].append({k: statistics.median(x[k] for x in b) for k in b[0]})
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"model": model, "params": n_params, "sequences": n_seq,
            "max_new_tokens": cfg0.rollout.max_new_tokens, "threads": torch.get_num_threads(),
            "repeats": repeats, "steps": steps, "device": "cuda" if cuda else "cpu",
            "load_before": load_before, "load_after": load_avg(), "per_repeat": per,
            "peak_mb": peak or {"process_rss": rss_mb},
            "config": yaml.safe_dump(variants[0].run.cfg.raw["model"])}


def _spread(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs)}


def _fastest(a: list[dict[str, float]], b: list[dict[str, float]], key: str) -> float:
    """Ratio of the fastest repeats: the least disturbed estimate on a loaded machine."""
    return min(x[key] for x in a) / min(y[key] for y in b)


def throughput_summary(res: dict[str, Any]) -> dict[str, Any]:
    """Per-variant medians, control share and the paired ratios (median [min, max])."""
    per = res["per_repeat"]
    table = {}
    for name, reps in per.items():
        med = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
        med["tokens_per_s"] = med["tokens"] / med["step"]
        med["gen_tokens_per_s"] = med["tokens"] / max(med["generate"], 1e-12)
        med["control_frac"] = statistics.median(r["control"] / r["step"] for r in reps)
        table[name] = med

    def ratio(a: str, b: str, key: str) -> dict[str, float]:
        return {**_spread([x[key] / y[key] for x, y in zip(per[a], per[b])]),
                "fastest": _fastest(per[a], per[b], key)}

    pairs = {"pid/static (1 update)": ("pid/1", "static/1"),
             "pid/static (2 updates)": ("pid/2", "static/2"),
             "2 updates / 1 (pid)": ("pid/2", "pid/1"),
             "2 updates / 1 (static)": ("static/2", "static/1")}
    def implied(a: str, b: str) -> dict[str, float]:  # b's step with a's control time instead
        return _spread([(y["step"] - y["control"] + x["control"]) / y["step"]
                        for x, y in zip(per[a], per[b])])

    return {"table": table,
            "ratios": {k: ratio(a, b, "step") for k, (a, b) in pairs.items()},
            "implied_ratios": {k: implied(a, b) for k, (a, b) in list(pairs.items())[:2]},
            "cpu_ratios": {k: ratio(a, b, "cpu_step") for k, (a, b) in pairs.items()}}


def render(res: dict[str, Any], summ: dict[str, Any]) -> str:
    """A plain-text table of one model's results."""
    lines = [f"== {res['model']}: {res['params'] / 1e6:.2f}M params, {res['sequences']} sequences x "
             f"<= {res['max_new_tokens']} new tokens, {res['device']}, {res['threads']} thread(s), "
             f"{res['repeats']} repeats x {res['steps']} steps; load avg "
             f"{res['load_before']} -> {res['load_after']}",
             f"{'variant':<10}{'step ms':>9}" + "".join(f"{s + ' ms':>15}" for s in STAGES)
             + f"{'control %':>11}{'regulator ms':>14}{'H stats ms':>12}{'tok/s':>9}{'gen tok/s':>11}"]
    for name, m in summ["table"].items():
        lines.append(f"{name:<10}{m['step'] * 1e3:>9.1f}"
                     + "".join(f"{m[s] * 1e3:>15.2f}" for s in STAGES)
                     + f"{m['control_frac'] * 100:>10.2f}%{m['regulator'] * 1e3:>14.3f}"
                     f"{m['entropy_stats'] * 1e3:>12.3f}{m['tokens_per_s']:>9.0f}"
                     f"{m['gen_tokens_per_s']:>11.0f}")
    for k, r in summ["ratios"].items():
        c = summ["cpu_ratios"][k]
        lines.append(f"  step-time ratio {k:<24} wall {r['median']:.3f} [{r['min']:.3f}, {r['max']:.3f}]"
                     f" fastest {r['fastest']:.3f}   process CPU {c['median']:.3f} "
                     f"[{c['min']:.3f}, {c['max']:.3f}] fastest {c['fastest']:.3f}")
    for k, r in summ["implied_ratios"].items():
        lines.append(f"  implied by control time {k:<16} {r['median']:.4f} [{r['min']:.4f}, {r['max']:.4f}]")
    lines.append("  peak memory MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in res["peak_mb"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,4m,smollm2")
    ap.add_argument("--config", default=None, help="benchmark this training config instead of "
                    "--models (its model, task and rollout; 'pid/*' is then its own control:)")
    ap.add_argument("--repeats", type=int, default=0, help="0 = the model's default")
    ap.add_argument("--steps", type=int, default=0, help="steps per repeat; 0 = the model's default")
    ap.add_argument("--json", default=None, help="write every number here")
    ap.add_argument("--tiny", action="store_true", help="smoke mode: minute sizes (tests)")
    ap.add_argument("--render", default=None, help="print the tables of a saved --json file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.render:
        for res in json.loads(Path(a.render).read_text()):
            print(f"== {res['model']}: skipped: {res['skipped']}" if "skipped" in res
                  else render(res, throughput_summary(res)))
        return 0
    if a.child:  # one model per process: its own peak RSS, threads and DeepSpeed state
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        print(json.dumps(child(a.child, a.repeats, a.steps, a.tiny, a.config)))
        return 0
    results, rc = [], 0
    if a.config and not Path(a.config).is_file():
        ap.error(f"--config: no such file {a.config!r}")
    for model in ([Path(a.config).stem] if a.config else a.models.split(",")):
        if not a.config and model not in MODELS:
            ap.error(f"--models: unknown model {model!r} (known: {', '.join(MODELS)})")
        reps = a.repeats or (MODELS[model][1] if not a.config else 5)
        steps = a.steps or (MODELS[model][2] if not a.config else 3)
        cmd = [sys.executable, __file__, "--child", model, "--repeats", str(reps), "--steps",
               str(steps)] + (["--tiny"] if a.tiny else []) + (
               ["--config", str(Path(a.config).resolve())] if a.config else [])
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        if proc.returncode != 0:
            print(f"== {model}: failed\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
            rc = 1
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["wall_s"] = time.perf_counter() - t0
        if "skipped" in res:
            print(f"== {model}: skipped: {res['skipped']}", flush=True)
        else:
            res["summary"] = throughput_summary(res)
            print(render(res, res["summary"]), flush=True)
        results.append(res)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
