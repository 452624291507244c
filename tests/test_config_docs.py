"""``regulator config``: the resolved config, ``--explain KEY`` and docs/config.md."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _train_helpers import tiny_config, write_config

from regulator.cli import main
from regulator.config import ControlConfig, load_yaml
from regulator.schema import Schema
from trainer.config import TrainConfig
from trainer.config_docs import entries, markdown

ROOT = Path(__file__).resolve().parents[1]


def test_docs_config_md_is_generated_from_the_field_docs():
    """docs/config.md is ``python -m trainer.config_docs --markdown``: regenerate it after
    changing a config field (``python -m trainer.config_docs --markdown > docs/config.md``)."""
    assert (ROOT / "docs" / "config.md").read_text() == markdown()


def test_every_key_is_documented():
    for model in (TrainConfig, ControlConfig):
        for key, kind, _, doc in entries(model):
            assert doc and kind, key


def test_config_prints_the_resolved_config(tmp_path, capsys):
    path = write_config(tmp_path, tiny_config(tmp_path))
    assert main(["config", str(path), "--set", "train.steps=7"]) == 0
    out = capsys.readouterr().out
    (tmp_path / "resolved.yaml").write_text(out)
    printed = load_yaml(tmp_path / "resolved.yaml")
    cfg = TrainConfig.from_mapping(printed)
    assert cfg.train.steps == 7 and printed == cfg.raw
    assert printed["optim"]["betas"] == [0.9, 0.999]  # a default the file does not set
    assert not (tmp_path / "run").exists()


def test_config_with_a_bad_config_exits_2_with_one_line(tmp_path, capsys):
    path = write_config(tmp_path, tiny_config(tmp_path, optim={"lrr": 1.0}))
    assert main(["config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "optim.lrr" in err and "did you mean 'lr'" in err
    assert main(["config"]) == 2
    assert "CONFIG" in capsys.readouterr().err


def test_explain_a_key_and_a_section(capsys):
    assert main(["config", "--explain", "optim.lr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("optim.lr (float, default 0.001)") and "learning rate" in out
    assert len(out.strip().splitlines()) == 2
    assert main(["config", "--explain", "optim"]) == 0
    out = capsys.readouterr().out
    for key in ("optim.lr", "optim.betas", "optim.scheduler ('constant' | 'linear' | 'cosine'"):
        assert key in out
    assert "rollout." not in out
    assert main(["config", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "train.steps (int, default 200)" in out and "control.bounds" in out


@pytest.mark.parametrize("key, hint", [
    ("optim.lrr", "did you mean 'lr'"),
    ("optm.lr", "did you mean 'optim'"),
    ("optim.lr.x", "optim.lr has no sub-keys"),
])
def test_explain_an_unknown_key_exits_2(capsys, key, hint):
    assert main(["config", "--explain", key]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and hint in err, err


class _Params(Schema):
    kp: float = 1.0
    """Proportional gain (knob units per nat)."""


def test_explain_controller_params(tmp_path, capsys, monkeypatch):
    from regulator.registry import get_controller_class

    pid = get_controller_class("pid")
    path = write_config(tmp_path, tiny_config(tmp_path))  # names pid
    monkeypatch.delattr(pid, "Params", raising=False)
    assert main(["config", str(path), "--explain", "control.params.kp"]) == 0
    assert "'pid'" in (out := capsys.readouterr().out) and "docstring" in out
    monkeypatch.setattr(pid, "Params", _Params, raising=False)
    assert main(["config", str(path), "--explain", "control.params.kp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("control.params.kp (float, default 1.0)") and "Proportional" in out
    assert main(["config", str(path), "--explain", "control.params.kpp"]) == 2
    assert "did you mean 'kp'" in capsys.readouterr().err
    assert main(["config", "--explain", "control.params"]) == 0  # no CONFIG: the default, auto
    assert "'auto'" in capsys.readouterr().out


def test_config_cli_output_is_yaml_of_every_section(tmp_path, capsys):
    path = write_config(tmp_path, tiny_config(tmp_path))
    assert main(["config", str(path)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert list(printed) == ["model", "task", "reward", "rollout", "optim", "deepspeed",
                             "control", "train", "log"]


def test_explain_controller_params_picked_by_set_without_a_config(capsys):
    """``--set control.controller=pid`` alone picks whose params ``--explain`` documents."""
    assert main(["config", "--explain", "control.params.ki", "--set", "control.controller=pid"]) == 0
    assert capsys.readouterr().out.startswith("control.params.ki (float, default 0.1)")
    assert main(["config", "--explain", "control.params.ki"]) == 2  # auto (the default) has no ki
    assert "control.params.ki: expected one of the parameters of controller 'auto'" in \
        capsys.readouterr().err


def _all_schemas() -> list[type[Schema]]:
    import importlib
    import pkgutil

    for pkg in ("regulator", "controllers", "trainer", "envs"):
        for m in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
            if m.name not in ("trainer.trl",):  # needs the optional trl extra
                importlib.import_module(m.name)
    out, todo = [], list(Schema.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.split(".")[0] in ("regulator", "controllers", "trainer", "envs"):
            out.append(cls)  # not the Schemas tests define for themselves
    return out


def test_every_schema_field_is_documented():
    """Every config field of every section, kind and controller has its docstring (the docs and
    --explain are generated from them); only the tags that name a kind (``kind: Literal[...]``,
    a model's ``name``) may go without."""
    from typing import Literal, get_origin

    schemas = _all_schemas()
    assert len(schemas) > 40  # sections, kinds and controller params are all found
    missing = [f"{cls.__module__}.{cls.__qualname__}.{name}" for cls in schemas
               for name, f in cls.model_fields.items()
               if not (f.description or "").strip()
               and not (name in ("kind", "name") and get_origin(f.annotation) is Literal)]
    assert not missing, missing


def test_explain_a_kinds_key_follows_the_configured_kind(capsys, tmp_path):
    """``task.k`` is documented by the kind the config names; an unknown key lists that kind's."""
    path = write_config(tmp_path, tiny_config(tmp_path, task={"kind": "parity", "k": 4}))
    assert main(["config", "--explain", "task.k", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("task.k (int, default") and "task kind 'parity'" in out
    assert main(["config", "--explain", "reward.timeout"]) == 0  # no config: reward is exact
    assert "reward kind 'exact'" in capsys.readouterr().out
    assert main(["config", "--explain", "task.kk", str(path)]) == 2
    assert "task.kk: expected one of the keys of task kind 'parity'" in capsys.readouterr().err
    assert main(["config", "--explain", "task.k"]) == 2  # a task names no default kind
    assert "task.kind: expected a kind to document" in capsys.readouterr().err


def test_reference_lists_every_shipped_kind():
    md = markdown()
    for heading in ("## `task` by kind", "### `max_digits`", "## `reward` by kind", "### `numeric`",
                    "## `model` by name", "### `tiny-char`", "## `control.target` by kind",
                    "### `piecewise`", "## `control.params` by controller", "### `pid`"):
        assert heading in md, heading


def test_explain_model_keys_by_path_and_warmup(capsys):
    """A model given by ``path`` and the warm-up's keys are documented like every other key."""
    assert main(["config", "--explain", "model.dtype", "--set", "model.path=/some/dir"]) == 0
    assert "a model given by path" in capsys.readouterr().out
    assert main(["config", "--explain", "model.warmup.error_rate", "--set", "model.name=tiny-char"]) == 0
    assert capsys.readouterr().out.startswith("model.warmup.error_rate (float, default 0.3)")
    md = markdown()
    assert "### `path: ...`" in md and "| `warmup.error_mode` |" in md and "### `policy`" in md


def test_explain_inside_knob_mappings_takes_knob_names_only(capsys):
    assert main(["config", "--explain", "control.initial.w_pos"]) == 0
    capsys.readouterr()
    assert main(["config", "--explain", "control.initial.w_poss"]) == 2
    assert "did you mean 'w_pos'" in capsys.readouterr().err
    assert main(["config", "--explain", "control.bounds.max_delta"]) == 0
