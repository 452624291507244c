"""benchmarks/replay_controller.py: a run's readings replayed through its controller give its
logged knobs; a changed controller, fed the same readings, acts differently."""

from __future__ import annotations

import sys
from pathlib import Path

from _train_helpers import tiny_config, write_config

from regulator.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from replay_controller import replay, same_knobs


def test_a_replay_gives_the_logged_knobs_and_a_changed_rule_differs(tmp_path):
    cfg = tiny_config(tmp_path, train={"steps": 8, "save_every": 0},
                      control={"controller": "auto", "params": {},
                               "target": {"kind": "relative", "fraction": 0.8}})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 0
    steps = replay(tmp_path / "run")
    assert [s for s, _, _ in steps] == list(range(8))
    assert all(same_knobs(logged, knobs) for _, logged, knobs in steps)
    assert len({round(logged.w_pos, 6) for _, logged, _ in steps}) > 2  # the controller acted
    # without its dither the same readings give other knobs
    quiet = replay(tmp_path / "run", ["control.params.probe_amplitude=0.0", "control.params.excite=0.0"])
    assert any(not same_knobs(logged, knobs) for _, logged, knobs in quiet)
