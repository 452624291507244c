"""GPU check: a bf16 ZeRO-2 GRPO step on a random 0.5B Qwen2-shaped model, and token_entropy memory.

1. GRPO step (the trainer's own pieces: ``SeededSampler`` generation with the KV cache,
   ``group_advantages``, ``measure``, ``Regulator.step``, ``update`` on a DeepSpeed ZeRO-2 bf16
   engine): per-stage seconds, generated tokens per second, peak GPU memory. Rewards are random
   bits (a random model solves nothing); what is measured is the machinery's speed.
2. ``token_entropy`` / ``token_stats`` at 8192 positions x vocab 151936 (bf16 logits): extra
   peak memory over the logits themselves and time, next to the naive log_softmax.

``--dry-run`` runs the same code at minute sizes (CPU allowed; the tests use it).
Prints one JSON object per section and a final ``{"ok": true}``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Qwen2.5-0.5B's shape (hidden 896, 24 layers, 14 heads / 2 KV heads, vocab 151936), random init
QWEN05 = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
              num_key_value_heads=2, vocab_size=151936, max_position_embeddings=4096,
              tie_word_embeddings=True)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=512, max_position_embeddings=256,
            tie_word_embeddings=True)


def _dev() -> torch.device:
    return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_reset() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def grpo_step_check(shape: dict, prompts: int, group: int, prompt_len: int, new_tokens: int,
                    steps: int, micro_batch: int) -> dict:
    """Timed GRPO steps of a random Qwen2-shaped model under DeepSpeed ZeRO-2, bf16."""
    from transformers import GenerationConfig, LogitsProcessorList, Qwen2Config, Qwen2ForCausalLM

    from regulator.config import ControlConfig, load_yaml
    from trainer.engine import build_engine, ds_config, init_distributed
    from trainer.grpo import group_advantages, measure, update
    from trainer.rollout import Rollout, SeededSampler

    init_distributed()
    dev = _dev()
    eos, pad = 2, 0
    cfg = Qwen2Config(**shape, bos_token_id=1, eos_token_id=eos, pad_token_id=pad)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(dev):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = eos, pad
    n_params = sum(p.numel() for p in model.parameters())
    n = prompts * group
    micro = micro_batch or n
    ds = ds_config({"zero_stage": 2, "bf16": True}, micro_batch=micro, grad_accum=n // micro,
                   world_size=1, grad_clip=1.0)
    engine, _ = build_engine(model, {"lr": 1e-6}, ds)
    t_build = time.perf_counter() - t0
    root = Path(__file__).resolve().parents[1]
    regulator = ControlConfig.from_mapping(load_yaml(root / "configs" / "default.yaml")["control"]
                                           ).build(steps + 1)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for step in range(steps + 1):  # step 0 warms up (kernels, allocator), not reported
        _peak_reset()
        ts = time.perf_counter()
        ids = torch.randint(3, cfg.vocab_size, (prompts, prompt_len), generator=gen)
        ids = ids.repeat_interleave(group, 0).to(dev)
        mask = torch.ones_like(ids)
        sampler = SeededSampler(list(range(step * n, (step + 1) * n)), temperature=1.0)
        gcfg = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, num_beams=1,
                                eos_token_id=[eos], pad_token_id=pad, use_cache=True)
        engine.module.eval()
        with torch.no_grad():
            out = engine.module.generate(input_ids=ids, attention_mask=mask, generation_config=gcfg,
                                         logits_processor=LogitsProcessorList([sampler]))
        engine.module.train()
        resp = out[:, prompt_len:]
        is_eos = resp == eos
        first = torch.where(is_eos.any(-1), is_eos.float().argmax(-1),
                            torch.full_like(resp[:, 0], resp.shape[1]))
        rmask = (torch.arange(resp.shape[1], device=dev)[None] <= first[:, None]).float()
        ro = Rollout(input_ids=torch.cat([ids, resp.masked_fill(rmask == 0, pad)], 1),
                     attention_mask=torch.cat([mask, rmask.long()], 1), response_mask=rmask,
                     prompt_len=prompt_len, responses=[""] * n)
        _sync()
        t_gen = time.perf_counter() - ts
        rewards = torch.randint(0, 2, (prompts, group), generator=gen).float()
        adv, _ = group_advantages(rewards)
        adv = adv.reshape(-1, 1).to(dev)
        tm = time.perf_counter()
        m = measure(engine, ro, adv, 1.0, keep_graph=micro == n, micro_batch=micro)
        _sync()
        t_meas = time.perf_counter() - tm
        tc = time.perf_counter()
        knobs = regulator.step(step, m.entropy, **m.dh)
        t_ctrl = time.perf_counter() - tc + m.stats_s
        tu = time.perf_counter()
        upd = update(engine, ro, m, adv, rmask, knobs, temperature=1.0, mini_batches=1, epochs=1,
                     micro_batch=micro, seed=step)
        _sync()
        t_upd = time.perf_counter() - tu
        t_step = time.perf_counter() - ts
        tokens = float(rmask.sum())
        rows.append({"step_s": t_step, "generate_s": t_gen, "measure_s": t_meas - m.stats_s,
                     "update_s": t_upd, "control_s": t_ctrl, "tokens": tokens,
                     "tokens_per_s": tokens / t_step, "gen_tokens_per_s": tokens / t_gen,
                     "peak_mb": _peak_mb(), "entropy": m.entropy, "loss": upd["loss/policy"]})
    timed = rows[1:]
    mean = {k: sum(r[k] for r in timed) / len(timed) for k in timed[0] if timed[0][k] is not None}
    return {"section": "grpo_step", "device": str(dev), "gpu": torch.cuda.get_device_name(0)
            if torch.cuda.is_available() else None, "params": n_params, "sequences": n,
            "prompt_len": prompt_len, "max_new_tokens": new_tokens, "micro_batch": micro,
            "zero_stage": 2, "bf16": True, "build_s": t_build, "steps": len(timed),
            "mean": mean, "peak_mb": max((r["peak_mb"] or 0.0) for r in timed) or None,
            "control_frac": mean["control_s"] / mean["step_s"]}


def entropy_memory_check(positions: int, vocab: int) -> dict:
    """Extra peak memory and time of token_entropy / token_stats / naive log_softmax."""
    from regulator import token_entropy, token_stats

    dev = _dev()
    torch.manual_seed(0)
    logits = (torch.randn(positions, vocab, device=dev) * 3).to(torch.bfloat16)
    actions = torch.randint(0, vocab, (positions,), device=dev)
    base = torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None

    def naive():
        logp = torch.log_softmax(logits.float(), -1)
        return -(logp.exp() * logp).sum(-1)

    out = {"section": "token_entropy_memory", "device": str(dev), "positions": positions,
           "vocab": vocab, "logits_mb": logits.numel() * logits.element_size() / 2**20}
    ref = None
    for name, fn in (("token_entropy", lambda: token_entropy(logits)),
                     ("token_stats", lambda: token_stats(logits, actions).entropy),
                     ("naive_log_softmax", naive)):
        fn()  # warm-up
        _peak_reset()
        t = time.perf_counter()
        h = fn()
        _sync()
        out[f"{name}_s"] = time.perf_counter() - t
        peak = _peak_mb()
        out[f"{name}_extra_mb"] = None if peak is None else peak - base
        ref = h if ref is None else ref
        out[f"{name}_max_abs_diff"] = float((h.float() - ref.float()).abs().max())
        del h
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="minute sizes, CPU allowed")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--micro-batch", type=int, default=0, help="0 = whole batch (on-policy, shared)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--positions", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=151936)
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if a.dry_run:
        shape, a.prompts, a.group, a.prompt_len, a.new_tokens, a.steps = TINY, 2, 2, 4, 3, 1
        a.positions, a.vocab = 64, 1000
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
            return 2
        shape = QWEN05
    print(json.dumps(entropy_memory_check(a.positions, a.vocab)), flush=True)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    print(json.dumps(grpo_step_check(shape, a.prompts, a.group, a.prompt_len, a.new_tokens, a.steps,
                                     a.micro_batch)), flush=True)
    print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
