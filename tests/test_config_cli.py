"""Config helpers, the control section, the CLI's exit codes, and the import contract."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from regulator import ConfigError
from regulator.cli import main
from regulator.config import ControlConfig, apply_overrides, load_yaml
from regulator.schema import Field, Schema, parse

ROOT = Path(__file__).resolve().parents[1]


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="CONFIG.*existing YAML file"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_yaml(tmp_path / "empty.yaml")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match="valid YAML at line"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")


def test_yaml_reads_scientific_notation_as_float(tmp_path):
    (tmp_path / "c.yaml").write_text("optim: {lr: 1e-6, eps: -2.5E+3, name: x1e3}\n")
    assert load_yaml(tmp_path / "c.yaml") == {"optim": {"lr": 1e-6, "eps": -2500.0, "name": "x1e3"}}
    assert apply_overrides({}, ["optim.lr=3e-5"]) == {"optim": {"lr": 3e-5}}


def test_overrides_and_typed_access():
    cfg = apply_overrides({"train": {"steps": 10}}, ["train.steps=20", "control.target.value=0.5",
                                                     "log.name=run a"])
    assert cfg == {"train": {"steps": 20}, "control": {"target": {"value": 0.5}},
                   "log": {"name": "run a"}}
    with pytest.raises(ConfigError, match="--set"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ConfigError, match="train.steps"):
        apply_overrides({"train": {"steps": 3}}, ["train.steps.x=1"])



class _Section(Schema):
    lr: float = 1e-3
    steps: int = Field(1, ge=1)
    seed: int = 0


def test_schema_errors_are_one_line_config_errors():
    """Every section is a Schema; ``parse`` reports the first mistake as key, expected, given."""
    assert parse(_Section, {"lr": 1}, "optim").lr == 1.0  # an integer is a valid float
    with pytest.raises(ConfigError, match=r"^optim.lr: expected a number, got 'x'$"):
        parse(_Section, {"lr": "x"}, "optim")
    with pytest.raises(ConfigError, match=r"^train.steps: expected a value >= 1, got 0$"):
        parse(_Section, {"steps": 0}, "train")
    with pytest.raises(ConfigError, match=r"^train.steps: expected an integer, got True$"):
        parse(_Section, {"steps": True}, "train")
    with pytest.raises(ConfigError, match=r"^train.steps: expected an integer, got 1.5$"):
        parse(_Section, {"steps": 1.5}, "train")
    with pytest.raises(ConfigError, match=r"^train.step: .*got 'step' \(did you mean 'steps'\?\)$"):
        parse(_Section, {"step": 1}, "train")
    with pytest.raises(ConfigError, match=r"^train: expected a mapping, got 3$"):
        parse(_Section, 3, "train")
    with pytest.raises(ConfigError, match=r"^train.lr: expected a finite number, got nan$"):
        parse(_Section, {"lr": float("nan")}, "train")


def test_control_section(tmp_path):
    cc = ControlConfig.from_mapping({
        "controller": "regulator.controller:Controller", "target": {"kind": "constant", "value": 0.3},
        "actuate": ["w_neg"], "initial": {"eps_high": 0.28}, "bounds": {"w_neg": [0.5, 1.5]},
    })
    assert cc.actuate == ("w_neg",) and cc.initial.eps_high == 0.28 and cc.bounds.w_neg == (0.5, 1.5)
    for bad, match in [
        ({"actuate": ["w_pso"]}, r"control.actuate\[0\].*did you mean 'w_pos'"),
        ({"target": {"kind": "nope"}}, r"control.target.kind"),
        ({"bounds": {"w_pos": [1, 0]}}, r"control.bounds.w_pos"),
        ({"contoller": "pid"}, r"control.contoller.*did you mean 'controller'"),
        ({"params": [1]}, r"control.params"),
    ]:
        with pytest.raises(ConfigError, match=match):
            ControlConfig.from_mapping(bad)


def test_cli_exit_codes(tmp_path, capsys):
    assert main(["controllers"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [\n")
    for command in ("train", "bench"):
        assert main([command, str(bad)]) == 2
        err = capsys.readouterr().err
        assert "config error" in err and "valid YAML at line" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_import_regulator_stays_light():
    """The control interface, controllers and envs load no torch; with trainer, no training stack."""
    code = (
        "import sys, regulator, regulator.cli, controllers, envs\n"
        "loaded = [m for m in ('torch', 'deepspeed', 'transformers', 'vllm') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "import trainer\n"
        "heavy = [m for m in ('deepspeed', 'transformers', 'vllm') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_regulator_imports_none_of_the_other_packages():
    """Dependency direction: regulator imports no controllers/trainer/envs at module level."""
    for path in (ROOT / "regulator").rglob("*.py"):
        text = path.read_text()
        for pkg in ("controllers", "trainer", "envs"):
            assert f"\nimport {pkg}" not in text and f"\nfrom {pkg}" not in text, (path, pkg)


def test_public_api_names():
    import regulator

    for name in ["Knobs", "KnobBounds", "Observation", "Controller", "register_controller",
                 "make_controller", "list_controllers", "TargetCurve", "make_target", "Regulator",
                 "regulated_policy_loss", "token_entropy", "masked_mean"]:
        assert hasattr(regulator, name), name


def test_error_shows_a_given_null_and_keeps_it_when_rekeyed():
    with pytest.raises(ConfigError, match=r"control.initial.w_pos: expected a number, got None$"):
        ControlConfig.from_mapping({"initial": {"w_pos": None}})
    bare = ConfigError("task.k", "an integer")
    assert str(bare) == "task.k: expected an integer"
    assert str(bare.with_key("x.task.k")) == "x.task.k: expected an integer"
