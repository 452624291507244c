"""Settings TRL users expect: lr schedulers with warmup, the advantage epsilon, a prefix reward,
no checkpoints with save_every 0."""

from __future__ import annotations

import math

import pytest
from _train_helpers import tiny_config, write_config

from regulator.cli import main
from trainer.logging import read_metrics
from trainer.rewards import make_reward
from trainer.schedule import lr_factor, warmup_steps
from trainer.tasks import Example


@pytest.mark.parametrize("kind, t, total, warmup, expected", [
    ("constant", 0, 10, 0, 1.0), ("constant", 9, 10, 0, 1.0),
    ("constant", 0, 10, 4, 0.25), ("constant", 3, 10, 4, 1.0), ("constant", 4, 10, 4, 1.0),
    ("linear", 0, 10, 0, 1.0), ("linear", 5, 10, 0, 0.5), ("linear", 9, 10, 0, 0.1),
    ("linear", 1, 10, 2, 1.0), ("linear", 6, 10, 2, 0.5),
    ("cosine", 0, 10, 0, 1.0), ("cosine", 5, 10, 0, 0.5), ("cosine", 10, 10, 0, 0.0),
    ("cosine", 2, 10, 2, 1.0), ("cosine", 6, 10, 2, 0.5),
])
def test_scheduler_values(kind, t, total, warmup, expected):
    assert lr_factor(kind, t, total, warmup) == pytest.approx(expected)


def test_warmup_from_a_ratio():
    assert warmup_steps(200, 0, 0.1) == 20 and warmup_steps(200, 5, 0.1) == 5


def test_the_trainer_follows_the_schedule_and_resumes_on_it(tmp_path):
    optim = {"lr": 2e-3, "scheduler": "cosine", "warmup_steps": 2, "mini_batches": 2}
    cfg = tiny_config(tmp_path, optim=optim, train={"steps": 6, "save_every": 3})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    total = 6 * 2  # optimizer steps: steps x mini_batches
    assert [r["optim/lr"] for r in rows] == pytest.approx(
        [2e-3 * lr_factor("cosine", 2 * s, total, 2) for s in range(6)])
    # the resumed half gets the same lr and the same entropies
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    import shutil

    shutil.rmtree(tmp_path / "run" / "checkpoints" / "step-000006")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-000003\n")
    assert main(["train", "--resume", str(tmp_path / "run")]) == 0
    again = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["optim/lr"] for r in again] == [r["optim/lr"] for r in rows[3:]]
    assert [r["entropy/measured"] for r in again] == [r["entropy/measured"] for r in rows[3:]]


def test_a_bad_scheduler_names_the_key(tmp_path, capsys):
    cfg = tiny_config(tmp_path, optim={"lr": 1e-3, "scheduler": "cosin"})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 2
    assert "optim.scheduler" in capsys.readouterr().err


def test_advantage_epsilon_is_used(tmp_path):
    """A huge eps shrinks every advantage, so the first update moves the weights far less."""
    import torch

    from trainer.grpo import group_advantages

    r = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    small, _ = group_advantages(r, True, 1e-6)
    big, _ = group_advantages(r, True, 1.0)
    assert float(small.abs().max()) == pytest.approx(0.866, abs=1e-3)
    assert float(big.abs().max()) == pytest.approx(0.5 / (0.5774 + 1.0), abs=1e-3)
    cfg = tiny_config(tmp_path, optim={"lr": 3e-3, "adv_eps": 1e-4}, train={"steps": 1, "save_every": 0})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 0


def test_prefix_reward():
    fn = make_reward({"kind": "prefix"})
    ex = Example(prompt="max 3 9 1 =", answer="9")
    res = fn(["9", "9 because", " 9", "19", ""], [ex] * 5)
    assert res.rewards == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_save_every_zero_writes_no_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, train={"steps": 3, "save_every": 0})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 0
    assert not (tmp_path / "run" / "checkpoints").exists()
    assert math.isfinite(read_metrics(tmp_path / "run" / "metrics.jsonl")[-1]["entropy/measured"])


REWARD_MOD = '''
import time

def one(completion, example, **kw):
    return 1.0 if completion[:1] == example.answer else 0.0

def many(completions, examples, **kw):
    return [1.0 if c[:1] == e.answer else 0.0 for c, e in zip(completions, examples)]

def many_hangs(completions, examples, **kw):
    time.sleep(60)

def many_raises(completions, examples, **kw):
    raise ValueError("bad batch")

def many_short(completions, examples, **kw):
    return [1.0]
'''


@pytest.fixture
def reward_mod(tmp_path, monkeypatch):
    import sys

    (tmp_path / "batch_rewards.py").write_text(REWARD_MOD)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("batch_rewards", None)


def test_batched_and_in_process_rewards_equal_the_per_call_path(reward_mod):
    exs = [Example(prompt="max 1 2 =", answer=str(i % 10)) for i in range(40)]
    comps = [str((i * 7) % 10) + "x" for i in range(40)]
    per_call = make_reward({"kind": "batch_rewards:one"})(comps, exs)
    for spec in ({"kind": "batch_rewards:one", "isolation": "none"},
                 {"kind": "batch_rewards:many", "batched": True},
                 {"kind": "batch_rewards:many", "batched": True, "isolation": "none"}):
        got = make_reward(spec)(comps, exs)
        assert got.rewards == per_call.rewards and got.failures == 0, spec
    assert 0 < sum(per_call.rewards) < 40


@pytest.mark.parametrize("fn, fragment", [("many_hangs", "timeout"), ("many_raises", "bad batch"),
                                          ("many_short", "expected a list of 3")])
def test_a_failing_batched_reward_is_contained(reward_mod, fn, fragment):
    import time

    exs = [Example(prompt="p", answer="1")] * 3
    t0 = time.monotonic()
    res = make_reward({"kind": f"batch_rewards:{fn}", "batched": True, "timeout": 0.2})(["1", "2", "1"], exs)
    assert time.monotonic() - t0 < 10
    assert res.rewards == [0.0, 0.0, 0.0] and res.failures == 3 and fragment in res.errors[0]


def test_batched_rewards_are_not_for_worker_processes(reward_mod):
    from regulator.errors import ConfigError

    with pytest.raises(ConfigError, match="reward.batched"):
        make_reward({"kind": "batch_rewards:many", "batched": True, "isolation": "process"})
