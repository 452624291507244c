"""Nothing lost by a mistake: an existing run directory, two runs at once, a failure after an
update, a torn metrics line, a full disk, diverged weights, a controller that always faults,
rewards that exit or overflow, and resumes that would change a finished part of the run."""

from __future__ import annotations

import errno
import json
import math
import sys
import threading

import pytest
from _train_helpers import tiny_config, write_config

import trainer.logging
from regulator.cli import main
from trainer.checkpoint import latest_checkpoint
from trainer.logging import read_metrics
from trainer.run_dir import RunDirLock

STEPS = {"train": {"steps": 6, "save_every": 2}}


def _cfg(tmp_path, **sections):
    return write_config(tmp_path, tiny_config(tmp_path, **{**STEPS, **sections}))


def _rows(run):
    return read_metrics(run / "metrics.jsonl")


def _entropies(run):
    return [r["entropy/measured"] for r in _rows(run)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every recovery must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    assert main(["train", str(write_config(tmp, tiny_config(tmp, **STEPS)))]) == 0
    return _entropies(tmp / "run")


def test_an_existing_run_is_refused_and_kept(tmp_path, capsys, reference):
    path = _cfg(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(path)]) == 0
    before = (run / "metrics.jsonl").read_bytes(), sorted(p.name for p in (run / "checkpoints").iterdir())
    capsys.readouterr()
    assert main(["train", str(path), "--set", "train.steps=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.out_dir" in err and "--resume" in err and "--overwrite" in err
    assert len(err.splitlines()) == 1
    assert ((run / "metrics.jsonl").read_bytes(),
            sorted(p.name for p in (run / "checkpoints").iterdir())) == before
    # --overwrite replaces it: a 3-step run with its own checkpoint, nothing of the old one
    assert main(["train", str(path), "--set", "train.steps=3", "--overwrite"]) == 0
    assert [r["step"] for r in _rows(run)] == [0, 1, 2]
    assert latest_checkpoint(run).name == "step-000003"
    assert (latest_checkpoint(run)).is_dir()
    assert not (run / "checkpoints" / "step-000006").exists()
    assert main(["train", "--resume", str(run), "--overwrite"]) == 2


def test_a_run_that_failed_before_its_first_step_can_be_rerun(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {}\n")
    (run / "metrics.jsonl").write_text("")
    assert main(["train", str(_cfg(tmp_path, train={"steps": 2, "save_every": 0}))]) == 0
    assert len(_rows(run)) == 2


def test_a_directory_in_use_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    lock = RunDirLock(run)  # another run holds it (flock: a second open file conflicts)
    try:
        assert main(["train", str(_cfg(tmp_path))]) == 2
        assert "in use by process" in capsys.readouterr().err
        assert not (run / "metrics.jsonl").exists()
    finally:
        lock.release()
    assert main(["train", str(_cfg(tmp_path, train={"steps": 2, "save_every": 0}))]) == 0


@pytest.mark.parametrize("make", ["file", "unwritable", "too long"])
def test_an_out_dir_that_cannot_be_a_run_directory(tmp_path, capsys, make):
    if make == "file":
        (tmp_path / "run").write_text("not a folder")
    elif make == "unwritable":
        import os

        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        (tmp_path / "ro").mkdir(mode=0o500)
    cfg = tiny_config(tmp_path)
    if make == "unwritable":
        cfg["train"]["out_dir"] = str(tmp_path / "ro" / "run")
    if make == "too long":
        cfg["train"]["out_dir"] = str(tmp_path / ("x" * 300))
    assert main(["train", str(write_config(tmp_path, cfg))]) == 2
    assert "train.out_dir" in capsys.readouterr().err


def test_a_failure_after_an_update_keeps_the_good_checkpoint(tmp_path, monkeypatch, reference):
    """The tensorboard / metrics write of step 4 fails: the weights were already updated, so
    the checkpoint of step 4 (written after step 3) must stay as it was, and resume must
    reproduce the uninterrupted run."""
    real = trainer.logging.RunLogger.log

    def log(self, row):
        if row["step"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, row)

    monkeypatch.setattr(trainer.logging.RunLogger, "log", log)
    run = tmp_path / "run"
    assert main(["train", str(_cfg(tmp_path))]) == 1
    assert latest_checkpoint(run).name == "step-000004"
    assert json.loads((latest_checkpoint(run) / "state.json").read_text())["step"] == 4
    monkeypatch.setattr(trainer.logging.RunLogger, "log", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert _entropies(run) == reference


def test_a_torn_last_metrics_line_does_not_stop_resume(tmp_path, reference):
    path = _cfg(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(path), "--set", "train.steps=4"]) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "entropy/meas')  # a power cut mid-write
    assert main(["train", "--resume", str(run), "--set", "train.steps=6"]) == 0
    assert _entropies(run) == reference
    # a damaged line in the middle is an error naming the file, not a traceback
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][:10]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(Exception, match="line 3"):
        read_metrics(run / "metrics.jsonl")


def test_a_full_disk_leaves_no_partial_checkpoint_and_one_line(tmp_path, monkeypatch, caplog, reference):
    import safetensors.torch

    real = safetensors.torch.save_file
    n = {"calls": 0}

    def full(*a, **k):
        n["calls"] += 1
        if n["calls"] >= 2:  # the disk fills after the first checkpoint
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    run = tmp_path / "run"
    assert main(["train", str(_cfg(tmp_path))]) == 1
    assert "No space left on device" in caplog.text and "Traceback" not in caplog.text
    assert latest_checkpoint(run).name == "step-000002"
    assert not list((run / "checkpoints").glob(".tmp-*"))
    # resuming on the still-full disk: the same clean failure, nothing left behind
    assert main(["train", "--resume", str(run)]) == 1
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert latest_checkpoint(run).name == "step-000002"
    monkeypatch.setattr(safetensors.torch, "save_file", real)
    assert main(["train", "--resume", str(run)]) == 0
    assert _entropies(run) == reference


def test_non_finite_weights_stop_the_run_without_a_nan_checkpoint(tmp_path, caplog):
    run = tmp_path / "run"
    assert main(["train", str(_cfg(tmp_path, optim={"lr": 3e-3, "weight_decay": math.inf}))]) == 1
    assert "non-finite weights" in caplog.text
    assert latest_checkpoint(run) is None
    assert len(_rows(run)) == 0


def test_a_controller_failing_every_step_stops_the_run(tmp_path, monkeypatch, capsys, caplog):
    (tmp_path / "broken_ctl.py").write_text(
        "from regulator import Controller\n"
        "class Broken(Controller):\n"
        "    def act(self, obs):\n"
        "        raise ValueError('wrong action shape')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("broken_ctl", None)
    control = {**tiny_config(tmp_path)["control"], "controller": "broken_ctl:Broken", "params": {},
               "max_consecutive_faults": 3}
    assert main(["train", str(_cfg(tmp_path, control=control))]) == 1
    assert "3 consecutive control faults" in caplog.text and "wrong action shape" in caplog.text
    assert len(_rows(tmp_path / "run")) == 2  # steps 0 and 1 faulted and ran; step 2 stopped it
    control["max_consecutive_faults"] = 0  # 0: never stop (held knobs, counted faults)
    assert main(["train", str(_cfg(tmp_path, control=control)), "--overwrite"]) == 0
    assert _rows(tmp_path / "run")[-1]["control/faults"] == 6


def test_reward_exits_and_huge_rewards_are_contained(tmp_path, monkeypatch):
    (tmp_path / "odd_reward.py").write_text(
        "import sys\n"
        "def score(completion, example, **kw):\n"
        "    n = len(completion) % 3\n"
        "    if n == 0:\n"
        "        sys.exit(0)\n"
        "    if n == 1:\n"
        "        raise KeyboardInterrupt\n"
        "    return 1e39 if completion.strip() == example.answer else 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("odd_reward", None)
    assert main(["train", str(_cfg(tmp_path, reward={"kind": "odd_reward:score"}))]) == 0
    rows = _rows(tmp_path / "run")
    assert len(rows) == 6 and sum(r["reward/failures"] for r in rows) > 0
    assert all(math.isfinite(r["loss/policy"]) for r in rows)


def test_a_spinning_reward_under_thread_isolation_stops_the_run(tmp_path, monkeypatch, caplog):
    import trainer.rewards

    stop = threading.Event()
    (tmp_path / "spin_reward.py").write_text(
        "def score(completion, example, stop=None, **kw):\n"
        "    while not STOP.is_set():\n"
        "        pass\n"
        "    return 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("spin_reward", None)
    import spin_reward

    spin_reward.STOP = stop
    monkeypatch.setattr(trainer.rewards, "MAX_ABANDONED_CPU_S", 0.3)
    try:
        cfg = _cfg(tmp_path, reward={"kind": "spin_reward:score", "timeout": 0.05})
        assert main(["train", str(cfg)]) == 1
        assert "isolation: process" in caplog.text
    finally:
        stop.set()


def test_resume_may_not_move_what_already_ran(tmp_path, capsys):
    path = _cfg(tmp_path, control={"target": {"kind": "linear", "start": 2.0, "end": 1.0}},
                train={"steps": 4, "save_every": 2})
    run = tmp_path / "run"
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    # a linear target is laid out over train.steps: extending it would move the target
    assert main(["train", "--resume", str(run), "--set", "train.steps=8"]) == 2
    assert "train.steps" in capsys.readouterr().err
    # fewer steps than already run
    assert main(["train", "--resume", str(run), "--set", "train.steps=2"]) == 2
    assert "train.steps" in capsys.readouterr().err
    assert "steps: 4" in (run / "config.yaml").read_text()  # config.yaml untouched
    # resuming a finished run says so
    assert main(["train", "--resume", str(run)]) == 0


def test_extending_a_constant_target_run_on_resume(tmp_path, caplog):
    path = _cfg(tmp_path, train={"steps": 4, "save_every": 2})
    run = tmp_path / "run"
    assert main(["train", str(path)]) == 0
    assert main(["train", "--resume", str(run)]) == 0
    assert "the run is complete" in caplog.text
    assert main(["train", "--resume", str(run), "--set", "train.steps=6"]) == 0
    assert [r["step"] for r in _rows(run)] == list(range(6))


def test_a_resume_that_changes_the_model_names_the_key(tmp_path, capsys):
    path = _cfg(tmp_path, train={"steps": 2, "save_every": 0})
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "model.hidden=48",
                 "--set", "train.steps=4"]) == 2
    err = capsys.readouterr().err
    assert "model.hidden: expected the run's 32" in err and "got 48" in err


def test_a_resume_that_changes_the_controller_names_the_key(tmp_path, capsys):
    """The checkpoints hold the controller's state: another controller on --resume is refused
    up front (it used to fail on the checkpoint, or to drop the state silently)."""
    path = _cfg(tmp_path, train={"steps": 2, "save_every": 1})
    assert main(["train", str(path)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "control.controller=static",
                 "--set", "control.params={}", "--set", "train.steps=4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "control.controller: expected the run's" in err


@pytest.mark.parametrize("seed", [18282, 20261202, 2**63 - 1])
def test_large_seeds_run(tmp_path, seed):
    """Per-response sampling seeds of large run seeds used to overflow a torch generator."""
    assert main(["train", str(_cfg(tmp_path, train={"steps": 1, "save_every": 0, "seed": seed}))]) == 0


def test_a_plugin_rejecting_its_parameters_is_a_config_error(tmp_path, monkeypatch, capsys):
    (tmp_path / "picky_ctl.py").write_text(
        "from regulator import Controller\n"
        "class Picky(Controller):\n"
        "    def __init__(self, gain=1.0):\n"
        "        if gain <= 0:\n"
        "            raise ValueError('gain must be positive')\n"
        "    def act(self, obs):\n"
        "        return self.initial\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("picky_ctl", None)
    control = {**tiny_config(tmp_path)["control"], "controller": "picky_ctl:Picky",
               "params": {"gain": -1}}
    assert main(["train", str(_cfg(tmp_path, control=control))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "control.params" in err and "gain must be positive" in err


def test_a_run_ends_with_its_result_and_plots(tmp_path, capsys):
    """The closing lines of `regulator train` (with progress off), `regulator plot` of two runs
    overlaid, `--control FILE` and `--version`."""
    import matplotlib.image

    path = _cfg(tmp_path, train={"steps": 4, "save_every": 0})
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert "4 steps in" in out and f"-> {run}" in out
    assert f"tracking RMSE {summary['tracking']['rmse']:.3f} raw" in out
    assert f"regulator plot {run}" in out
    (tmp_path / "control.yaml").write_text("control:\n  controller: static\n  actuate: [w_pos]\n")
    cfg2 = tiny_config(tmp_path, train={"steps": 3, "save_every": 0, "out_dir": str(tmp_path / "b")})
    assert main(["train", str(write_config(tmp_path, cfg2, "b.yaml")), "--control",
                 str(tmp_path / "control.yaml")]) == 0
    assert "static on w_pos" in capsys.readouterr().out
    png = tmp_path / "both.png"
    from trainer.plot import plot_runs

    legends = plot_runs([run, tmp_path / "b"], png)
    assert legends["entropy (nats)"] == ["run: entropy", "run: entropy EMA(0.6)", "run: target",
                                         "b: entropy", "b: entropy EMA(0.6)", "b: target"]
    assert "b: w_pos" in legends["knobs"] and "run: w_neg" in legends["knobs"]
    img = matplotlib.image.imread(png)
    assert img.shape[0] > 800 and img.shape[1] > 800
    assert main(["plot", str(run)]) == 0 and (run / "plot.png").is_file()
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "regulator " in capsys.readouterr().out


def test_bench_prints_the_head_of_its_leaderboard(tmp_path, capsys):
    import yaml

    cfg = {"out_dir": str(tmp_path / "out"), "plant": "sim", "horizon": 12, "seeds": 2, "workers": 1,
           "band": False, "plant_params": {"prompts": 4, "prompts_per_step": 2, "group_size": 4},
           "targets": {"flat": {"kind": "constant", "value": 0.3}},
           "controllers": [{"label": "pid", "controller": "pid", "params": {"kp": 1.0}},
                           {"label": "grpo", "controller": "static"}]}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["bench", str(tmp_path / "b.yaml")]) == 0
    out = capsys.readouterr().out
    head = [ln.split()[1] for ln in out.splitlines() if ln.strip()[:2] in ("1.", "2.")]
    board = (tmp_path / "out" / "leaderboard.csv").read_text().splitlines()
    assert sorted(head) == ["grpo", "pid"] and len(board) > 2


def test_tensorboard_gets_the_layout_and_the_config(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    path = _cfg(tmp_path, train={"steps": 2, "save_every": 0})
    assert main(["train", str(path), "--set", "log.tensorboard=true"]) == 0
    ea = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"tensors": 0})
    ea.Reload()
    assert "custom_scalars__config__" in ea.Tags()["tensors"]  # the CUSTOM SCALARS layout
    content = ea.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["optim.lr"].number_value == pytest.approx(3e-3)
    assert info.hparams["control.controller"].string_value == "pid"


def test_the_python_api_trains_from_a_mapping_with_a_callback(tmp_path):
    from regulator.errors import ConfigError
    from trainer.api import train

    rows = []
    cfg = tiny_config(tmp_path, train={"steps": 3, "save_every": 0})
    summary = train(cfg, on_step=rows.append)
    assert [r["step"] for r in rows] == [0, 1, 2]
    logged = _rows(tmp_path / "run")
    assert [r["entropy/measured"] for r in rows] == [r["entropy/measured"] for r in logged]
    assert summary["steps"] == 3 and summary["controller"] == "pid"
    with pytest.raises(ConfigError, match="train.out_dir"):
        train(cfg)  # the run is there: refused, as on the command line
    assert train(cfg, overrides=["train.steps=2"], overwrite=True)["steps"] == 2
