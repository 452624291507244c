"""A short ``regulator train`` run: the run directory, every public metric name, tensorboard,
summary.json, and a reward function that raises."""

from __future__ import annotations

import json
import math

import pytest
from _train_helpers import tiny_config, write_config

from trainer.logging import SPEC_METRICS, read_metrics
from trainer.run import train_main

EXTRA_METRICS = ("control/faults", "control/clamped", "reward/failures", "entropy/dh_pos",
                 "entropy/dh_neg")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = tiny_config(tmp, train={"eval_every": 10, "eval_prompts": 8})
    assert train_main(str(write_config(tmp, cfg))) == 0
    return tmp / "run"


def test_run_directory_layout(run_dir):
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "events.jsonl"):
        assert (run_dir / name).is_file(), name
    assert any((run_dir / "tb").iterdir())
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    assert ckpts == ["step-000010", "step-000020"]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-000020"
    for f in ("model.safetensors", "optimizer-rank0.pt", "rng-rank0.pt", "state.json"):
        assert (run_dir / "checkpoints" / "step-000020" / f).is_file(), f


def test_every_metric_every_step(run_dir):
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(20))
    for r in rows:
        missing = [k for k in SPEC_METRICS + EXTRA_METRICS if k not in r]
        assert not missing, (r["step"], missing)
        assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in r.values()), r
        assert r["entropy/target"] == 1.5
        assert 0.0 <= r["reward/accuracy"] <= 1.0
        assert r["time/step_s"] >= r["time/generate_s"] > 0
    # the controller moved the actuated knobs; eps stayed at the initial values
    assert any(r["knobs/w_pos"] != 1.0 for r in rows)
    assert all(r["knobs/w_pos"] == r["knobs/w_neg"] for r in rows)  # equal gains, same initial
    assert {r["knobs/eps_low"] for r in rows} == {0.2}
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [0, 10, 19]


def test_tensorboard_has_the_same_names(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert set(SPEC_METRICS) - {"step"} <= tags
    ent = [e.value for e in acc.Scalars("entropy/measured")]
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert ent == pytest.approx([r["entropy/measured"] for r in rows], rel=1e-6)


def test_summary(run_dir):
    s = json.loads((run_dir / "summary.json").read_text())
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert s["steps"] == 20 and s["controller"] == "pid"
    assert s["initial_entropy"] == pytest.approx(rows[0]["entropy/measured"])
    for k in ("rmse", "rmse_ema", "mae", "mean_target", "rmse_rel"):
        assert k in s["tracking"]
    assert s["wall_s"] > 0


def test_raising_reward_function_does_not_stop_training(tmp_path, monkeypatch):
    mod = tmp_path / "flaky_reward_mod.py"
    mod.write_text(
        "def score(completion, example, **kw):\n"
        "    if len(completion) % 2:\n"
        "        raise RuntimeError('boom')\n"
        "    return 1.0 if completion.strip() == example.answer else 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tiny_config(tmp_path, reward={"kind": "flaky_reward_mod:score", "timeout": 5},
                      train={"steps": 4, "save_every": 0})
    assert train_main(str(write_config(tmp_path, cfg))) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 4
    assert sum(r["reward/failures"] for r in rows) > 0


def test_controller_fault_is_logged_and_training_goes_on(tmp_path, monkeypatch):
    mod = tmp_path / "faulty_ctl_mod.py"
    mod.write_text(
        "from regulator import Controller\n"
        "class Faulty(Controller):\n"
        "    def act(self, obs):\n"
        "        if obs.step == 2:\n"
        "            raise RuntimeError('sensor glitch')\n"
        "        return self.with_actuated({'w_pos': 0.5})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tiny_config(tmp_path, train={"steps": 4, "save_every": 0})
    cfg["control"] = {"controller": "faulty_ctl_mod:Faulty", "actuate": ["w_pos"],
                      "target": {"kind": "constant", "value": 1.0}}
    assert train_main(str(write_config(tmp_path, cfg))) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["control/faults"] for r in rows] == [0.0, 0.0, 1.0, 1.0]
    assert [r["knobs/w_pos"] for r in rows] == [0.5, 0.5, 0.5, 0.5]  # held at the fault
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert any(e["step"] == 2 and "sensor glitch" in e["event"] for e in events)
