"""A ``deepspeed.extra`` DeepSpeed refuses is one config error line, exit 2."""

from __future__ import annotations

from _train_helpers import tiny_config, write_config

from regulator.cli import main


def test_a_deepspeed_extra_deepspeed_refuses_is_one_line(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"steps": 2, "save_every": 0})
    path = write_config(tmp_path, cfg)
    code = main(["train", str(path), "--set", "deepspeed.extra={zero_optimization: {stage: abc}}"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "deepspeed.extra:" in err and "'abc'" in err and "stage" in err
