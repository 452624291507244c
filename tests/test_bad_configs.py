"""A table of malformed configs through the real CLI (``regulator train`` / ``regulator bench``)
and the gym envs' constructors: each exits 2 (or raises ConfigError) with one line that names the
key path, the expected form and what was given, and no traceback.

Cases already covered elsewhere (``test_train_config.py``, ``test_bench.py``,
``test_config_cli.py``) are not repeated here; this table adds the rest of the issue's list:
wrong types, unknown keys with a did-you-mean, out-of-range values, min > max, missing files,
unknown controller / task / reward / target kinds, malformed YAML, an empty file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import yaml
from _train_helpers import TINY

import envs
from regulator.cli import main
from regulator.errors import ConfigError

# (id, mutation of the tiny train config, key path, fragment of what was given, hint or None).
# A mutation is {"a.b.c": value} (set) or {"a.b.c": DEL} (delete).
DEL = object()

TRAIN_CASES: list[tuple[str, dict[str, Any], str, str, str | None]] = [
    ("unknown section", {"contol": {}}, "contol", "'contol'", "did you mean 'control'"),
    ("unknown train key", {"train.stesp": 5}, "train.stesp", "'stesp'", "did you mean 'steps'"),
    ("unknown rollout key", {"rollout.temprature": 1.0}, "rollout.temprature", "'temprature'",
     "did you mean 'temperature'"),
    ("unknown controller param", {"control.params.kpp": 1.0}, "control.params.kpp", "'kpp'",
     "did you mean 'kp'"),
    ("another controller's params", {"control.controller": "static", "control.params": {"kp": 1.0}},
     "control.params.kp", "'kp'",
     "replace them too, e.g. --set 'control.params={}'"),
    ("unknown initial knob", {"control.initial.eps_lo": 0.1}, "control.initial.eps_lo", "'eps_lo'",
     "did you mean 'eps_low'"),
    ("unknown actuated knob", {"control.actuate": ["w_pso"]}, "control.actuate[0]", "'w_pso'",
     "did you mean 'w_pos'"),
    ("misspelt controller", {"control.controller": "pdi"}, "control.controller", "'pdi'",
     "did you mean 'pid'"),
    ("controller module missing", {"control.controller": "no_such_mod_xyz:Thing"},
     "control.controller", "'no_such_mod_xyz:Thing'", "No module named"),
    ("misspelt target kind", {"control.target": {"kind": "linaer", "start": 1, "end": 0.5}},
     "control.target.kind", "'linaer'", "did you mean 'linear'"),
    ("target without value", {"control.target": {"kind": "constant"}}, "control.target.value",
     "", None),
    ("misspelt task kind", {"task.kind": "max_digit"}, "task.kind", "'max_digit'",
     "did you mean 'max_digits'"),
    ("misspelt reward kind", {"reward.kind": "exat"}, "reward.kind", "'exat'",
     "did you mean 'exact'"),
    ("misspelt model name", {"model.name": "tiny-chr"}, "model.name", "'tiny-chr'", None),
    ("bounds min > max", {"control.bounds.w_pos": [1.0, 0.5]}, "control.bounds.w_pos", "[1.0, 0.5]",
     None),
    ("bounds wrong type", {"control.bounds.w_neg": "wide"}, "control.bounds.w_neg", "'wide'", None),
    ("eps_low bound out of range", {"control.bounds.eps_low": [0.0, 1.5]}, "control.bounds.eps_low",
     "1.5", None),
    ("negative initial weight", {"control.initial.w_pos": -1.0}, "control.initial.w_pos", "-1.0",
     None),
    ("actuate not a list", {"control.actuate": 3}, "control.actuate", "3", None),
    ("params not a mapping", {"control.params": [1, 2]}, "control.params", "[1, 2]", None),
    ("control not a mapping", {"control": 3}, "control", "3", None),
    ("initial not a mapping", {"control.initial": 3}, "control.initial", "3", None),
    ("bounds as a list", {"control.bounds": [0.0, 1.0]}, "control.bounds", "[0.0, 1.0]", None),
    ("task kind as a list", {"task.kind": ["max_digits"]}, "task.kind", "['max_digits']", None),
    ("target kind as a mapping", {"control.target": {"kind": {"a": 1}}}, "control.target.kind",
     "{'a': 1}", None),
    ("zero steps", {"train.steps": 0}, "train.steps", "0", None),
    ("steps as text", {"train.steps": "ten"}, "train.steps", "'ten'", None),
    ("seed as float", {"train.seed": 1.5}, "train.seed", "1.5", None),
    ("negative learning rate", {"optim.lr": -0.1}, "optim.lr", "-0.1", None),
    ("betas of length 1", {"optim.betas": [0.9]}, "optim.betas", "[0.9]", None),
    ("zero temperature", {"rollout.temperature": 0}, "rollout.temperature", "0", None),
    ("top_p above 1", {"rollout.top_p": 1.5}, "rollout.top_p", "1.5", None),
    ("negative reward timeout", {"reward": {"kind": "exact", "timeout": -1}}, "reward.timeout",
     "-1", None),
    ("model size as text", {"model.hidden": "big"}, "model.hidden", "'big'", None),
    ("bool as text", {"log.tensorboard": "yes"}, "log.tensorboard", "'yes'", None),
    ("bool as int", {"deepspeed.bf16": 1}, "deepspeed.bf16", "1", None),
    ("missing task section", {"task": DEL}, "task", "", None),
    ("missing parquet file", {"task": {"kind": "parquet", "path": "/nonexistent/d.parquet"}},
     "task.path", "/nonexistent/d.parquet", None),
    # inputs that used to start and then fail with a traceback, or run silently wrong
    ("seed beyond 63 bits", {"train.seed": 2**64}, "train.seed", str(2**64), None),
    ("negative seed", {"train.seed": -3}, "train.seed", "-3", None),
    ("huge threads", {"train.threads": 10**7}, "train.threads", "10000000", None),
    ("model larger than memory", {"model.hidden": 300_000}, "model.hidden", "300000", "GiB"),
    ("model path with no model", {"model": {"path": "/"}}, "model.path", "'/'", None),
    ("conflicting train_batch_size", {"deepspeed.extra": {"train_batch_size": 7}},
     "deepspeed.extra.train_batch_size", "7", "16"),
    ("ignored deepspeed optimizer", {"deepspeed.extra": {"optimizer": {"type": "Adam"}}},
     "deepspeed.extra.optimizer", "'Adam'", "optim"),
    ("initial outside bounds", {"control.initial.w_pos": 3.0}, "control.initial.w_pos", "3.0",
     "[0.0, 2.0]"),
    ("piecewise target dipping below 0", {"control.target": {
        "kind": "piecewise", "points": [[0, 0.5], [10, -0.2], [20, 0.5]]}},
     "control.target.points[1]", "-0.2", None),
    ("linear target ending below 0", {"control.target": {"kind": "linear", "start": 1.0,
                                                         "end": -0.5}},
     "control.target.end", "-0.5", None),
    ("nothing to actuate", {"control.actuate": []}, "control.actuate", "[]", None),
    ("learning rate far too large", {"optim.lr": 1e4}, "optim.lr", "10000.0", None),
    ("infinite reward timeout", {"reward": {"kind": "exact", "timeout": float("inf")}},
     "reward.timeout", "inf", None),
    ("EMA that never moves", {"log.ema_alpha": 1.0}, "log.ema_alpha", "1.0", None),
    ("max_positions shorter than a prompt and response", {"model.max_positions": 16,
                                                          "rollout.max_new_tokens": 20},
     "model.max_positions", "16", None),
]


def _mutate(cfg: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(cfg)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        if value is DEL:
            node.pop(last, None)
        else:
            node[last] = value
    return out


def _check_one_line(err: str, key: str, given: str, hint: str | None) -> str:
    """The CLI's message: one line, the key path, 'expected', what was given, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert "Traceback" not in err and "config error" in line, line
    assert f"{key}: expected " in line, line
    assert given in line, line
    if hint:
        assert hint in line, line
    return line


def _tiny(tmp_path: Path) -> dict[str, Any]:
    cfg = copy.deepcopy(TINY)
    cfg["train"]["out_dir"] = str(tmp_path / "run")
    return cfg


@pytest.mark.parametrize("changes, key, given, hint",
                         [c[1:] for c in TRAIN_CASES], ids=[c[0] for c in TRAIN_CASES])
def test_bad_train_config_exits_2(tmp_path, capsys, changes, key, given, hint):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_mutate(_tiny(tmp_path), changes)))
    code = main(["train", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    _check_one_line(err, key, given, hint)
    assert not (tmp_path / "run").exists()  # nothing started


# Whole-file problems: (id, file text or None for a missing file, fragment of the message).
FILE_CASES = [
    ("malformed YAML", "train:\n  steps: 3\n   seed: 1\n", "valid YAML at line 3"),
    ("unclosed bracket", "control: {actuate: [w_pos\n", "valid YAML at line"),
    ("empty file", "", "empty file"),
    ("only a comment", "# nothing here\n", "empty file"),
    ("a list, not a mapping", "- train\n- control\n", "a YAML mapping of sections, got 'list'"),
    ("missing file", None, "an existing YAML file"),
    ("duplicate section", "train: {steps: 2}\ntrain: {steps: 3}\n", "duplicate key 'train'"),
    ("duplicate nested key", "train:\n  steps: 2\n  steps: 3\n", "duplicate key 'steps'"),
    ("not UTF-8", b"train: {steps: 2}\n# \xff\xfe\n", "UTF-8"),
]


@pytest.mark.parametrize("command", ["train", "bench"])
@pytest.mark.parametrize("text, fragment", [c[1:] for c in FILE_CASES],
                         ids=[c[0] for c in FILE_CASES])
def test_bad_file_exits_2(tmp_path, capsys, command, text, fragment):
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    assert main([command, str(path)]) == 2
    err = capsys.readouterr().err
    line = _check_one_line(err, "CONFIG", "", None)
    assert fragment in line and line.startswith(f"regulator {command}: "), line


@pytest.mark.parametrize("argv, key, given", [
    (["--set", "train.steps"], "--set", "'train.steps'"),
    (["--set", "train.steps.max=3"], "train.steps", "20"),
    (["--set", "control.target.kind=cosin"], "control.target.kind", "'cosin'"),
    (["--resume", "/nonexistent/run"], "--resume", "'/nonexistent/run'"),
])
def test_bad_command_line_exits_2(tmp_path, capsys, argv, key, given):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_tiny(tmp_path)))
    assert main(["train", str(path), *argv]) == 2
    _check_one_line(capsys.readouterr().err, key, given, None)


def _bench(tmp_path: Path) -> dict[str, Any]:
    return {
        "out_dir": str(tmp_path / "out"), "plant": "sim", "horizon": 4, "seeds": 1, "workers": 1,
        "plant_params": {"prompts": 4, "prompts_per_step": 2, "group_size": 4},
        "targets": {"flat": {"kind": "constant", "value": 0.3}},
        "controllers": [{"label": "pid", "controller": "pid", "params": {"kp": 1.0}}],
    }


BENCH_CASES = [
    ("zero horizon", {"horizon": 0}, "horizon", "0", None),
    ("seeds as text", {"seeds": "five"}, "seeds", "'five'", None),
    ("negative burn-in", {"burn_in": -1}, "burn_in", "-1", None),
    ("zero workers", {"workers": 0}, "workers", "0", None),
    ("no out_dir", {"out_dir": DEL}, "out_dir", "", None),
    ("misspelt target kind", {"targets": {"x": {"kind": "cosin", "start": 1, "end": 0}}},
     "targets.x.kind", "'cosin'", "did you mean 'cosine'"),
    ("bounds min > max", {"control": {"bounds": {"w_pos": [1.0, 0.0]}}}, "control.bounds.w_pos",
     "[1.0, 0.0]", None),
    ("actuate a number", {"control": {"actuate": 1}}, "control.actuate", "1", None),
    ("misspelt default knob", {"control": {"actuate": ["wpos"]}}, "control.actuate[0]", "'wpos'",
     "did you mean 'w_pos'"),
    ("betas as text", {"plant_params": {"betas": ["a", "b"]}}, "plant_params.betas", "['a', 'b']",
     None),
    ("misspelt plant field", {"plant_params": {"lrr": 0.1}}, "plant_params.lrr", "'lrr'",
     "did you mean 'lr'"),
    ("misspelt actuated knob", {"controllers": [{"controller": "pid", "actuate": ["w_ng"]}]},
     "controllers[0].actuate[0]", "'w_ng'", "did you mean 'w_neg'"),
    ("misspelt controller", {"controllers": [{"controller": "bang_bnag"}]},
     "controllers[0].controller", "'bang_bnag'", "did you mean 'bang_bang'"),
    ("bad controller param value", {"controllers": [{"controller": "pid", "params": {"kp": "x"}}]},
     "controllers[0].params.kp", "'x'", None),
    ("betas above 1", {"plant_params": {"betas": [1.5, 0.9]}}, "plant_params.betas", "1.5", None),
    ("repeated seed", {"seeds": [0, 0]}, "seeds", "[0, 0]", None),
    ("label escaping the run folder", {"controllers": [{"label": "..", "controller": "pid"}]},
     "controllers[0].label", "'..'", None),
    ("label with a slash", {"controllers": [{"label": "a/b", "controller": "pid"}]},
     "controllers[0].label", "'a/b'", None),
    ("target name escaping the run folder", {"targets": {"..": {"kind": "constant", "value": 0.3}}},
     "targets", "'..'", None),
]


@pytest.mark.parametrize("changes, key, given, hint", [c[1:] for c in BENCH_CASES],
                         ids=[c[0] for c in BENCH_CASES])
def test_bad_bench_config_exits_2(tmp_path, capsys, changes, key, given, hint):
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(_mutate(_bench(tmp_path), changes)))
    code = main(["bench", str(path)])
    err = capsys.readouterr().err
    assert code == 2, err
    _check_one_line(err, key, given, hint)
    assert not (tmp_path / "out").exists()


ENV_CASES = [
    ("zero horizon", {"horizon": 0}, "horizon", "0", None),
    ("actuate a number", {"actuate": 1}, "actuate", "1", None),
    ("misspelt actuated knob", {"actuate": ["w_pso"]}, "actuate[0]", "'w_pso'",
     "did you mean 'w_pos'"),
    ("misspelt target kind", {"target": {"kind": "linaer", "start": 1, "end": 0}}, "target.kind",
     "'linaer'", "did you mean 'linear'"),
    ("bounds min > max", {"bounds": {"w_pos": [1.0, 0.0]}}, "bounds.w_pos", "[1.0, 0.0]", None),
    ("negative initial weight", {"initial": {"w_neg": -2.0}}, "initial.w_neg", "-2.0", None),
    ("misspelt plant field", {"plant": {"lrr": 0.1}}, "plant.lrr", "'lrr'", "did you mean 'lr'"),
    ("unknown regime", {"regime": "pretrain"}, "plant.regime", "'pretrain'",
     "did you mean 'pretrained'"),
    ("infinite bound", {"bounds": {"w_pos": [0.0, float("inf")]}}, "bounds.w_pos", "inf", None),
    ("betas above 1", {"plant": {"betas": [1.5, 0.9]}}, "plant.betas", "1.5", None),
    ("infinite plant lr", {"plant": {"lr": float("inf")}}, "plant.lr", "inf", None),
    ("horizon as text", {"horizon": "ten"}, "horizon", "'ten'", None),
    ("fractional horizon", {"horizon": 2.7}, "horizon", "2.7", None),
    ("misspelt keyword", {"regim": "scratch"}, "regim", "'regim'", "did you mean 'regime'"),
]


@pytest.mark.parametrize("num_envs", [0, -2, "two", 2.5])
def test_bad_num_envs_raise_config_error(num_envs):
    with pytest.raises(ConfigError) as e:
        gym.make_vec(envs.SIM_ID, num_envs=num_envs, vectorization_mode="vector_entry_point")
    assert e.value.key == "num_envs" and repr(num_envs) in str(e.value)


@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize("kwargs, key, given, hint", [c[1:] for c in ENV_CASES],
                         ids=[c[0] for c in ENV_CASES])
def test_bad_sim_env_kwargs_raise_config_error(vector, kwargs, key, given, hint):
    with pytest.raises(ConfigError) as e:
        if vector:
            gym.make_vec(envs.SIM_ID, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
        else:
            gym.make(envs.SIM_ID, **kwargs)
    msg = str(e.value)
    assert e.value.key == key and len(msg.splitlines()) == 1, msg
    assert msg.startswith(f"{key}: expected ") and given in msg, msg
    if hint:
        assert hint in msg, msg


@pytest.mark.parametrize("changes, key, given", [
    ({"optim.lrr": 1e-3}, "optim.lrr", "'lrr'"),
    ({"control.bounds.w_pos": [2.0, 1.0]}, "control.bounds.w_pos", "[2.0, 1.0]"),
    ({"task.kind": "max_digit"}, "task.kind", "'max_digit'"),
])
def test_bad_train_env_config_raises_the_cli_error(tmp_path, capsys, changes, key, given):
    """EntropyTrain-v0's constructor validates with the same code as ``regulator train``."""
    cfg = _mutate(_tiny(tmp_path), changes)
    with pytest.raises(ConfigError) as e:
        env = gym.make(envs.TRAIN_ID, config=cfg)
        env.reset(seed=0)  # task / reward are checked when the run is built
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path)]) == 2
    line = _check_one_line(capsys.readouterr().err, key, given, None)
    assert line.endswith(str(e.value)), (line, str(e.value))


def test_same_message_from_train_bench_and_env(tmp_path, capsys):
    """One target validator: the message after the key prefix is identical everywhere."""
    spec = {"kind": "piecewise", "points": [[0, 0.5], [5]]}
    cfg = _mutate(_tiny(tmp_path), {"control.target": spec})
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "t.yaml")]) == 2
    train_msg = capsys.readouterr().err.strip()
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(_mutate(_bench(tmp_path), {"targets": {"x": spec}})))
    assert main(["bench", str(tmp_path / "b.yaml")]) == 2
    bench_msg = capsys.readouterr().err.strip()
    with pytest.raises(ConfigError) as e:
        gym.make(envs.SIM_ID, target=spec)
    env_msg = str(e.value)
    assert env_msg.startswith("target.points[1]: expected "), env_msg
    tail = env_msg.removeprefix("target.points[1]")
    assert train_msg.endswith("control.target.points[1]" + tail), train_msg
    assert bench_msg.endswith("targets.x.points[1]" + tail), bench_msg

