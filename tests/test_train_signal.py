"""SIGTERM during ``regulator train``: a checkpoint, exit 1, and ``--resume`` finishes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from _train_helpers import tiny_config, write_config

from trainer.checkpoint import latest_checkpoint
from trainer.logging import read_metrics


def test_sigterm_checkpoints_and_resume_finishes(tmp_path):
    steps = 30
    cfg = tiny_config(tmp_path, train={"steps": steps, "save_every": 1000})
    path = write_config(tmp_path, cfg)
    run = tmp_path / "run"
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "regulator.cli", "train", str(path)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run / "metrics.jsonl"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1, err[-2000:]
    done = len(read_metrics(run / "metrics.jsonl"))
    assert 3 <= done < steps, "the run should have stopped early"
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == f"step-{done:06d}"
    assert "SIGTERM" in err

    r = subprocess.run(cmd + ["--resume", str(run)], env=env, capture_output=True, text=True,
                       timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_metrics(run / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(steps))
    assert (run / "summary.json").exists()
