"""Supervised warm-up: a confident, imperfect base model; cached atomically; RNG untouched."""

import json

import pytest
import torch

from regulator.errors import ConfigError
from trainer.models import build_policy
from trainer.rewards import make_reward
from trainer.tasks import make_task
from trainer.warmup import cache_key, measure_policy, parse_spec

MODEL = {"name": "tiny-char", "hidden": 64, "layers": 2, "heads": 4}
WARM = {"steps": 150, "batch_size": 32, "lr": 5e-3, "error_rate": 0.3}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REGULATOR_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_warmup_makes_a_confident_imperfect_model_and_caches_it(cache):
    torch.set_num_threads(1)
    task = make_task({"kind": "max_digits"})
    reward = make_reward({"kind": "exact"})
    raw, tok = build_policy(MODEL, task=task, seed=0)
    before = measure_policy(raw, tok, task, reward, prompts=64)
    rng_state = torch.random.get_rng_state()
    warm, _ = build_policy({**MODEL, "warmup": WARM}, task=task, seed=0)
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the run's RNG is untouched
    after = measure_policy(warm, tok, task, reward, prompts=64)
    # right on ~70% of prompts (the rest are taught wrong), sure of itself, and it stops at EOS
    assert 0.45 <= after["accuracy"] <= 0.9, after
    assert after["entropy"] < 0.5 * before["entropy"] and after["entropy"] < 0.6, (before, after)
    assert after["length"] == pytest.approx(2.0, abs=0.3)
    folders = list((cache / "warmup").iterdir())
    assert len(folders) == 1 and (folders[0] / "model.safetensors").is_file()
    info = json.loads((folders[0] / "info.json").read_text())
    assert info["final_loss"] < info["first_loss"]
    again, _ = build_policy({**MODEL, "warmup": WARM}, task=task, seed=0)  # a cache hit
    for (k, a), b in zip(warm.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert not any(p.name.startswith(".") for p in (cache / "warmup").iterdir())  # no temp left


def test_wrong_subset_is_a_learnable_feature():
    task = make_task({"kind": "max_digits"})
    import random

    rng = random.Random(0)
    for i in range(200):
        ex = task.example("train", i)
        wrong = task.demonstration(ex, rng, 0.3) != ex.answer
        assert wrong == (int(ex.prompt[:2]) < 30)


def test_cache_key_depends_on_every_input():
    t = make_task({"kind": "max_digits"})
    s = parse_spec(WARM, "w")
    base = cache_key(MODEL, t, s, 0)
    assert base == cache_key(MODEL, make_task({"kind": "max_digits"}), parse_spec(WARM, "w"), 0)
    assert base != cache_key({**MODEL, "hidden": 32}, t, s, 0)
    assert base != cache_key(MODEL, make_task({"kind": "max_digits", "k": 6}), s, 0)
    assert base != cache_key(MODEL, t, {**s, "steps": 151}, 0)
    assert base != cache_key(MODEL, t, s, 1)
    assert base == cache_key(MODEL, t, {**s, "cache": False}, 0)


@pytest.mark.parametrize("spec,key", [
    ({"step": 3}, "model.warmup.step"),
    ({"error_rate": 1.5}, "model.warmup.error_rate"),
    ({"error_mode": "random"}, "model.warmup.error_mode"),
    (3, "model.warmup"),
])
def test_bad_warmup_specs(spec, key, cache):
    with pytest.raises(ConfigError) as e:
        build_policy({**MODEL, "warmup": spec}, task=make_task({"kind": "parity"}))
    assert e.value.key == key
