"""Our control inside TRL's GRPOTrainer: overhead per step and entropy tracking.

The work is the "max of 5 digits" task at TRL-example scale: a random-init 128-wide, 2-layer
untied Llama over a character vocabulary, prompts "max d1 d2 d3 d4 d5 =", reward 1 when the
completion's first character is the answer, 16 prompts x 8 completions per step, 4 new tokens,
lr 1e-3 constant, no KL. Modes (each a fresh process, one thread):

- ``plain``: TRL's ``GRPOTrainer``;
- ``static``: ``RegulatedGRPOTrainer`` holding the knobs at GRPO's values (the integration's
  cost: the same work plus one Regulator call per step);
- ``control``: ``RegulatedGRPOTrainer`` with only ``target`` (the default controller).

    OMP_NUM_THREADS=1 python benchmarks/trl_integration.py --mode overhead --rounds 3 --steps 30
    OMP_NUM_THREADS=1 python benchmarks/trl_integration.py --mode tracking --steps 300 --seeds 0,1
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

ALPHABET = "0123456789 =max"


def build(mode: str, seed: int, steps: int, target: float, out: str):
    import torch
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trainer.tokenizer import build_char_tokenizer
    from trainer.trl import RegulatedGRPOTrainer

    tok = build_char_tokenizer(ALPHABET)
    rng = random.Random(seed)
    rows = []
    for _ in range(4096):
        d = [rng.randrange(10) for _ in range(5)]
        rows.append({"prompt": "max " + " ".join(map(str, d)) + " =", "answer": str(max(d))})

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
                      save_strategy="no", seed=seed, beta=0.0, disable_tqdm=True)
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
    dt = [b - a for a, b in zip(times, times[1:])][warmup:]
    ent = [h["entropy"] for h in trainer.state.log_history if "entropy" in h]
    err = [e - target for e in ent[49:]]
    return {"mode": mode, "seed": seed, "s_per_step": statistics.median(dt) if dt else math.nan,
            "regulator_s_per_step": spent[0] / max(steps, 1),
            "rmse_after_50": math.sqrt(sum(x * x for x in err) / len(err)) if err else math.nan,
            "final_entropy": ent[-1] if ent else math.nan,
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
    ap.add_argument("--mode", choices=("overhead", "tracking"), default="overhead")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--target", type=float, default=0.3)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.seed, a.steps, a.target, a.warmup)))
        return 0
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
    for seed in (int(s) for s in a.seeds.split(",")):
        res = run("control", seed, a.steps, a.target, a.warmup)
        print(f"seed {seed}: default control in TRL, target {a.target}: RMSE after step 50 "
              f"{res['rmse_after_50']:.3f} nats, final entropy {res['final_entropy']:.3f}, "
              f"{res['s_per_step'] * 1e3:.0f} ms/step, Regulator call "
              f"{res['regulator_s_per_step'] * 1e3:.2f} ms/step", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
