"""Faults during a run: a misbehaving controller, a hanging reward function, steps with nothing to
measure, a diverged loss, SIGINT, and ``kill -9`` in the middle of a checkpoint write.

Already covered elsewhere (not repeated): a raising controller in a run (``test_train.py``), the
Regulator's unit-level fault handling (``test_registry_regulator.py``), raising / hanging /
garbage reward functions in isolation (``test_rewards.py``), SIGTERM (``test_train_signal.py``),
a failed checkpoint write and resume after a crash (``test_checkpoint.py``).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _train_helpers import tiny_config, write_config

import trainer.plant
from regulator.cli import main
from trainer.checkpoint import latest_checkpoint
from trainer.logging import read_metrics

WILD = '''
import math, os, signal
from regulator import Controller, Knobs

class Wild(Controller):
    """Scripted misbehaviour, one kind per step."""

    def act(self, obs):
        s = obs.step
        if s == 0:
            return self.initial.replace(w_pos=5.0)        # out of bounds: clamped
        if s == 1:
            return Knobs(w_pos=math.inf)                  # raises inside act (invalid Knobs)
        if s == 2:
            k = Knobs()
            object.__setattr__(k, "w_pos", math.nan)      # NaN smuggled past validation
            return k
        if s == 3:
            return {"w_pos": 0.5}                         # not Knobs
        if s == 4:
            raise RuntimeError("sensor glitch")
        return self.initial.replace(w_pos=0.25)           # sane again


class Interrupting(Controller):
    """Sends SIGINT to its own process at step 2 (as Ctrl-C would), otherwise w_pos = 0.5."""

    def act(self, obs):
        if obs.step == 2 and not os.environ.get("NO_SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
        return self.with_actuated({"w_pos": 0.5})
'''


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    (tmp_path / "fault_plugins.py").write_text(WILD)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fault_plugins", None)
    return tmp_path


def _events(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]


def test_misbehaving_controller_is_contained(plugins):
    cfg = tiny_config(plugins, train={"steps": 6, "save_every": 0})
    cfg["control"] = {"controller": "fault_plugins:Wild", "actuate": ["w_pos"],
                      "initial": {"w_pos": 0.5}, "bounds": {"w_pos": [0.0, 1.0], "max_delta": 0.5},
                      "target": {"kind": "constant", "value": 1.0}}
    assert main(["train", str(write_config(plugins, cfg))]) == 0
    run = plugins / "run"
    rows = read_metrics(run / "metrics.jsonl")
    # 5.0 -> rate limit (0.5 + 0.5) and bound 1.0; four faults hold 1.0; 0.25 -> rate limit 0.5
    assert [r["knobs/w_pos"] for r in rows] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]
    assert [r["control/faults"] for r in rows] == [0, 1, 2, 3, 4, 4]
    assert [r["control/clamped"] for r in rows] == [1, 1, 1, 1, 1, 2]
    for r in rows:  # the knobs it may not move stay put, and the update ran every step
        assert (r["knobs/w_neg"], r["knobs/eps_low"], r["knobs/eps_high"]) == (1.0, 0.2, 0.2)
        assert math.isfinite(r["loss/policy"])
    events = {e["step"]: e["event"] for e in _events(run)}
    assert set(events) == {0, 1, 2, 3, 4, 5}
    assert "clamped" in events[0] and "sensor glitch" in events[4] and "dict" in events[3]
    assert "nan" in events[2] and "fault_plugins" not in events[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["control/faults"] == 4 and summary["control/clamped"] == 2


def test_hanging_reward_function_times_out_and_training_goes_on(tmp_path, monkeypatch):
    (tmp_path / "hanging_reward_mod.py").write_text(
        "import time\n"
        "def score(completion, example, **kw):\n"
        "    if len(completion) % 2 == 0:\n"
        "        time.sleep(120)  # hangs\n"
        "    return 1.0 if completion.strip() == example.answer else 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = tiny_config(tmp_path, reward={"kind": "hanging_reward_mod:score", "timeout": 0.05},
                      train={"steps": 2, "save_every": 0})
    t0 = time.monotonic()
    assert main(["train", str(write_config(tmp_path, cfg))]) == 0
    assert time.monotonic() - t0 < 60  # 32 calls, none waited for its 120 s
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(rows) == 2 and sum(r["reward/failures"] for r in rows) > 0
    assert all(math.isfinite(r["loss/policy"]) for r in rows)


def test_steps_with_nothing_to_measure_are_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    """Step 2: every response empty (no response token). Step 4: a forward that measured a
    non-finite entropy. Both are skipped (no controller call, no update), logged, and the run
    continues; the summary leaves them out of the tracking figures."""
    import trainer.rollout

    real_backend, real_measure = trainer.rollout.make_backend, trainer.plant.measure
    calls = {"generate": 0, "measure": 0, "act": []}

    def make_backend(*a, **k):
        backend = real_backend(*a, **k)
        generate = backend.generate

        def gen(prompts, seeds, **kw):
            ro = generate(prompts, seeds, **kw)
            calls["generate"] += 1
            if calls["generate"] == 3:  # the third rollout (step 2): every response empty
                p = ro.prompt_len
                ro.response_mask.zero_()
                ro.attention_mask[:, p:] = 0
                ro.responses = [""] * len(ro.responses)
            return ro

        backend.generate = gen
        return backend

    def measure(*a, **k):
        m = real_measure(*a, **k)
        calls["measure"] += 1
        if calls["measure"] == 5:  # step 4: a diverged forward
            m.entropy = math.nan
        return m

    monkeypatch.setattr(trainer.rollout, "make_backend", make_backend)
    monkeypatch.setattr(trainer.plant, "measure", measure)
    from regulator.safety import Regulator

    real_step = Regulator.step

    def step(self, s, entropy, **metrics):
        calls["act"].append(s)
        return real_step(self, s, entropy, **metrics)

    monkeypatch.setattr(Regulator, "step", step)
    cfg = tiny_config(tmp_path, train={"steps": 6, "save_every": 0})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 0
    run = tmp_path / "run"
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(6))
    assert [r["train/skipped"] for r in rows] == [0, 0, 1, 0, 1, 0]
    assert calls["act"] == [0, 1, 3, 5]  # the controller was not asked at the skipped steps
    for s in (2, 4):
        assert math.isnan(rows[s]["entropy/measured"]) and math.isnan(rows[s]["loss/policy"])
        assert [rows[s][f"knobs/{k}"] for k in ("w_pos", "w_neg")] == \
            [rows[s - 1][f"knobs/{k}"] for k in ("w_pos", "w_neg")]  # held
        assert rows[s]["control/faults"] == 0
    assert rows[2]["response/length"] == 0
    events = {e["step"]: e["event"] for e in _events(run)}
    assert "skipped" in events[2] and "over 0 response tokens" in events[2]
    assert "skipped" in events[4] and "nan" in events[4]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_steps"] == 2 and summary["steps"] == 6
    assert math.isfinite(summary["tracking"]["rmse"])


def test_non_finite_loss_stops_without_checkpointing_the_diverged_weights(tmp_path, monkeypatch):
    real_update = trainer.plant.update
    n = {"update": 0}

    def update(*a, **k):
        out = real_update(*a, **k)
        n["update"] += 1
        if n["update"] == 4:  # step 3: the loss diverged during the update
            out["loss/policy"] = math.inf
        return out

    monkeypatch.setattr(trainer.plant, "update", update)
    cfg = tiny_config(tmp_path, train={"steps": 6, "save_every": 2})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 1
    run = tmp_path / "run"
    assert latest_checkpoint(run).name == "step-000002"  # no checkpoint of the diverged weights
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-000002"]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [0, 1, 2]


def test_sigint_writes_a_checkpoint_and_resume_finishes(plugins, monkeypatch):
    cfg = tiny_config(plugins, train={"steps": 6, "save_every": 1000})
    cfg["control"] = {"controller": "fault_plugins:Interrupting", "actuate": ["w_pos"],
                      "target": {"kind": "constant", "value": 1.0}}
    path = write_config(plugins, cfg)
    run = plugins / "run"
    assert main(["train", str(path)]) == 1  # interrupted after finishing step 2
    assert latest_checkpoint(run).name == "step-000003"
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [0, 1, 2]
    monkeypatch.setenv("NO_SIGINT", "1")
    assert main(["train", str(path), "--resume", str(run)]) == 0
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == list(range(6))
    assert (run / "summary.json").exists()


KILLABLE = '''
"""regulator train whose checkpoint write of step {step} stops half-way (for kill -9)."""
import os, sys, time
import torch
real_save = torch.save

def save(obj, f, *a, **k):
    if ".tmp-step-{step:06d}" in str(f) and "optimizer" in str(f):
        with open(f, "wb") as fh:
            fh.write(b"half a file")
        open(os.environ["PAUSED"], "w").close()
        time.sleep(600)
    return real_save(obj, f, *a, **k)

torch.save = save
from regulator.cli import main
sys.exit(main(sys.argv[1:]))
'''


def test_kill_9_during_a_checkpoint_write(tmp_path):
    """SIGKILL while step 4's checkpoint is half written: step 2's stays the latest and loads,
    and --resume continues with no duplicated or missing metrics lines."""
    steps = 6
    cfg = tiny_config(tmp_path, train={"steps": steps, "save_every": 2})
    path = write_config(tmp_path, cfg)
    run = tmp_path / "run"
    (tmp_path / "killable.py").write_text(KILLABLE.format(step=4))
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PAUSED=str(tmp_path / "paused"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                           env.get("PYTHONPATH", "")]))
    p = subprocess.Popen([sys.executable, str(tmp_path / "killable.py"), "train", str(path)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 180
        while not (tmp_path / "paused").exists():
            assert p.poll() is None, p.stderr.read()[-2000:]
            assert time.time() < deadline, "the checkpoint write never started"
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    ckpts = run / "checkpoints"
    assert (ckpts / ".tmp-step-000004" / "optimizer-rank0.pt").read_bytes() == b"half a file"
    assert latest_checkpoint(run).name == "step-000002"
    before = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in before] == [0, 1, 2, 3]  # step 3 was logged before the write

    assert main(["train", str(path), "--resume", str(run)]) == 0  # loads step-000002
    rows = read_metrics(run / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(steps))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == steps and all(json.loads(x) for x in lines)
    for old, new in zip(before[2:], rows[2:4]):  # the re-run steps equal the lost ones
        for k in old:
            if not k.startswith("time/"):
                assert new[k] == pytest.approx(old[k], rel=1e-5, abs=1e-7), k
    assert not (ckpts / ".tmp-step-000004").exists()  # the half-written folder is gone
    assert latest_checkpoint(run).name == f"step-{steps:06d}"


def test_train_env_ends_with_a_clear_error_on_a_skipped_step(tmp_path, monkeypatch):
    """EntropyTrain-v0 has no observation for a skipped step: env.step raises, naming it."""
    import gymnasium as gym

    import envs

    real_measure, n = trainer.plant.measure, {"measure": 0}

    def measure(*a, **k):
        m = real_measure(*a, **k)
        n["measure"] += 1
        if n["measure"] == 2:  # step 1
            m.entropy = math.nan
        return m

    monkeypatch.setattr(trainer.plant, "measure", measure)
    env = gym.make(envs.TRAIN_ID, config=tiny_config(tmp_path), horizon=3)
    try:
        env.reset(seed=0)
        with pytest.raises(RuntimeError, match="step 1 skipped"):
            env.step(env.action_space.sample())
    finally:
        env.close()
