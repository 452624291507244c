"""Two ranks on CPU (two processes, gloo): identical knobs and entropy on both ranks, equal to a
single process on the same global batch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from _train_helpers import tiny_config, write_config

from regulator.cli import main
from trainer.logging import read_metrics

STEPS = 5
COMPARE = ("entropy/measured", "entropy/target", "knobs/w_pos", "knobs/w_neg", "reward/mean",
           "reward/accuracy", "loss/policy", "tokens/pos_frac", "tokens/neg_frac")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECTIONS = {"train": {"steps": STEPS, "save_every": 0}, "rollout": {"prompts": 4, "group_size": 4},
            # a target near the initial entropy keeps the knobs inside their bounds
            "control": {"target": {"kind": "relative", "fraction": 0.98}}}


def test_two_ranks_match_each_other_and_one_process(tmp_path):
    cfg = tiny_config(tmp_path / "two", **SECTIONS)
    (tmp_path / "two").mkdir()
    path = write_config(tmp_path / "two", cfg)
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items()
               if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
        env.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
        procs.append(subprocess.Popen([sys.executable, "-m", "regulator.cli", "train", str(path)],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True))
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("two-rank run timed out")
        outs.append(out)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outs)

    run = tmp_path / "two" / "run"
    r0 = read_metrics(run / "metrics.jsonl")
    r1 = read_metrics(run / "metrics.rank1.jsonl")
    assert len(r0) == len(r1) == STEPS
    for a, b in zip(r0, r1):  # all-reduced and broadcast values: bit-identical on both ranks
        for k in ("entropy/measured", "knobs/w_pos", "knobs/w_neg", "knobs/eps_low",
                  "knobs/eps_high", "reward/accuracy", "loss/policy"):
            assert a[k] == b[k], (a["step"], k)
    assert len({r["knobs/w_pos"] for r in r0}) > 2  # the controller acted

    single = tiny_config(tmp_path / "one", **SECTIONS)
    (tmp_path / "one").mkdir()
    assert main(["train", str(write_config(tmp_path / "one", single))]) == 0
    s = read_metrics(tmp_path / "one" / "run" / "metrics.jsonl")
    for a, b in zip(r0, s):
        for k in COMPARE:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (a["step"], k)
