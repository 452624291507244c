"""Bad ``regulator train`` configs exit 2 with a one-line message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from _train_helpers import TINY, tiny_config, write_config

from regulator.cli import main
from regulator.config import load_yaml
from regulator.errors import ConfigError
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


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


def test_saved_config_loads_back_to_an_equal_config(tmp_path):
    """RUN_DIR/config.yaml (TrainConfig.raw) holds every default of every section and reads back
    through the YAML loader to the same config: also a defaulted auto controller that moves the
    clip bounds, a max_delta, an infinite eps_high and a tune: section."""
    import yaml

    from regulator.config import load_yaml

    root = Path(__file__).resolve().parents[1] / "configs"
    auto = tiny_config(tmp_path, optim={"mini_batches": 2})
    auto["control"] = {"target": 1.0, "initial": {"eps_high": float("inf")},
                       "bounds": {"max_delta": {"w_pos": 0.1}, "eps_high": [0.0, float("inf")]}}
    auto["tune"] = {"start": 3}
    for raw in (tiny_config(tmp_path), load_yaml(root / "default.yaml"), auto):
        cfg = TrainConfig.from_mapping(raw)
        path = tmp_path / "saved.yaml"
        path.write_text(yaml.safe_dump(cfg.raw, sort_keys=False))
        back = TrainConfig.from_mapping(load_yaml(path))
        assert back == cfg and back.raw == cfg.raw
        for section in ("rollout", "optim", "deepspeed", "control", "train", "log"):
            model = type(getattr(cfg, section))
            assert set(cfg.raw[section]) == set(model.model_fields), section
    cfg = TrainConfig.from_mapping(auto)
    assert cfg.control.controller == "auto"
    assert cfg.control.actuate == ("w_pos", "w_neg", "eps_low", "eps_high")
    assert cfg.raw["control"]["bounds"]["w_pos"] == [0.0, 2.0]  # auto's own bounds
    assert cfg.raw["control"]["target"] == {"kind": "constant", "value": 1.0}
    assert cfg.raw["tune"] == {"start": 3} and "tune" not in TrainConfig.from_mapping(TINY).raw


@pytest.mark.parametrize("section, values, key, given", [
    ("optim", {"betas": [0.9, 1.0]}, "optim.betas", "[0.9, 1.0]"),
    ("optim", {"scheduler": "cosin"}, "optim.scheduler", "did you mean 'cosine'"),
    ("optim", {"lr": float("nan")}, "optim.lr", "nan"),
    ("train", {"eval_samples": 2, "eval_pass_k": [1, 4]}, "train.eval_pass_k", "[1, 4]"),
    ("train", {"out_dir": ""}, "train.out_dir", "''"),
    ("log", {"backends": ["wandbb"]}, "log.backends[0]", "did you mean 'wandb'"),
    ("deepspeed", {"extra": [1]}, "deepspeed.extra", "[1]"),
    ("control", {"max_consecutive_faults": -1}, "control.max_consecutive_faults", "-1"),
    ("control", {"target": None}, "control.target", "None"),
])
def test_section_checks_name_the_key(tmp_path, section, values, key, given):
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_mapping(tiny_config(tmp_path, **{section: values}))
    assert e.value.key == key and given in str(e.value), str(e.value)


def test_empty_sections_take_the_defaults(tmp_path):
    cfg = TrainConfig.from_mapping({"model": {"name": "tiny-char"}, "task": {"kind": "max_digits"},
                                    "reward": None, "optim": None, "control": None, "log": {}})
    # a missing reward is exact matching, saved with every default of that kind
    assert cfg.reward["kind"] == "exact" and "timeout" in cfg.reward and cfg.optim.lr == 1e-3
    assert cfg.control.controller == "static" and cfg.control.actuate == ("w_pos",)
    targeted = TrainConfig.from_mapping({"model": {"name": "tiny-char"}, "task": "max_digits",
                                         "control": {"target": 0.5}})
    assert targeted.control.controller == "auto"
    with pytest.raises(ConfigError, match=r"^task: expected"):
        TrainConfig.from_mapping({"model": {"name": "tiny-char"}})
    with pytest.raises(ConfigError, match=r"^model: expected a 'name'"):  # an empty model names none
        TrainConfig.from_mapping({"model": {}, "task": "max_digits"})


def test_saved_control_params_hold_every_default_and_are_checked(tmp_path):
    """control.params are validated by the controller's Params when the config is read (not
    only when the run builds it), and RUN_DIR/config.yaml records every parameter's value."""
    cfg = TrainConfig.from_mapping(tiny_config(tmp_path, control={
        "controller": "pid", "params": {"kp": 3.0}, "target": 0.5}))
    params = cfg.resolved()["control"]["params"]
    assert params["kp"] == 3.0 and params["ki"] == 0.1 and "anti_windup" in params
    assert TrainConfig.from_mapping(cfg.resolved()).resolved() == cfg.resolved()
    for bad, key in (({"kpp": 1.0}, "control.params.kpp"), ({"kp": "x"}, "control.params.kp")):
        with pytest.raises(ConfigError) as e:
            TrainConfig.from_mapping(tiny_config(tmp_path, control={
                "controller": "pid", "params": bad, "target": 0.5}))
        assert e.value.key == key


def test_every_shipped_controller_setting_resolves_to_a_fixed_point():
    """Resolved params read back to the same params (presets and merged defaults included), for
    every controller entry in configs/ and every built-in controller's defaults."""
    from regulator.registry import list_controllers, resolve_params

    entries = []
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        data = load_yaml(path)
        control = data.get("control")
        if isinstance(control, dict) and "controller" in control:
            entries.append((control["controller"], control.get("params") or {}))
        entries += [(e.get("controller", "auto"), e.get("params") or {})
                    for e in data.get("controllers") or [] if isinstance(e, dict)]
    entries += [(n, {}) for n in list_controllers() if n not in ("bandit", "schedule", "policy")]
    assert len(entries) > 30
    for name, params in entries:
        once = resolve_params(name, params)
        assert resolve_params(name, once) == once, (name, params)
