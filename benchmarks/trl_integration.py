"""TRL's GRPOTrainer against our trainer on the same work, and our control inside TRL.

The work is the "max of 5 digits" task at TRL-example scale: a random-init 128-wide, 2-layer
untied Llama (HF init from ``torch.manual_seed(seed)``) over a 77-token character vocabulary,
prompts "max d1 d2 d3 d4 d5 =" (4096 from ``Random(seed)``; 512 held-out from
``Random(seed + 1_000_003)``), reward 1 when the completion's first character is the answer,
16 prompts x 8 completions per step, 4 new tokens, temperature 1, AdamW lr 1e-3 constant,
grad clip 1, advantage eps 1e-4, clip 0.2, no KL, token-level loss over the batch (TRL's
``dapo``). Each run is a fresh process with one thread. Runs (``--child``):

- ``plain``: TRL's ``GRPOTrainer``; ``ours``: ``regulator train`` with ``controller: static``;
  ``ours-full``: the same with ``rollout.shared_prefix: false`` (a forward per full sequence);
- ``static``: ``RegulatedGRPOTrainer`` holding the knobs at GRPO's values (the integration's
  cost: the same work plus one Regulator call per step);
- ``control`` / ``ours-control``: only ``target`` (the default controller), in TRL / in ours.

Modes:

    OMP_NUM_THREADS=1 python benchmarks/trl_integration.py --mode speed --rounds 3 --steps 40
    OMP_NUM_THREADS=1 python benchmarks/trl_integration.py --mode parity --steps 300 --seeds 0-9
    OMP_NUM_THREADS=1 python benchmarks/trl_integration.py --mode overhead --rounds 3 --steps 30
    OMP_NUM_THREADS=1 python benchmarks/trl_integration.py --mode tracking --steps 300 --seeds 0,1

``speed``: TRL and ours interleaved, s/step as wall time between consecutive step ends (median
after ``--warmup``), and our stage breakdown. ``parity``: final held-out greedy accuracy of
both over seeds. ``overhead``: TRL plain vs ``RegulatedGRPOTrainer``. ``tracking``: the default
control at ``--target`` inside TRL and in our trainer.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time

#: the character vocabulary (4 specials + these 73 = 77 tokens), as in TRL's own tiny examples
ALPHABET = "0123456789+-*/=(), ?:abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
EVAL_PROMPTS = 512


def make_rows(rng: random.Random, n: int) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        d = [rng.randrange(10) for _ in range(5)]
        rows.append({"prompt": "max " + " ".join(map(str, d)) + " =", "answer": str(max(d))})
    return rows


def ours_config(seed: int, steps: int, out: str, control: dict | None) -> dict:
    """Our trainer on the same work (data files written under ``out``)."""
    from pathlib import Path

    data = Path(out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", make_rows(random.Random(seed), 4096)),
                       ("eval", make_rows(random.Random(seed + 1_000_003), EVAL_PROMPTS))):
        (data / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {
        "model": {"name": "tiny-char", "hidden": 128, "layers": 2, "heads": 4, "kv_heads": 4,
                  "intermediate": 256, "max_positions": 64, "tie_embeddings": False,
                  "alphabet": ALPHABET},
        "task": {"kind": "jsonl", "path": str(data / "train.jsonl"),
                 "eval_path": str(data / "eval.jsonl")},
        "reward": {"kind": "prefix"},
        "rollout": {"prompts": 16, "group_size": 8, "max_new_tokens": 4, "temperature": 1.0,
                    "top_p": 1.0, "top_k": 0},
        "optim": {"lr": 1e-3, "betas": [0.9, 0.999], "adam_eps": 1e-8, "weight_decay": 0.0,
                  "grad_clip": 1.0, "adv_eps": 1e-4},
        "deepspeed": {"zero_stage": 0, "bf16": False},
        "control": control or {"controller": "static", "params": {}, "actuate": [],
                               "target": {"kind": "constant", "value": 0.3},
                               "initial": {"w_pos": 1.0, "w_neg": 1.0, "eps_low": 0.2,
                                           "eps_high": 0.2}},
        "train": {"steps": steps, "seed": seed, "out_dir": str(Path(out) / "run"), "save_every": 0,
                  "eval_every": steps, "eval_prompts": EVAL_PROMPTS, "threads": 1},
        "log": {"tensorboard": False, "progress": False},
    }


def run_ours(mode: str, seed: int, steps: int, target: float, warmup: int) -> dict:
    import tempfile

    from trainer.api import train

    ends: list[float] = []
    rows: list[dict] = []

    def on_step(row: dict) -> None:
        ends.append(time.perf_counter())
        rows.append(row)

    control = {"target": {"kind": "constant", "value": target}} if mode == "ours-control" else None
    with tempfile.TemporaryDirectory() as out:
        cfg = ours_config(seed, steps, out, control)
        cfg["rollout"]["shared_prefix"] = mode != "ours-full"  # ours-full: a forward per sequence
        summary = train(cfg, on_step=on_step)
    dt = [b - a for a, b in zip(ends, ends[1:])][warmup:]
    ent = [r["entropy/measured"] for r in rows]
    names = ("generate", "measure", "update", "control")
    for r in rows:  # rewards, advantages, the Regulator, bookkeeping (measure holds the H stats)
        r["time/other_s"] = r["time/step_s"] - sum(r[f"time/{k}_s"] for k in names[:3])
    stages = {k: statistics.median(r[f"time/{k}_s"] for r in rows[warmup:])
              for k in ("step", *names, "other")}
    return {"mode": mode, "seed": seed,
            "s_per_step": statistics.median(dt) if dt else math.nan, "stages_s": stages,
            "final_accuracy": summary.get("final_eval_accuracy", math.nan),
            **_tracking(ent, target)}


def _tracking(ent: list[float], target: float) -> dict:
    err = [e - target for e in ent[49:]]
    return {"rmse_after_50": math.sqrt(sum(x * x for x in err) / len(err)) if err else math.nan,
            "final_entropy": ent[-1] if ent else math.nan}


def greedy_accuracy(model, tok, seed: int) -> float:
    """Held-out greedy accuracy: the first generated character against the answer."""
    import torch

    rows = make_rows(random.Random(seed + 1_000_003), EVAL_PROMPTS)
    model.eval()
    with torch.no_grad():
        enc = tok([r["prompt"] for r in rows], return_tensors="pt", padding=True)
        out = model.generate(**enc, max_new_tokens=1, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    texts = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(t[:1] == r["answer"] for t, r in zip(texts, rows)) / len(rows)


def build(mode: str, seed: int, steps: int, target: float, out: str):
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trainer.tokenizer import build_char_tokenizer
    from trainer.trl import RegulatedGRPOTrainer

    tok = build_char_tokenizer(ALPHABET)
    rows = make_rows(random.Random(seed), 4096)

    def first_char(completions, answer, **kw):
        return [1.0 if c[:1] == a else 0.0 for c, a in zip(completions, answer)]

    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=256, max_position_embeddings=64,
        tie_word_embeddings=False, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id))
    args = GRPOConfig(output_dir=out, use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
                      num_generations=8, per_device_train_batch_size=128, max_completion_length=4,
                      temperature=1.0, top_p=1.0, top_k=0, learning_rate=1e-3,
                      lr_scheduler_type="constant", max_steps=steps, logging_steps=1, report_to="none",
                      save_strategy="no", seed=seed, beta=0.0, loss_type="dapo", epsilon=0.2,
                      scale_rewards="group", disable_tqdm=True)
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            times.append(time.perf_counter())

    kw = dict(model=model, reward_funcs=first_char, args=args, train_dataset=Dataset.from_list(rows),
              processing_class=tok, callbacks=[Clock()])
    if mode == "plain":
        trainer = GRPOTrainer(**kw)
    elif mode == "static":
        trainer = RegulatedGRPOTrainer(**kw, control={"controller": "static", "params": {},
                                                      "actuate": [], "target": target})
    else:
        trainer = RegulatedGRPOTrainer(**kw, control={"target": {"kind": "constant", "value": target}})
    return trainer, times


def child(mode: str, seed: int, steps: int, target: float, warmup: int) -> dict:
    import tempfile

    import torch

    torch.set_num_threads(1)
    if mode.startswith("ours"):
        return run_ours(mode, seed, steps, target, warmup)
    spent = [0.0]
    with tempfile.TemporaryDirectory() as out:
        trainer, times = build(mode, seed, steps, target, out)
        if hasattr(trainer, "_decide"):  # the integration's own work per step: the Regulator call
            decide = trainer._decide

            def timed(*a, **k):
                t0 = time.perf_counter()
                decide(*a, **k)
                spent[0] += time.perf_counter() - t0

            trainer._decide = timed
        trainer.train()
        accuracy = greedy_accuracy(trainer.model, trainer.processing_class, seed)
    dt = [b - a for a, b in zip(times, times[1:])][warmup:]
    ent = [h["entropy"] for h in trainer.state.log_history if "entropy" in h]
    return {"mode": mode, "seed": seed, "s_per_step": statistics.median(dt) if dt else math.nan,
            "regulator_s_per_step": spent[0] / max(steps, 1), "final_accuracy": accuracy,
            **_tracking(ent, target),
            "w_pos": [h.get("knobs/w_pos") for h in trainer.state.log_history if "knobs/w_pos" in h][-1:]}


def run(mode: str, seed: int, steps: int, target: float, warmup: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--seed", str(seed), "--steps", str(steps),
           "--target", str(target), "--warmup", str(warmup)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", choices=("speed", "parity", "overhead", "tracking"), default="speed")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seeds", default="0,1", help="comma list or a range a-b (inclusive)")
    ap.add_argument("--target", type=float, default=0.3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.seed, a.steps, a.target, a.warmup)))
        return 0
    seeds = parse_seeds(a.seeds)
    if a.mode == "speed":
        return speed(a)
    if a.mode == "parity":
        return parity(a, seeds)
    if a.mode == "overhead":
        ratios = []
        for r in range(a.rounds):  # interleaved: plain, static, plain, static ...
            order = ("plain", "static") if r % 2 == 0 else ("static", "plain")
            res = {m: run(m, 0, a.steps, a.target, a.warmup) for m in order}
            ratios.append(res["static"]["s_per_step"] / res["plain"]["s_per_step"])
            own = res["static"]["regulator_s_per_step"]
            print(f"round {r}: plain {res['plain']['s_per_step'] * 1e3:.1f} ms/step, regulated "
                  f"{res['static']['s_per_step'] * 1e3:.1f} ms/step, ratio {ratios[-1]:.3f}; "
                  f"Regulator call {own * 1e3:.2f} ms/step ({100 * own / res['plain']['s_per_step']:.2f} %)",
                  flush=True)
        print(f"regulated / plain s/step: median {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}, {max(ratios):.3f}] over {a.rounds} rounds")
        return 0
    for seed in seeds:
        res = run("control", seed, a.steps, a.target, a.warmup)
        print(f"seed {seed}: default control in TRL, target {a.target}: RMSE after step 50 "
              f"{res['rmse_after_50']:.3f} nats, final entropy {res['final_entropy']:.3f}, "
              f"{res['s_per_step'] * 1e3:.0f} ms/step, Regulator call "
              f"{res['regulator_s_per_step'] * 1e3:.2f} ms/step", flush=True)
        res = run("ours-control", seed, a.steps, a.target, a.warmup)
        print(f"seed {seed}: default control in our trainer: RMSE after step 50 "
              f"{res['rmse_after_50']:.3f} nats, final entropy {res['final_entropy']:.3f}", flush=True)
    return 0


def parse_seeds(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in text.split(",")]


def speed(a: argparse.Namespace) -> int:
    """TRL plain vs our plain GRPO (with and without shared prompt prefixes), interleaved
    rounds whose order rotates; the ratios and our stage breakdown."""
    modes = ["plain", "ours", "ours-full"]
    ratios: dict[str, list[float]] = {"ours": [], "ours-full": []}
    for r in range(a.rounds):
        order = modes[r % 3:] + modes[:r % 3]
        res = {m: run(m, 0, a.steps, a.target, a.warmup) for m in order}
        print(f"round {r}: TRL {res['plain']['s_per_step'] * 1e3:.1f} ms/step", flush=True)
        for m in ratios:
            ratios[m].append(res["plain"]["s_per_step"] / res[m]["s_per_step"])
            st = {k: v * 1e3 for k, v in res[m]["stages_s"].items()}
            print(f"  {m:9s} {res[m]['s_per_step'] * 1e3:6.1f} ms/step, speed-up {ratios[m][-1]:.2f}x;"
                  f" generate {st['generate']:.1f}, measure {st['measure']:.1f}, update "
                  f"{st['update']:.1f} (control {st['control']:.2f} of these), other {st['other']:.1f} ms",
                  flush=True)
    for m, xs in ratios.items():
        print(f"TRL s/step / {m}: median {statistics.median(xs):.2f}x "
              f"[{min(xs):.2f}, {max(xs):.2f}] over {a.rounds} rounds")
    return 0


def parity(a: argparse.Namespace, seeds: list[int]) -> int:
    """Final held-out greedy accuracy of TRL and ours over seeds (plain GRPO both)."""
    acc: dict[str, list[float]] = {"plain": [], "ours": []}
    for seed in seeds:
        for m in ("plain", "ours"):
            acc[m].append(run(m, seed, a.steps, a.target, a.warmup)["final_accuracy"])
        print(f"seed {seed}: TRL {acc['plain'][-1]:.3f}, ours {acc['ours'][-1]:.3f}", flush=True)
    nines = [sum(r["answer"] == "9" for r in make_rows(random.Random(seed + 1_000_003), EVAL_PROMPTS))
             / EVAL_PROMPTS for seed in seeds]  # the accuracy of "always answer 9"
    for m, name in (("plain", "TRL"), ("ours", "ours")):
        xs = acc[m]
        sd = statistics.stdev(xs) if len(xs) > 1 else math.nan
        trapped = sum(abs(x - n) < 1e-9 for x, n in zip(xs, nines))
        print(f"{name}: mean {statistics.mean(xs):.3f} +- {sd:.3f} (sd) over {len(xs)} seeds, "
              f"{trapped} ended on 'always 9': " + ", ".join(f"{x:.3f}" for x in xs))
    gap = statistics.mean(acc["ours"]) - statistics.mean(acc["plain"])
    if len(seeds) > 1:
        se = math.sqrt(statistics.variance(acc["ours"]) / len(seeds)
                       + statistics.variance(acc["plain"]) / len(seeds))
        print(f"ours - TRL: {gap:+.3f} (standard error {se:.3f})")
    else:
        print(f"ours - TRL: {gap:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
