"""The trainer's fast paths, locked in: forwards per step, entropy statistics from the training
forward's logits, batched KV-cached generation that stops when every sequence has ended, no
per-token Python loops (constant op counts), and the step-time metrics."""

from __future__ import annotations

import copy

import pytest
import torch
from _train_helpers import TINY
from torch.utils._python_dispatch import TorchDispatchMode

import trainer.grpo as grpo
from regulator import Knobs, predicted_entropy_change, regulated_policy_loss, token_stats
from trainer.config import TrainConfig
from trainer.run import build_session, train_step


def _session(tmp_path, **optim):
    cfg = copy.deepcopy(TINY)
    cfg["train"]["out_dir"] = str(tmp_path / "run")
    cfg["optim"] = {**cfg["optim"], **optim}
    session = build_session(TrainConfig.from_mapping(cfg))
    return session.plant, session.regulator


class _Forwards:
    """Counts the policy's forward calls: training forwards (module in train mode; a shared-prefix
    forward's continuation, the call that gets the prefix cache, is part of the same forward)
    with their grad mode, and generation forwards (eval mode) with their input shapes."""

    def __init__(self, model: torch.nn.Module):
        self.train: list[bool] = []
        self.gen: list[tuple[int, ...]] = []
        self.handle = model.register_forward_pre_hook(self._pre, with_kwargs=True)

    def _pre(self, mod, _args, kwargs):
        if not mod.training:
            self.gen.append(tuple(kwargs["input_ids"].shape))
        elif kwargs.get("past_key_values") is None:
            self.train.append(torch.is_grad_enabled())

    def close(self):
        self.handle.remove()


@pytest.mark.parametrize(("optim", "expected"), [
    ({}, [True]),                                    # on-policy: one forward, with grad
    ({"mini_batches": 2}, [False, False, True, True]),  # 2 no-grad measures + 2 updates
    ({"epochs": 2}, [False, True, True]),            # 1 no-grad measure + 2 updates
    # on-policy but 2 micro-batches: the knobs need the whole batch's entropy first, so each
    # micro-batch gets a no-grad measuring forward and a training forward (docs/throughput.md)
    ({"micro_batch_size": 8}, [False, False, True, True]),
])
def test_training_forwards_per_step(tmp_path, monkeypatch, optim, expected):
    run, regulator = _session(tmp_path, **optim)
    stats_calls = []
    real = grpo.token_stats
    monkeypatch.setattr(grpo, "token_stats", lambda logits, *a, **k: (
        stats_calls.append(logits.shape), real(logits, *a, **k))[1])
    fw = _Forwards(run.engine.module)
    try:
        row = train_step(run, regulator)
    finally:
        fw.close()
    assert fw.train == expected
    # the entropy statistics ran once per measuring forward, on that forward's logits
    assert len(stats_calls) == (expected.count(False) or 1)  # the shared forward: once
    seqs = TINY["rollout"]["prompts"] * TINY["rollout"]["group_size"]
    assert sum(s[0] for s in stats_calls) == seqs
    assert 0.0 <= row["time/control_s"] <= row["time/measure_s"] + row["time/step_s"]
    assert row["time/measure_s"] + row["time/generate_s"] + row["time/update_s"] <= row["time/step_s"]


def test_generation_is_batched_cached_and_stops_when_all_ended(tmp_path):
    run, _ = _session(tmp_path)
    model, backend = run.engine.module, run.backend
    prompts = [p for p in ("12", "345", "6", "789") for _ in range(2)]  # groups of 2
    seeds = list(range(len(prompts)))
    fw = _Forwards(model)
    try:
        ro = backend.generate(prompts, seeds)  # random init: no early EOS
        free = list(fw.gen)
        fw.gen.clear()
        eos = sorted(backend.eos)[0]

        def force_eos(_mod, _args, out):  # every sequence ends at its first token
            out.logits[..., eos] = 1e4
            return out

        h = model.register_forward_hook(force_eos)
        try:
            ro_eos = backend.generate(prompts, seeds)
        finally:
            h.remove()
    finally:
        fw.close()
    T = backend.max_new_tokens
    assert ro.response_mask.shape[1] == T and len(free) == 1 + T
    assert free[0] == (4, 2)  # the distinct prompts, once, up to their last column
    assert all(s == (len(prompts), 1) for s in free[1:])  # one batched call per token, KV cache
    assert len(fw.gen) == 2                                    # stopped: every sequence ended
    assert ro_eos.response_mask.sum(1).tolist() == [1.0] * len(prompts)


class _OpCount(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _ops(fn) -> int:
    with _OpCount() as c:
        fn()
    return c.n


@pytest.mark.parametrize("name", ["loss", "token_stats", "dh", "logprobs", "advantages"])
def test_no_per_token_python_loops(name):
    """The number of tensor ops does not grow with the number of tokens (or sequences)."""
    knobs = Knobs(1.0, 0.8, 0.2, 0.28)

    def work(b: int, t: int):
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(b, t, 11, generator=g)
        acts = torch.randint(0, 11, (b, t), generator=g)
        lp = torch.randn(b, t, generator=g).requires_grad_()
        adv, mask = torch.randn(b, 1, generator=g), torch.ones(b, t)
        return {
            "loss": lambda: regulated_policy_loss(lp, lp.detach() * 0.9, adv, mask, knobs)[0].backward(),
            "token_stats": lambda: token_stats(logits, acts, 0.7),
            "dh": lambda: predicted_entropy_change(logits[..., 0], adv, mask),
            "logprobs": lambda: grpo.sampled_logprobs(logits, acts, 0.7),
            "advantages": lambda: grpo.group_advantages(torch.rand(b, 4, generator=g)),
        }[name]

    small, large = _ops(work(2, 3)), _ops(work(16, 40))
    assert small == large > 0


def test_benchmark_smoke(tmp_path):
    """The benchmark's machinery end to end at minute sizes: four variants, stage split, ratios."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    out = tmp_path / "tp.json"
    import os

    # a fresh single process: not this test process's rendezvous (its MASTER_PORT is taken)
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    proc = subprocess.run([sys.executable, str(script), "--models", "tiny", "--tiny", "--repeats", "2",
                           "--steps", "1", "--json", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "step-time ratio pid/static (1 update)" in proc.stdout
    [res] = json.loads(out.read_text())
    table = res["summary"]["table"]
    assert set(table) == {"pid/1", "static/1", "pid/2", "static/2"}
    for m in table.values():
        parts = m["generate"] + m["old_logprob"] + m["update"] + m["control"]
        assert 0 < parts <= m["step"] * 1.0001
        assert m["tokens"] > 0 and m["tokens_per_s"] > 0 and 0 < m["control_frac"] < 1
        assert m["regulator"] > 0 and m["entropy_stats"] > 0
    for r in [*res["summary"]["ratios"].values(), *res["summary"]["cpu_ratios"].values()]:
        assert 0 < r["min"] <= r["median"] <= r["max"]
    assert len(res["load_before"]) == 3
    for r in res["summary"]["implied_ratios"].values():  # pid's control time on static's step
        assert 0 < r["min"] <= r["median"] <= r["max"]
    again = subprocess.run([sys.executable, str(script), "--render", str(out)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == 0 and "fastest" in again.stdout and "implied" in again.stdout


def test_benchmark_skips_smollm2_without_its_cache(tmp_path, monkeypatch):
    import importlib.util
    from pathlib import Path

    monkeypatch.setenv("REGULATOR_CACHE_DIR", str(tmp_path))
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("throughput_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.child("smollm2", 1, 1, tiny=False)
    assert "make smollm2" in res["skipped"]


def test_entropy_chunks_are_large_on_accelerators():
    """CPU: cache-sized chunks; an accelerator: few, large chunks (few kernel launches)."""
    from regulator.entropy import _rows_per_chunk

    v = 151936
    cpu, gpu = _rows_per_chunk(v, None, torch.device("cpu")), _rows_per_chunk(v, None, torch.device("cuda"))
    assert cpu * v <= 1 << 19 and gpu * v <= 1 << 25       # bounded temporaries (elements)
    assert -(-8192 // gpu) <= 64 < -(-8192 // cpu)         # chunks for 8k positions
    assert _rows_per_chunk(v, 7, torch.device("cuda")) == 7  # an explicit size wins


def test_throughput_script_takes_any_config(tmp_path):
    """``--config CONFIG``: the same breakdown for a user's own training config."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    cfg = tiny_config_for_throughput()
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(cfg))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    out = tmp_path / "tp.json"
    proc = subprocess.run([sys.executable, str(script), "--config", str(path), "--repeats", "1",
                           "--steps", "1", "--json", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [res] = json.loads(out.read_text())
    assert res["model"] == "mine" and "hidden: 16" in res["config"]
    assert res["sequences"] == 4 * 2


def tiny_config_for_throughput() -> dict:
    import copy

    from _train_helpers import TINY

    cfg = copy.deepcopy(TINY)
    cfg["model"] = {"name": "tiny-char", "hidden": 16, "layers": 1, "heads": 2}
    cfg["rollout"] = {**cfg["rollout"], "prompts": 4, "group_size": 2}
    return cfg
