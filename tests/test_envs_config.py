"""The envs' config models: the resolved bench config parses back to the same config, the
``control:`` defaults merge under each controller entry, and every field is documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from envs.bench_config import BenchConfig, ControlDefaults, ControllerEntry, parse_bench_config
from envs.plant_config import PlantConfig
from envs.sim_env_args import SimEnvArgs, TrainEnvArgs
from envs.spaces import OBSERVATIONS
from envs.tune import SimTuneConfig, TuneSettings, parse_tune_spec
from regulator.config import parse_yaml
from regulator.errors import ConfigError
from regulator.schema import Field, Schema, field_docs, parse

ROOT = Path(__file__).resolve().parents[1]


def _round_trip(cfg: BenchConfig) -> BenchConfig:
    return parse_bench_config(parse_yaml(yaml.safe_dump(cfg.resolved(), sort_keys=False)))


@pytest.mark.parametrize("path", sorted((ROOT / "configs/bench").glob("*.yaml")), ids=lambda p: p.name)
def test_every_bench_config_resolves_and_parses_back_equal(path):
    cfg = parse_bench_config(parse_yaml(path.read_text()))
    again = _round_trip(cfg)
    assert again == cfg
    assert again.resolved() == cfg.resolved()
    assert again.runs == cfg.runs and again.target_specs == cfg.target_specs


def test_the_resolved_config_fills_every_default():
    cfg = parse_bench_config({"out_dir": "x", "seeds": 2, "targets": {"c": 0.3},
                              "controllers": ["pid", {"label": "d"}]})
    d = cfg.resolved()
    assert set(d) == set(BenchConfig.model_fields)
    assert d["seeds"] == [0, 1] and d["regimes"] == ["pretrained"] and d["horizon"] == 300
    assert d["targets"] == {"c": {"kind": "constant", "value": 0.3}}
    assert [e["label"] for e in d["controllers"]] == ["pid", "d"]
    assert d["controllers"][1]["controller"] == "auto"
    assert d["controllers"][1]["bounds"]["w_neg"] == [0.0, 2.0]  # the controller's DEFAULT_BOUNDS
    assert set(d["controllers"][0]["initial"]) == {"w_pos", "w_neg", "eps_low", "eps_high"}


def test_a_trainer_bench_resolves_and_parses_back():
    """The resolved file of plant: trainer names its regimes; they parse back (they used to be
    refused with plant: trainer, and the file held a 'trainer_configs' key the parser refused)."""
    raw = {"out_dir": "x", "plant": "trainer", "trainer_config": {"a": "a.yaml", "b": "b.yaml"},
           "targets": {"c": 1.5}, "controllers": ["static"]}
    cfg = parse_bench_config(raw)
    assert cfg.regimes == ["a", "b"] and cfg.trainer_config_of("b") == "b.yaml"
    assert _round_trip(cfg) == cfg
    only_b = parse_bench_config({**raw, "regimes": ["b"]})
    assert {r[0] for r in only_b.runs} == {"b"}
    one = parse_bench_config({**raw, "trainer_config": "t.yaml"})
    assert one.regimes == ["trainer"] and _round_trip(one) == one
    with pytest.raises(ConfigError) as e:
        parse_bench_config({**raw, "regimes": ["c"]})
    assert e.value.key == "regimes[0]" and "did you mean" not in str(e.value)


def test_control_defaults_merge_under_each_entry():
    cfg = parse_bench_config({
        "out_dir": "x", "targets": {"c": 0.3},
        "control": {"actuate": ["w_neg"], "initial": {"w_pos": 0.5}, "bounds": {"w_neg": [0.0, 1.5]}},
        "controllers": [
            {"label": "a", "controller": "pid"},
            {"label": "b", "controller": "pid", "actuate": ["w_pos"], "initial": {"w_neg": 0.8},
             "bounds": {"w_pos": [0.0, 0.6]}},
        ]})
    a, b = cfg.controllers
    assert a.actuate == ("w_neg",) and a.initial.w_pos == 0.5 and a.bounds.range("w_neg") == (0.0, 1.5)
    assert b.actuate == ("w_pos",)
    assert (b.initial.w_pos, b.initial.w_neg) == (0.5, 0.8)
    assert b.bounds.range("w_pos") == (0.0, 0.6) and b.bounds.range("w_neg") == (0.0, 1.5)
    assert cfg.control.initial == {"w_pos": 0.5}  # the section itself stays as written
    assert _round_trip(cfg) == cfg


def test_per_regime_targets_keep_their_grouping():
    cfg = parse_bench_config({
        "out_dir": "x", "regimes": ["pretrained", "scratch"], "controllers": ["static"],
        "targets": {"pretrained": {"p": 0.3}, "scratch": {"s": {"kind": "constant", "value": 1.0}}}})
    assert cfg.targets_of("pretrained") == ["p"] and cfg.targets_of("scratch") == ["s"]
    assert cfg.target_specs == {"p": {"kind": "constant", "value": 0.3},
                                "s": {"kind": "constant", "value": 1.0}}
    assert set(cfg.resolved()["targets"]) == {"pretrained", "scratch"}
    assert _round_trip(cfg).runs == cfg.runs


class _Item(Schema):
    """Test-only: an item of the containers below."""

    label: str = ""
    """A name."""


class _Holder(Schema):
    """Test-only: sub-models inside lists, tuples, mappings and optionals."""

    items: list[_Item] = Field(default_factory=list)
    """A list of items."""
    pairs: tuple[_Item, ...] = ()
    """A tuple of items."""
    named: dict[str, _Item] = Field(default_factory=dict)
    """Items by name."""
    maybe: list[_Item] | None = None
    """Maybe a list of items."""


@pytest.mark.parametrize("data, key", [
    ({"items": [{"label": "a"}, {"labl": "b"}]}, "items[1].labl"),
    ({"pairs": ({"label": "a"}, {"labl": "b"})}, "pairs[1].labl"),
    ({"named": {"x": {"labl": "b"}}}, "named.x.labl"),
    ({"maybe": [{"labl": "b"}]}, "maybe[0].labl"),
])
def test_an_unknown_key_inside_a_list_item_lists_the_allowed_keys(data, key):
    """The holder of an unknown key is found through list indexes and mapping keys: the error
    lists the item's keys with a did-you-mean (it used to list none)."""
    with pytest.raises(ConfigError) as e:
        parse(_Holder, data, "")
    assert e.value.key == key
    assert "allowed keys: label," in str(e.value) and "did you mean 'label'?" in str(e.value)


def test_an_unknown_key_of_a_bench_controller_entry_has_a_did_you_mean():
    with pytest.raises(ConfigError) as e:
        parse_bench_config({"out_dir": "x", "targets": {"c": 0.3},
                            "controllers": [{"controller": "pid", "labl": "x"}]})
    assert e.value.key == "controllers[0].labl" and "did you mean 'label'?" in str(e.value)


def test_a_class_path_controller_gets_a_folder_name_label():
    """An entry naming ``package.module:Class`` and no label is labelled by the class (the
    whole path, which is no folder name, used to be refused as its own default label)."""
    cfg = parse_bench_config({"out_dir": "x", "targets": {"c": 0.3},
                              "controllers": [{"controller": "controllers.pid:PIDController"}, "pid"]})
    assert [e.label for e in cfg.controllers] == ["PIDController", "pid"]
    assert _round_trip(cfg) == cfg


def test_the_default_burn_in_is_shorter_than_the_horizon():
    """burn_in defaults to min(50, horizon // 6): 50 at the default horizon, and never the whole
    run of a short one (a burn_in >= horizon is an error naming it)."""
    base = {"out_dir": "x", "targets": {"c": 0.3}, "controllers": ["static"]}
    assert parse_bench_config(base).burn_in == 50
    short = parse_bench_config({**base, "horizon": 12})
    assert short.burn_in == 2 and short.resolved()["burn_in"] == 2 and _round_trip(short) == short
    assert parse_bench_config({**base, "horizon": 12, "burn_in": 11}).burn_in == 11
    with pytest.raises(ConfigError) as e:
        parse_bench_config({**base, "horizon": 12, "burn_in": 12})
    assert e.value.key == "burn_in" and "horizon (12)" in str(e.value)


def test_resume_is_a_run_option_not_a_config_key():
    cfg = parse_bench_config({"out_dir": "x", "targets": {"c": 0.3}, "controllers": ["static"]})
    cfg.resume = True
    assert cfg.resume and "resume" not in cfg.resolved()
    with pytest.raises(ConfigError) as e:
        parse_bench_config({**cfg.resolved(), "resume": True})
    assert e.value.key == "resume"


def test_a_controller_entry_is_checked_on_its_own():
    e = ControllerEntry.model_validate("pid")
    assert (e.label, e.actuate) == ("pid", ("w_pos",))
    with pytest.raises(ConfigError) as err:
        parse_bench_config({"out_dir": "x", "targets": {"c": 0.3},
                            "controllers": [{"controller": "pid", "initial": {"w_pos": 1.5}}]})
    assert err.value.key == "controllers[0].initial.w_pos"  # outside pid's default [0, 1]


def test_tune_accepts_empty_sections():
    assert parse_tune_spec({"plant": "sim", "plant_params": None}).plant_params["regime"] == "pretrained"
    raw = yaml.safe_load((ROOT / "configs/default.yaml").read_text())
    assert parse_tune_spec({**raw, "tune": None}).starts == [10]


def test_env_observation_kinds_are_the_spaces_ones():
    assert SimEnvArgs.model_fields["observation"].annotation.__args__ == OBSERVATIONS


@pytest.mark.parametrize("model", [PlantConfig, SimEnvArgs, TrainEnvArgs, BenchConfig, ControlDefaults,
                                   ControllerEntry, TuneSettings, SimTuneConfig],
                         ids=lambda m: m.__name__)
def test_every_field_has_a_docstring(model):
    undocumented = [key for key, _, _, doc in field_docs(model) if not doc]
    assert not undocumented, undocumented


def test_docs_envs_config_md_is_generated_from_the_field_docs():
    """docs/envs_config.md is what ``python -m envs.config_docs --markdown`` writes (regenerate it
    after changing a bench, tune, plant or env field), and it covers every model it lists."""
    from envs.config_docs import SECTIONS, markdown

    page = markdown()
    assert (ROOT / "docs" / "envs_config.md").read_text() == page
    for _, model, _ in SECTIONS:
        assert all(f"| `{name}` |" in page for name in model.model_fields), model.__name__
