"""Supervised warm-up: turn a model into a confident, imperfect "base model" before RL.

Why: GRPO from a random init collapses entropy within 30-60 steps, and the knob directions are
those of the scratch regime (docs/regimes.md §1, §2, §5). The paper's regime is a
pretrained policy whose sampled tokens are mostly confident, right on some prompts and
systematically wrong on others. A few hundred steps of teacher forcing on the task's
demonstrations (``Task.demonstration``: wrong on a fixed ``error_rate`` fraction of prompts,
in a task-typical way) give the tiny model exactly that.

Spec (``model.warmup``): ``WarmupSpec`` below. Loss: mean cross-entropy over the demonstration
tokens and the final EOS (prompt tokens are masked out). Data order and init come from ``seed``;
the global torch RNG is left untouched (``fork_rng``).

Cache: ``<cache>/warmup/<sha256[:16]>/model.safetensors`` + ``info.json``, keyed by the model
spec, the task's ``describe()``, the warm-up spec and the seed; written to a temporary folder
then renamed (atomic: a crash leaves no half cache). A cache hit loads in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from regulator.schema import Schema, parse
from trainer.tasks import Example, Task

log = logging.getLogger(__name__)

CACHE_VERSION = 1


class WarmupSpec(Schema):
    """``model.warmup``: teacher forcing on the task's demonstrations before RL."""

    steps: int = Field(300, ge=0)
    """AdamW steps on demonstrations (0 = none)."""
    lr: float = Field(3e-3, ge=0)
    """Learning rate of the warm-up."""
    batch_size: int = Field(64, ge=1)
    """Demonstrations per step."""
    error_rate: float = Field(0.3, ge=0, le=1)
    """Share of prompts whose demonstration is wrong, in a task-typical way."""
    error_mode: Literal["feature", "hash"] = "feature"
    """``feature``: the wrong subset is a learnable feature of the prompt, so the model ends
    confidently right on most prompts and confidently wrong on the rest; ``hash``: an unlearnable
    subset, so the model ends uncertain everywhere."""
    noise: float = Field(0.0, ge=0, le=1)
    """Share of demonstrations replaced by another prompt's answer (unsystematic errors)."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay of the warm-up."""
    cache: bool = True
    """Reuse a warmed model from the cache (keyed by model, task, this spec and the seed)."""


def parse_spec(spec: Any, key: str) -> dict[str, Any]:
    """The warm-up spec with every default filled in (a ConfigError names the key)."""
    return parse(WarmupSpec, spec, key).resolved()


def cache_key(model_spec: Mapping[str, Any], task: Task, spec: Mapping[str, Any], seed: int) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "model": model_spec, "task": task.describe(),
                       "warmup": {k: v for k, v in spec.items() if k != "cache"}, "seed": seed},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _example(task: Task, rng: random.Random) -> Example:
    n = task.num_examples("train")
    return task.example("train", rng.randrange(n) if n else rng.randrange(2**40))


def demo_batch(tok: Any, task: Task, rng: random.Random, batch_size: int, error_rate: float,
               noise: float, error_mode: str = "feature") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and pad)."""
    from trainer.models import format_prompt

    prompts, demos = [], []
    for _ in range(batch_size):
        ex = _example(task, rng)
        demo = task.demonstration(ex, rng, error_rate, error_mode)
        if noise and rng.random() < noise:
            demo = _example(task, rng).answer
        prompts.append(format_prompt(tok, ex.prompt))
        demos.append(demo)
    p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
    c_ids = tok(demos, add_special_tokens=False)["input_ids"]
    seqs, labels = [], []
    for p, c in zip(p_ids, c_ids):
        c = c + [tok.eos_token_id]
        seqs.append(p + c)
        labels.append([-100] * len(p) + c)
    width = max(map(len, seqs))
    ids = torch.full((batch_size, width), tok.pad_token_id, dtype=torch.long)
    lab = torch.full((batch_size, width), -100, dtype=torch.long)
    mask = torch.zeros((batch_size, width), dtype=torch.long)
    for i, (s, lb) in enumerate(zip(seqs, labels)):
        ids[i, : len(s)] = torch.tensor(s)
        lab[i, : len(lb)] = torch.tensor(lb)
        mask[i, : len(s)] = 1
    return ids, mask, lab


def train_demonstrations(model: Any, tok: Any, task: Task, spec: Mapping[str, Any], seed: int
                         ) -> dict[str, Any]:
    """Teacher-force ``spec.steps`` AdamW steps on demonstrations; returns loss figures."""
    rng = random.Random(f"warmup:{seed}")
    opt = torch.optim.AdamW(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    was_training = model.training
    model.train()
    losses, t0 = [], time.perf_counter()
    for _ in range(spec["steps"]):
        ids, mask, lab = demo_batch(tok, task, rng, spec["batch_size"], spec["error_rate"],
                                    spec["noise"], spec["error_mode"])
        loss = model(input_ids=ids, attention_mask=mask, labels=lab).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    model.train(was_training)
    tail = losses[-20:] or [float("nan")]
    return {"first_loss": losses[0] if losses else None, "final_loss": sum(tail) / len(tail),
            "seconds": round(time.perf_counter() - t0, 3)}


def _save_atomic(model: Any, folder: Path, info: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
        # tied weights share storage: keep one name per tensor (the other is re-tied on load)
        seen, unique = set(), {}
        for k, v in state.items():
            ptr = model.state_dict()[k].data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                unique[k] = v
        save_file(unique, str(tmp / "model.safetensors"))
        (tmp / "info.json").write_text(json.dumps(info, indent=1, default=str))
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first: keep its copy
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _load(model: Any, folder: Path) -> None:
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=False)
    tied = {"lm_head.weight"} if getattr(model.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"warm-up cache {folder} does not fit the model "
                           f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")


def warm_up(model: Any, tok: Any, task: Task, spec: Any, *, key: str = "model.warmup", seed: int = 0,
            model_spec: Mapping[str, Any] | None = None) -> Any:
    """The warmed model (trained now, or loaded from the cache); see the module docstring."""
    from trainer.models import cache_root

    s = parse_spec(spec, key)
    if s["steps"] == 0:
        return model
    folder = cache_root() / "warmup" / cache_key(model_spec or {}, task, s, seed)
    if s["cache"] and (folder / "model.safetensors").is_file():
        _load(model, folder)
        log.info("warm-up: loaded %s", folder)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        info = train_demonstrations(model, tok, task, s, seed)
    log.info("warm-up: %d steps in %.1f s, loss %.3f -> %.3f", s["steps"], info["seconds"],
             info["first_loss"], info["final_loss"])
    if s["cache"]:
        _save_atomic(model, folder, {"spec": s, "task": task.describe(), "model": model_spec,
                                     "seed": seed, **info})
    return model


@torch.no_grad()
def measure_policy(model: Any, tok: Any, task: Task, reward_fn: Any, *, prompts: int = 64,
                   samples: int = 1, temperature: float = 1.0, max_new_tokens: int = 32,
                   split: str = "eval", seed: int = 0) -> dict[str, float]:
    """Sampled accuracy, token-mean entropy (nats, at ``temperature``) and mean response length
    of a policy on ``prompts`` examples x ``samples`` samples. For reports and tests."""
    from regulator.entropy import token_entropy
    from trainer.models import format_prompt

    exs = [task.example(split, i) for i in range(prompts) for _ in range(samples)]
    enc = tok([format_prompt(tok, e.prompt) for e in exs], return_tensors="pt", padding=True,
              add_special_tokens=False)
    torch.manual_seed(seed)
    was_training = model.training
    model.eval()
    out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                         max_new_tokens=max_new_tokens, return_dict_in_generate=True,
                         output_logits=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model.train(was_training)
    new = out.sequences[:, enc["input_ids"].shape[1]:]
    logits = torch.stack(out.logits, dim=1)  # [B, T, V], raw (before temperature)
    # valid positions: up to and including the first EOS
    is_eos = new == tok.eos_token_id
    after = (is_eos.cumsum(1) - is_eos.long()) > 0
    valid = ~after
    ent = token_entropy(logits, temperature)
    texts = tok.batch_decode(torch.where(valid, new, tok.pad_token_id), skip_special_tokens=True)
    res = reward_fn(texts, exs)
    return {"accuracy": sum(res.correct) / len(exs),
            "entropy": float((ent * valid).sum() / valid.sum()),
            "length": float(valid.sum(1).float().mean())}
