"""Knobs, KnobBounds, Observation validation and target curves."""

import math

import pytest

from regulator import ConfigError, KnobBounds, Knobs, Observation, make_target


def test_knob_defaults_and_validation():
    k = Knobs()
    assert (k.w_pos, k.w_neg, k.eps_low, k.eps_high) == (1.0, 1.0, 0.2, 0.2)
    assert Knobs(eps_high=math.inf).eps_high == math.inf
    cases = {
        "w_pos": dict(w_pos=-0.1), "w_neg": dict(w_neg=math.nan),
        "eps_low": dict(eps_low=1.0), "eps_high": dict(eps_high=-0.01),
    }
    for field, kw in cases.items():
        with pytest.raises(ValueError, match=field):
            Knobs(**kw)
    with pytest.raises(ValueError, match="eps_low"):
        Knobs(eps_low=-0.1)
    with pytest.raises(ValueError, match="w_pos.*number"):
        Knobs(w_pos="1")
    with pytest.raises(AttributeError):
        k.w_pos = 0.5  # frozen


def test_knobs_from_mapping_names_unknown_key():
    with pytest.raises(ConfigError, match=r"control.initial.w_po.*did you mean 'w_pos'"):
        Knobs.from_mapping({"w_po": 1.0}, key="control.initial")
    with pytest.raises(ConfigError, match=r"control.initial.eps_low"):
        Knobs.from_mapping({"eps_low": 2}, key="control.initial")


def test_bounds_clamp_and_rate_limit():
    b = KnobBounds(w_pos=(0.0, 1.0), max_delta={"w_pos": 0.1})
    prev = Knobs(w_pos=0.5)
    out = b.clamp(Knobs(w_pos=1.0, eps_high=0.9), previous=prev)
    assert out.w_pos == pytest.approx(0.6) and out.eps_high == 0.5
    only = b.clamp(Knobs(w_pos=1.0, eps_high=0.9), previous=prev, only=("w_pos",))
    assert only.eps_high == 0.9
    assert KnobBounds(max_delta=0.05).rate("eps_low") == 0.05
    with pytest.raises(ConfigError, match="w_neg.*min <= max"):
        KnobBounds(w_neg=(2.0, 1.0))
    with pytest.raises(ConfigError, match="bounds.w_pos"):
        KnobBounds.from_mapping({"w_pos": [-1, 1]})
    with pytest.raises(ConfigError, match="bounds.eps_hi.*did you mean 'eps_high'"):
        KnobBounds.from_mapping({"eps_hi": [0, 1]})
    with pytest.raises(ConfigError, match="max_delta"):
        KnobBounds(max_delta=-1)


def test_observation_required_fields_and_defaults():
    obs = Observation(step=3, total_steps=10, entropy=0.5, target=0.3)
    assert obs.next_target == 0.3 and math.isnan(obs.accuracy)
    assert obs.error == pytest.approx(-0.2) and obs.knobs == Knobs()
    assert obs.progress == pytest.approx(3 / 9)
    with pytest.raises(ValueError, match="total_steps"):
        Observation(step=0, total_steps=0, entropy=0.1, target=0.1)
    with pytest.raises(ValueError, match="target"):
        Observation(step=0, total_steps=2, entropy=0.1, target=math.nan)


@pytest.mark.parametrize(
    "spec,checks",
    [
        ({"kind": "constant", "value": 0.3}, [(0, 0.3), (99, 0.3)]),
        ({"kind": "linear", "start": 1.0, "end": 0.2}, [(0, 1.0), (50, 1.0 - 0.8 * 50 / 100), (100, 0.2)]),
        ({"kind": "cosine", "start": 1.0, "end": 0.0}, [(0, 1.0), (50, 0.5), (100, 0.0)]),
        ({"kind": "exponential", "start": 1.0, "end": 0.2, "rate": 2.0},
         [(0, 1.0), (100, 0.2 + 0.8 * math.exp(-2.0))]),
        ({"kind": "piecewise", "points": [[0, 1.0], [10, 0.5], [20, 0.5]]},
         [(0, 1.0), (5, 0.75), (15, 0.5), (90, 0.5)]),
    ],
)
def test_target_kinds(spec, checks):
    curve = make_target(spec)
    for step, want in checks:
        assert curve(step, 101) == pytest.approx(want)


def test_relative_target_needs_calibration():
    curve = make_target({"kind": "relative", "fraction": 0.5, "end_fraction": 0.25})
    with pytest.raises(RuntimeError):
        curve(0, 10)
    curve.calibrate(2.0)
    assert curve(0, 11) == pytest.approx(1.0) and curve(10, 11) == pytest.approx(0.5)
    assert make_target(0.4)(3, 10) == 0.4


@pytest.mark.parametrize(
    "spec,match",
    [
        ({"kind": "constnt", "value": 1}, r"control.target.kind.*did you mean 'constant'"),
        ({"value": 1}, r"control.target.kind"),
        ({"kind": "linear", "start": 1}, r"control.target.end"),
        ({"kind": "linear", "start": 1, "end": "x"}, r"control.target.end: expected a number, got 'x'"),
        ({"kind": "linear", "start": 1, "end": float("inf")}, r"control.target.end.*got inf"),
        ({"kind": "constant", "value": 1, "vaue": 2}, r"control.target.vaue.*did you mean 'value'"),
        ({"kind": "relative", "fraction": 0.5, "decay": "cos"}, r"control.target.decay.*'cos'"),
        ({"kind": "piecewise", "points": [[5, 1], [2, 1]]}, r"increasing"),
        ({"kind": "constant", "value": -1}, r">= 0"),
        ({"kind": "exponential", "start": 1, "end": 0.5, "rate": -1},
         r"control.target.rate: expected .*0.*got -1"),
        ({"kind": "exponential", "start": 1, "end": 0.5, "rate": 0}, r"control.target.rate.*got 0"),
        ({"kind": "relative", "fraction": 0.5, "decay": "exponential", "rate": 0},
         r"control.target.rate.*got 0"),
        ("high", r"control.target"),
        (True, r"control.target: expected"),
    ],
)
def test_target_errors_name_the_field(spec, match):
    with pytest.raises(ConfigError, match=match):
        make_target(spec)


def test_parse_target_resolves_defaults_and_shorthands():
    from regulator.targets import TARGETS, TargetSpec, parse_target

    rel = parse_target({"kind": "relative", "fraction": 0.5}, key="t")
    assert isinstance(rel, TargetSpec)
    assert rel.resolved() == {"kind": "relative", "fraction": 0.5, "end_fraction": 0.5,
                              "decay": "linear", "rate": 3.0}
    assert parse_target(0.4).resolved() == {"kind": "constant", "value": 0.4}
    pw = parse_target({"kind": "piecewise", "points": [[0, 1], [10, 0.5]]}).resolved()
    assert pw["points"] == [[0.0, 1.0], [10.0, 0.5]]
    assert make_target(pw)(5, 20) == pytest.approx(0.75)  # the resolved spec builds the same curve
    assert set(TARGETS.names()) >= {"constant", "linear", "cosine", "exponential", "piecewise",
                                    "relative"}


def test_actuate_refuses_a_knob_listed_twice():
    from regulator.config import ControlConfig

    with pytest.raises(ConfigError, match=r"^control.actuate\[2\]: .*got 'w_pos'"):
        ControlConfig.from_mapping({"actuate": ["w_pos", "w_neg", "w_pos"]})
    assert ControlConfig.from_mapping({"actuate": ["w_pos", "w_neg"]}).actuate == ("w_pos", "w_neg")


def test_a_bounds_error_shows_the_list_as_written():
    from regulator.config import ControlConfig

    with pytest.raises(ConfigError, match=r"^control.bounds.w_pos: .*got \[0\]$"):
        ControlConfig.from_mapping({"bounds": {"w_pos": [0]}})
    with pytest.raises(ConfigError, match=r"^bounds.w_neg: .*got \[0, 1, 2\]$"):
        KnobBounds.from_mapping({"w_neg": [0, 1, 2]})
