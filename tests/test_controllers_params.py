"""Built-in controllers: registration, documented params, bad params, presets, reset checks."""

from __future__ import annotations

import math

import pytest

from controllers import static as static_mod
from regulator import ConfigError, KnobBounds, Knobs, Observation, Regulator, make_controller
from regulator.config import ControlConfig
from regulator.registry import (
    controller_origins,
    get_controller_class,
    list_controllers,
    parameter_names,
)
from regulator.schema import field_docs

BUILTINS = ("static", "schedule", "pid", "bang_bang", "bandit")


def test_all_five_names_are_registered_as_builtins():
    names = list_controllers()
    origins = controller_origins()
    for name in BUILTINS:
        assert name in names
        assert origins[name].startswith("controllers.")


@pytest.mark.parametrize("name", (*BUILTINS, "auto", "predictive", "policy"))
def test_every_parameter_is_documented_with_its_default(name):
    # every parameter is a field of the controller's Params model, with a default (or marked
    # required) and a docstring; the constructor takes nothing else
    cls = get_controller_class(name)
    assert cls.Params is not None and cls.name == name
    docs = {key: (default, doc) for key, _, default, doc in field_docs(cls.Params)}  # default: shown
    assert docs, name
    for key, (_, doc) in docs.items():
        assert doc, f"{name}: parameter {key!r} has no docstring"
    accepted = parameter_names(cls)
    assert accepted == list(cls.Params.model_fields)


@pytest.mark.parametrize(
    ("name", "params", "key"),
    [
        ("pid", {"kpp": 1.0}, "control.params.kpp"),                     # unknown name
        ("pid", {"kp": "big"}, "control.params.kp"),                     # wrong type
        ("pid", {"kp": True}, "control.params.kp"),                      # bool is not a number
        ("pid", {"ki": -0.1}, "control.params.ki"),                      # negative gain
        ("pid", {"kd": -1}, "control.params.kd"),
        ("pid", {"ff": -1}, "control.params.ff"),
        ("pid", {"gains": {"w_pos": 0.0}}, "control.params.gains.w_pos"),  # zero knob gain
        ("pid", {"gains": {"w_poss": 1.0}}, "control.params.gains.w_poss"),
        ("pid", {"ema": 1.0}, "control.params.ema"),
        ("pid", {"u_limits": [0.5, 1.0]}, "control.params.u_limits[0]"),
        ("pid", {"anti_windup": "sometimes"}, "control.params.anti_windup"),
        ("pid", {"preset": "entropix"}, "control.params.preset"),
        ("pid", {"gain_schedule": [[0.5, 1.0], [0.2, 1.0]]}, "control.params.gain_schedule"),
        ("static", {"preset": "clip_highest"}, "control.params.preset"),
        ("static", {"knobs": {"w_pos": -0.5}}, "control.params.knobs.w_pos"),
        ("static", {"knobs": {"eps_low": 1.0}}, "control.params.knobs.eps_low"),
        ("schedule", {}, "control.params.knobs"),
        ("schedule", {"knobs": {"w_pos": {"kind": "stagger"}}}, "control.params.knobs.w_pos.kind"),
        ("schedule", {"knobs": {"w_pos": {"kind": "epoch"}}}, "control.params.knobs.w_pos.epochs"),
        ("schedule", {"knobs": {"w_pos": {"kind": "epoch", "epochs": 1}}},
         "control.params.knobs.w_pos.epochs"),
        ("schedule", {"knobs": {"w_pos": {"kind": "linear", "start": 0, "end": 1, "rate": 2}}},
         "control.params.knobs.w_pos.rate"),
        ("bang_bang", {"delta_step": -0.05}, "control.params.delta_step"),
        ("bang_bang", {"direction": 2}, "control.params.direction"),
        ("bang_bang", {"knob": "lr"}, "control.params.knob"),
        ("bang_bang", {"band": -0.1}, "control.params.band"),
        ("bandit", {}, "control.params.arms"),
        ("bandit", {"arms": {"w_pos": []}}, "control.params.arms.w_pos"),
        ("bandit", {"arms": {"w_pos": [0.5, -1.0]}}, "control.params.arms.w_pos[1]"),
        ("bandit", {"arms": {"w_pos": [0.5]}, "algorithm": "ucb9"}, "control.params.algorithm"),
        ("bandit", {"arms": {"w_pos": [0.5]}, "hold": 0}, "control.params.hold"),
        ("bandit", {"arms": {"w_pos": [0.5]}, "hold": 2.5}, "control.params.hold"),
        ("bandit", {"arms": {"w_pos": [0.5]}, "discount": 0.0}, "control.params.discount"),
        ("bandit", {"arms": {"w_pos": [0.5]}, "ucb_c": -1.0}, "control.params.ucb_c"),
        ("bandit", {"arms": {"w_pos": [0.5]}, "seed": "x"}, "control.params.seed"),
    ],
)
def test_bad_params_raise_config_error_naming_the_parameter(name, params, key):
    with pytest.raises(ConfigError) as info:
        make_controller(name, **params)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")


def test_unknown_controller_name_suggests_the_close_one():
    with pytest.raises(ConfigError) as info:
        make_controller("bang-bang")
    assert info.value.key == "control.controller"
    assert "bang_bang" in str(info.value)


def _reg(controller, actuate, initial=None, bounds=None, target=0.3, steps=10):
    return Regulator(controller, target, initial=initial or Knobs(), bounds=bounds or KnobBounds(),
                     actuate=tuple(actuate), total_steps=steps)


def test_static_clip_higher_with_actuate_eps_high_gives_028():
    # the lead's example: `controller: static, params: {preset: clip_higher}, actuate: [eps_high]`
    cfg = ControlConfig.from_mapping(
        {"controller": "static", "params": {"preset": "clip_higher"}, "actuate": ["eps_high"]})
    knobs = cfg.build(total_steps=5).step(0, 0.4)
    assert knobs == Knobs(w_pos=1.0, w_neg=1.0, eps_low=0.2, eps_high=0.28)


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("grpo", Knobs()),
        ("clip_higher", Knobs(eps_high=0.28)),
        ("clip_lower", Knobs(eps_low=0.28)),
        ("clip_tighter", Knobs(eps_low=0.12)),
        ("pos_only", Knobs(w_neg=0.0)),
        ("neg_only", Knobs(w_pos=0.0)),
        ("clip_free", Knobs(eps_low=static_mod.CLIP_FREE_EPS_LOW, eps_high=math.inf)),
    ],
)
def test_static_presets_reproduce_the_paper_baselines(preset, expected):
    # route 1: every knob actuated (bounds wide enough for clip_free)
    wide = KnobBounds(eps_low=(0.0, 0.9999999), eps_high=(0.0, math.inf))
    reg = _reg(make_controller("static", preset=preset), ("w_pos", "w_neg", "eps_low", "eps_high"),
               bounds=wide)
    assert reg.step(0, 0.5) == expected
    # route 2: nothing actuated, the preset's knobs given in `initial`
    reg = _reg(make_controller("static", preset=preset), (), initial=expected)
    assert reg.step(0, 0.5) == expected


def test_static_preset_mismatch_is_a_config_error_at_reset():
    with pytest.raises(ConfigError) as info:
        _reg(make_controller("static", preset="clip_higher"), ("w_pos",))
    assert info.value.key == "control.actuate"
    assert "eps_high" in str(info.value)
    # a value outside the bounds of an actuated knob names the bounds
    with pytest.raises(ConfigError) as info:
        _reg(make_controller("static", preset="clip_free"), ("eps_low", "eps_high"))
    assert info.value.key.startswith("control.bounds.eps_")


def test_static_knobs_param_fixes_arbitrary_knobs_and_overrides_the_preset():
    reg = _reg(make_controller("static", preset="clip_higher", knobs={"w_pos": 0.5, "eps_high": 0.3}),
               ("w_pos", "eps_high"))
    assert reg.step(0, 0.1) == Knobs(w_pos=0.5, eps_high=0.3)
    assert reg.step(1, 0.9) == Knobs(w_pos=0.5, eps_high=0.3)


@pytest.mark.parametrize(
    ("name", "params", "actuate"),
    [
        ("schedule", {"knobs": {"w_neg": {"kind": "linear", "start": 1, "end": 0}}}, ("w_pos",)),
        ("bang_bang", {"knob": "w_neg"}, ("w_pos",)),
        ("bandit", {"arms": {"eps_high": [0.2, 0.3]}}, ("w_pos",)),
        ("pid", {"preset": "entropic"}, ("w_pos",)),
    ],
)
def test_controllers_refuse_knobs_that_are_not_actuated(name, params, actuate):
    with pytest.raises(ConfigError) as info:
        _reg(make_controller(name, **params), actuate)
    assert info.value.key == "control.actuate"


def test_bandit_arm_outside_bounds_names_the_bounds():
    with pytest.raises(ConfigError) as info:
        _reg(make_controller("bandit", arms={"w_neg": [0.5, 3.0]}), ("w_neg",))
    assert info.value.key == "control.bounds.w_neg"


def test_controllers_move_only_actuated_knobs():
    bounds = KnobBounds(w_pos=(0.0, 2.0))
    for name, params in [("pid", {}), ("bang_bang", {}), ("bandit", {"arms": {"w_pos": [0.0, 0.5]}})]:
        c = make_controller(name, **params)
        c.reset(Knobs(w_neg=0.7, eps_high=0.3), bounds, ("w_pos",))
        out = c.act(Observation(step=0, total_steps=10, entropy=0.1, target=0.3))
        assert (out.w_neg, out.eps_low, out.eps_high) == (0.7, 0.2, 0.3), name


def test_pid_entropic_preset_is_entropics_pi_law():
    # alpha = Kp (H - H*) + Ki sum(H - H*) clipped to [-1, 1]; w_pos = 1 + alpha, w_neg = 1 - alpha
    bounds = KnobBounds(w_pos=(0.0, 2.0), w_neg=(0.0, 2.0))
    c = make_controller("pid", preset="entropic")
    c.reset(Knobs(), bounds, ("w_pos", "w_neg"))
    target, acc = 0.5, 0.0
    for t, h in enumerate([0.3, 0.45, 0.9, 2.2, 0.52, 0.49]):
        acc += h - target
        alpha = min(max(1.0 * (h - target) + 0.01 * acc, -1.0), 1.0)
        out = c.act(Observation(step=t, total_steps=10, entropy=h, target=target))
        assert out.w_pos == pytest.approx(1.0 + alpha, abs=1e-12)
        assert out.w_neg == pytest.approx(1.0 - alpha, abs=1e-12)


def test_pid_entropic_preset_needs_unit_initial_weights():
    with pytest.raises(ConfigError) as info:
        _reg(make_controller("pid", preset="entropic"), ("w_pos", "w_neg"), initial=Knobs(w_pos=0.5))
    assert info.value.key == "control.initial.w_pos"


def test_pid_law_with_feed_forward_and_default_clip_gains():
    # u = kp e + ki I + ff (next_target - target); eps_high = initial + 0.2 u (default gain +0.2)
    c = make_controller("pid", kp=2.0, ki=0.5, kd=0.0, ff=3.0)
    c.reset(Knobs(), KnobBounds(), ("eps_high", "eps_low"))
    obs = Observation(step=0, total_steps=10, entropy=0.25, target=0.3, next_target=0.32)
    e = 0.05
    u = 2.0 * e + 0.5 * e + 3.0 * 0.02
    out = c.act(obs)
    assert out.eps_high == pytest.approx(0.2 + 0.2 * u)
    assert out.eps_low == pytest.approx(0.2 - 0.2 * u)


def test_pid_derivative_acts_on_measurement_not_on_target_steps():
    c = make_controller("pid", kp=0.0, ki=0.0, kd=1.0, d_filter=0.0)
    c.reset(Knobs(w_pos=0.5), KnobBounds(), ("w_pos",))
    c.act(Observation(step=0, total_steps=10, entropy=0.3, target=0.3))
    out = c.act(Observation(step=1, total_steps=10, entropy=0.3, target=0.8))  # target step only
    assert out.w_pos == 0.5
    out = c.act(Observation(step=2, total_steps=10, entropy=0.2, target=0.8))  # H fell by 0.1
    assert out.w_pos == pytest.approx(0.5 - 1.0 * 0.1)  # D = -(dH) = +0.1 -> u = 0.1, g = -1


def test_pid_integral_does_not_wind_up_while_saturated():
    # w_pos starts at 1 with bounds [0, 1]: u = 1 - w_pos is in [0, 1]. A long negative error
    # (entropy too high) saturates u at 0; without anti-windup I would reach -100.
    c = make_controller("pid", kp=0.0, ki=0.1)
    c.reset(Knobs(), KnobBounds(), ("w_pos",))
    for t in range(100):
        out = c.act(Observation(step=t, total_steps=200, entropy=1.3, target=0.3))
        assert out.w_pos == 1.0
    assert c.integral == 0.0
    out = c.act(Observation(step=100, total_steps=200, entropy=0.2, target=0.3))  # e = +0.1
    assert out.w_pos == pytest.approx(1.0 - 0.1 * 0.1)  # responds at once
    c2 = make_controller("pid", kp=0.0, ki=0.1, anti_windup="none")
    c2.reset(Knobs(), KnobBounds(), ("w_pos",))
    for t in range(100):
        c2.act(Observation(step=t, total_steps=200, entropy=1.3, target=0.3))
    assert c2.integral == pytest.approx(-100.0)


def test_pid_gain_schedule_and_ema():
    c = make_controller("pid", kp=1.0, ki=0.0, gain_schedule=[[0.0, 1.0], [1.0, 0.0]], ema=0.5)
    c.reset(Knobs(w_pos=0.5), KnobBounds(), ("w_pos",))
    out = c.act(Observation(step=0, total_steps=11, entropy=0.2, target=0.3))
    assert out.w_pos == pytest.approx(0.5 - 0.1)  # factor 1, first sample unfiltered
    out = c.act(Observation(step=5, total_steps=11, entropy=0.0, target=0.3))
    # H_f = 0.5 * 0.2 + 0.5 * 0.0 = 0.1 -> e = 0.2; factor at progress 0.5 = 0.5 -> u = 0.1
    assert out.w_pos == pytest.approx(0.5 - 0.1)


def _doc_control_sections():
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[1] / "docs" / "controllers.md").read_text()
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        for chunk in re.split(r"\n(?=control:)", block):
            if chunk.startswith("control:"):
                yield yaml.safe_load(chunk)["control"]


def test_every_config_example_in_the_docs_builds_and_runs():
    sections = list(_doc_control_sections())
    assert len(sections) >= 6
    for section in sections:
        reg = ControlConfig.from_mapping(section).build(total_steps=20)
        for t in range(5):
            assert isinstance(reg.step(t, 0.1 + 0.1 * t), Knobs)
        assert reg.faults == 0, section
