"""Checkpoints: resume reproduces an uninterrupted run; writes are atomic; safe loaders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from _train_helpers import tiny_config, write_config

from regulator.cli import main
from trainer.checkpoint import latest_checkpoint, rng_state, save_checkpoint, set_rng_state
from trainer.logging import read_metrics


def _strip_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    # 2 mini-batches x 2 epochs: the optimizer state and the ratio path matter after resume
    common = {"optim": {"lr": 3e-3, "mini_batches": 2, "epochs": 2}}
    straight = tiny_config(tmp_path / "a", train={"steps": 8, "save_every": 4}, **common)
    (tmp_path / "a").mkdir()
    assert main(["train", str(write_config(tmp_path / "a", straight))]) == 0

    half = tiny_config(tmp_path / "b", train={"steps": 4, "save_every": 2}, **common)
    (tmp_path / "b").mkdir()
    path = write_config(tmp_path / "b", half)
    assert main(["train", str(path)]) == 0
    run_b = tmp_path / "b" / "run"
    assert len(read_metrics(run_b / "metrics.jsonl")) == 4
    assert main(["train", str(path), "--resume", str(run_b), "--set", "train.steps=8"]) == 0

    a = _strip_times(read_metrics(tmp_path / "a" / "run" / "metrics.jsonl"))
    b = _strip_times(read_metrics(run_b / "metrics.jsonl"))
    assert [r["step"] for r in b] == list(range(8))
    assert a[4]["clip/frac_low"] + a[4]["clip/frac_high"] >= 0  # the field exists on both
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (ra["step"], k)
    # the run moved: entropy and knobs are not constant, so equality is not trivial
    assert len({r["entropy/measured"] for r in a}) == 8


@pytest.mark.parametrize("stage, bf16", [(0, True), (1, False), (2, True), (3, False)])
def test_resume_under_zero_and_bf16(tmp_path, stage, bf16):
    ds = {"deepspeed": {"zero_stage": stage, "bf16": bf16}}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    straight = tiny_config(tmp_path / "a", train={"steps": 4, "save_every": 2}, **ds)
    assert main(["train", str(write_config(tmp_path / "a", straight))]) == 0
    half = tiny_config(tmp_path / "b", train={"steps": 2, "save_every": 2}, **ds)
    path = write_config(tmp_path / "b", half)
    assert main(["train", str(path)]) == 0
    run_b = tmp_path / "b" / "run"
    assert main(["train", str(path), "--resume", str(run_b), "--set", "train.steps=4"]) == 0
    a = _strip_times(read_metrics(tmp_path / "a" / "run" / "metrics.jsonl"))
    b = _strip_times(read_metrics(run_b / "metrics.jsonl"))
    assert len(a) == len(b) == 4
    for ra, rb in zip(a, b):
        for k in ra:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (ra["step"], k)


def test_resume_after_crash_drops_rows_past_the_checkpoint(tmp_path):
    cfg = tiny_config(tmp_path, train={"steps": 6, "save_every": 3})
    path = write_config(tmp_path, cfg)
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    full = _strip_times(read_metrics(run / "metrics.jsonl"))
    # a crash after step 4 and in the middle of writing the step-6 checkpoint:
    shutil.rmtree(run / "checkpoints" / "step-000006")
    (run / "checkpoints" / ".tmp-step-000006").mkdir()
    (run / "checkpoints" / ".tmp-step-000006" / "model.safetensors").write_bytes(b"partial")
    (run / "checkpoints" / "latest").write_text("step-000003\n")
    lines = (run / "metrics.jsonl").read_text().splitlines()[:5]
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert latest_checkpoint(run).name == "step-000003"
    assert main(["train", str(path), "--resume", str(run)]) == 0
    again = _strip_times(read_metrics(run / "metrics.jsonl"))
    assert [r["step"] for r in again] == list(range(6))
    for ra, rb in zip(full, again):
        for k in ra:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (ra["step"], k)
    assert not (run / "checkpoints" / ".tmp-step-000006").exists()


def test_a_damaged_checkpoint_falls_back_to_the_one_before(tmp_path, capsys, caplog):
    """A torn newest checkpoint (garbage weights) is skipped with a warning for the previous
    one, and the resumed run reproduces the uninterrupted one; when none loads, exit 2 with one
    line naming --resume and every checkpoint tried, and the files are left as they were."""
    cfg = tiny_config(tmp_path, train={"steps": 6, "save_every": 3})
    path = write_config(tmp_path, cfg)
    assert main(["train", str(path)]) == 0
    run = tmp_path / "run"
    full = _strip_times(read_metrics(run / "metrics.jsonl"))
    (run / "checkpoints" / "step-000006" / "model.safetensors").write_bytes(b"not a safetensors file")
    assert main(["train", str(path), "--resume", str(run)]) == 0
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("step-000006" in w and "trying the one before it" in w for w in warned)
    capsys.readouterr()
    again = _strip_times(read_metrics(run / "metrics.jsonl"))
    assert [r["step"] for r in again] == list(range(6))
    for ra, rb in zip(full, again):
        for k in ra:
            assert rb[k] == pytest.approx(ra[k], rel=1e-5, abs=1e-7), (ra["step"], k)
    for step in ("step-000003", "step-000006"):  # the rerun rewrote step 6; now break both
        (run / "checkpoints" / step / "model.safetensors").write_bytes(b"torn")
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert main(["train", str(path), "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "--resume" in err[-1] and "step-000003" in err[-1] and "step-000006" in err[-1]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before


class _Engine:
    """The two things save_checkpoint needs from a DeepSpeed engine."""

    def __init__(self):
        self.module = torch.nn.Linear(3, 2)
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=0.1)
        self.module(torch.ones(1, 3)).sum().backward()
        self.optimizer.step()


def test_failed_write_leaves_previous_checkpoint(tmp_path, monkeypatch):
    eng = _Engine()
    save_checkpoint(tmp_path, 1, eng, {"step": 1}, rank=0)
    import safetensors.torch

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path, 2, eng, {"step": 2}, rank=0)
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "step-000001"
    assert json.loads((latest / "state.json").read_text())["step"] == 1


def test_files_load_with_safe_loaders(tmp_path):
    eng = _Engine()
    ckpt = save_checkpoint(tmp_path, 3, eng, {"step": 3}, rank=0)
    from safetensors.torch import load_file

    w = load_file(str(ckpt / "model.safetensors"))
    assert torch.equal(w["weight"], eng.module.weight.detach())
    opt = torch.load(ckpt / "optimizer-rank0.pt", weights_only=True)
    assert torch.equal(opt["state"][0]["exp_avg"], eng.optimizer.state_dict()["state"][0]["exp_avg"])
    rng = torch.load(ckpt / "rng-rank0.pt", weights_only=True)
    import random

    import numpy as np

    set_rng_state(rng)
    r1, n1, t1 = random.random(), np.random.rand(), torch.rand(1)
    set_rng_state(rng_state())  # the current state round-trips too
    r2 = random.random()
    set_rng_state(rng)
    assert (random.random(), np.random.rand(), torch.rand(1)) == (r1, n1, t1)
    assert r2 != r1
