"""Bad ``regulator train`` configs exit 2 with a one-line message naming the key."""

from __future__ import annotations

import pytest
from _train_helpers import tiny_config, write_config

from regulator.cli import main
from trainer.config import TrainConfig


@pytest.mark.parametrize("section, values, key", [
    ("optim", {"lrr": 1e-3}, "optim.lrr"),                          # unknown key
    ("rollout", {"prompts": "many"}, "rollout.prompts"),             # wrong type
    ("rollout", {"group_size": 1}, "rollout.group_size"),            # out of range
    ("train", {"steps": 2.5}, "train.steps"),                        # wrong type
    ("deepspeed", {"zero_stage": 4}, "deepspeed.zero_stage"),
    ("rollout", {"backend": "vlm"}, "rollout.backend"),
    ("task", {"kind": "no_such_task"}, "task.kind"),                 # unknown task
    ("reward", {"kind": "no_such_reward"}, "reward.kind"),           # unknown reward
    ("control", {"controller": "no_such_controller"}, "control.controller"),
    ("optim", {"mini_batches": 3}, "optim.mini_batches"),            # 16 sequences / 3
])
def test_bad_config_exits_2_naming_the_key(tmp_path, capsys, section, values, key):
    cfg = tiny_config(tmp_path, **{section: values})
    code = main(["train", str(write_config(tmp_path, cfg))])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert key in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_missing_data_file(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    cfg["task"] = {"kind": "jsonl", "path": str(tmp_path / "nope.jsonl")}
    assert main(["train", str(write_config(tmp_path, cfg))]) == 2
    err = capsys.readouterr().err
    assert "task.path" in err and "nope.jsonl" in err


def test_unknown_section_and_override(tmp_path, capsys):
    cfg = tiny_config(tmp_path)
    cfg["optimizer"] = {"lr": 1.0}
    assert main(["train", str(write_config(tmp_path, cfg))]) == 2
    assert "optimizer" in capsys.readouterr().err
    del cfg["optimizer"]
    path = write_config(tmp_path, cfg)
    assert main(["train", str(path), "--set", "train.seed=-1"]) == 2
    assert "train.seed" in capsys.readouterr().err


def test_resolved_config_fills_defaults(tmp_path):
    cfg = TrainConfig.from_mapping(tiny_config(tmp_path))
    assert cfg.raw["optim"]["epochs"] == 1 and cfg.raw["rollout"]["backend"] == "hf"
    assert cfg.raw["control"]["initial"]["eps_high"] == 0.2
    assert TrainConfig.from_mapping(cfg.raw).raw == cfg.raw  # round trip


def test_shipped_configs_parse():
    from pathlib import Path

    from regulator.config import load_yaml
    from trainer.tasks import make_task

    root = Path(__file__).resolve().parents[1] / "configs"
    for path in (root / "default.yaml", root / "gpu" / "qwen2.5-math-7b_paper.yaml"):
        cfg = TrainConfig.from_mapping(load_yaml(path))
        reg = cfg.control.build(cfg.train.steps)
        assert reg.target_at(0) > 0, path
    default = TrainConfig.from_mapping(load_yaml(root / "default.yaml"))
    assert default.model["name"] == "tiny-char"  # no download
    make_task(default.task)
