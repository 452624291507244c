"""Registry resolution and the Regulator safety layer."""

import json
import math
import sys
import types

import pytest

from regulator import (
    ConfigError,
    Controller,
    KnobBounds,
    Knobs,
    Observation,
    Regulator,
    list_controllers,
    make_controller,
    register_controller,
    registry,
)


@register_controller("test_ramp")
class Ramp(Controller):
    """Moves every actuated knob by `step_size` per call; a scripted misbehaviour at given steps."""

    def __init__(self, step_size: float = 0.1, misbehave: dict | None = None):
        self.step_size = step_size
        self.misbehave = misbehave or {}
        self.calls = 0
        self.seen: list[Observation] = []

    def act(self, obs):
        self.seen.append(obs)
        self.calls += 1
        bad = self.misbehave.get(obs.step)
        if bad == "raise":
            raise RuntimeError("boom")
        if bad == "nan":
            k = Knobs()
            object.__setattr__(k, "w_pos", math.nan)  # bypass validation to smuggle NaN through
            return k
        if bad == "none":
            return None
        return self.with_actuated({k: getattr(obs.knobs, k) + self.step_size for k in self.actuate})

    def state_dict(self):
        return {"calls": self.calls}

    def load_state_dict(self, d):
        self.calls = d["calls"]


def _regulator(**kw):
    ctrl = make_controller("test_ramp", **kw)
    return Regulator(ctrl, {"kind": "linear", "start": 1.0, "end": 0.0}, initial=Knobs(w_pos=0.5),
                     bounds=KnobBounds(w_pos=(0.0, 1.0), max_delta=0.25), actuate=("w_pos",),
                     total_steps=11)


def test_the_regulator_hands_over_as_many_future_targets_as_the_controller_asks_for():
    reg = _regulator()
    reg.step(0, 0.9)
    assert reg.controller.seen[-1].preview == ()  # asks for none
    reg.controller.preview_steps = 3
    reg.step(4, 0.9)
    assert reg.controller.seen[-1].preview == pytest.approx((0.5, 0.4, 0.3))  # steps 5, 6, 7
    reg.step(9, 0.9)  # past the last step (10) its target is repeated
    assert reg.controller.seen[-1].preview == pytest.approx((0.0, 0.0, 0.0))


def test_make_controller_by_name_path_and_errors():
    assert "test_ramp" in list_controllers()
    assert isinstance(make_controller("test_ramp"), Ramp)
    by_path = make_controller(f"{__name__}:Ramp", step_size=0.2)
    assert isinstance(by_path, Ramp) and by_path.step_size == 0.2
    with pytest.raises(ConfigError, match=r"control.controller.*test_ramp.*did you mean 'test_ramp'"):
        make_controller("test_rmp")
    with pytest.raises(ConfigError, match=r"control.params.stepsize.*did you mean 'step_size'"):
        make_controller("test_ramp", stepsize=1)
    with pytest.raises(ConfigError, match="importable"):
        make_controller("no_such_module_xyz:Thing")
    with pytest.raises(ConfigError, match="Controller"):
        make_controller("json:dumps")
    with pytest.raises(ValueError, match="already registered"):
        register_controller("test_ramp")(type("Other", (Ramp,), {}))


def test_entry_point_plugins_are_listed_and_loaded(monkeypatch):
    mod = types.ModuleType("fake_plugin_mod")

    class Plugged(Controller):
        def act(self, obs):
            return self.initial

    mod.Plugged = Plugged
    monkeypatch.setitem(sys.modules, "fake_plugin_mod", mod)
    from importlib.metadata import EntryPoint

    ep = EntryPoint(name="plugged", value="fake_plugin_mod:Plugged", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.CONTROLLERS, "entry_points", lambda: {"plugged": ep})
    assert "plugged" in list_controllers()
    assert isinstance(make_controller("plugged"), Plugged)
    assert "plugin" in registry.controller_origins()["plugged"]


def test_regulator_builds_observations_and_rate_limits():
    reg = _regulator(step_size=0.5)
    k0 = reg.step(0, entropy=0.9, accuracy=0.25, dh_pos=-0.1, clip_frac_high=0.02)
    obs = reg.controller.seen[0]
    assert obs.target == pytest.approx(1.0) and obs.next_target == pytest.approx(0.9)
    assert obs.accuracy == 0.25 and obs.clip_frac_high == 0.02 and obs.extras == {"dh_pos": -0.1}
    assert obs.knobs == Knobs(w_pos=0.5)
    # +0.5 requested, rate limit 0.25 applies; then the upper bound 1.0
    assert k0.w_pos == pytest.approx(0.75) and reg.clamped == 1
    assert reg.step(1, 0.8).w_pos == pytest.approx(1.0)
    assert reg.step(2, 0.8).w_pos == pytest.approx(1.0)
    # with_actuated already clamped those two into bounds, so only the rate limit intervened
    assert reg.metrics()["control/clamped"] == 1.0


@pytest.mark.parametrize("bad", ["raise", "nan", "none"])
def test_regulator_holds_knobs_on_faults(bad, caplog):
    reg = _regulator(step_size=0.1, misbehave={1: bad})
    k0 = reg.step(0, 0.9)
    k1 = reg.step(1, 0.9)
    assert k1 == k0 and reg.faults == 1
    assert "test_ramp" in reg.last_event
    assert reg.step(2, 0.9).w_pos == pytest.approx(k0.w_pos + 0.1)
    assert reg.step(3, math.nan) == reg.knobs and reg.faults == 2


def test_regulator_keeps_non_actuated_knobs_at_initial():
    class Greedy(Controller):
        def act(self, obs):
            return Knobs(w_pos=0.0, w_neg=2.0, eps_low=0.0, eps_high=0.4)

    reg = Regulator(Greedy(), 0.3, initial=Knobs(eps_high=math.inf), actuate=("w_neg",), total_steps=5)
    k = reg.step(0, 0.2)
    assert k == Knobs(w_pos=1.0, w_neg=2.0, eps_low=0.2, eps_high=math.inf)


def test_regulator_state_round_trip_is_json():
    reg = _regulator(step_size=0.1)
    for s in range(3):
        reg.step(s, 0.5)
    state = json.loads(json.dumps(reg.state_dict()))
    other = _regulator(step_size=0.1)
    other.load_state_dict(state)
    assert other.knobs == reg.knobs and other.controller.calls == 3
    assert other.step(3, 0.5) == reg.step(3, 0.5)


def test_relative_target_calibrates_on_first_measurement():
    reg = Regulator(make_controller("test_ramp"), {"kind": "relative", "fraction": 0.5},
                    total_steps=4)
    reg.step(0, 2.0)
    assert reg.controller.seen[0].target == pytest.approx(1.0)
    assert reg.target_at(3) == pytest.approx(1.0)


def test_regulator_metrics_merge_the_controllers_own():
    class Reporting(Controller):
        def act(self, obs):
            return self.initial

        def metrics(self):
            return {"control/gain_est/w_pos": -0.5, "control/faults": 99.0, "label": "x"}

    reg = Regulator(Reporting(), 0.3, total_steps=3)
    reg.step(0, 0.2)
    m = reg.metrics()
    # the controller's numbers are added; the Regulator's own counters cannot be overwritten
    assert m == {"control/faults": 0.0, "control/clamped": 0.0, "control/frozen": 0.0,
                 "control/frozen_steps": 0.0, "control/gain_est/w_pos": -0.5}

    class Broken(Reporting):
        def metrics(self):
            raise RuntimeError("no")

    assert Regulator(Broken(), 0.3, total_steps=3).metrics()["control/faults"] == 0.0


def test_regulator_api_checks_actuate_bounds_and_initial_like_a_config():
    ramp = make_controller("test_ramp")
    with pytest.raises(ConfigError, match=r"^actuate\[1\]: .*'w_poss'.*did you mean 'w_pos'"):
        Regulator(ramp, 0.3, actuate=("w_neg", "w_poss"), total_steps=3)
    with pytest.raises(ConfigError, match=r"^actuate\[1\]: .*'w_pos'"):
        Regulator(ramp, 0.3, actuate=["w_pos", "w_pos"], total_steps=3)
    # bounds and initial as plain mappings, as in a config
    reg = Regulator(make_controller("test_ramp"), 0.3, bounds={"w_pos": [0, 1], "max_delta": 0.1},
                    initial={"w_pos": 0.5}, actuate="w_pos", total_steps=3)
    assert reg.bounds == KnobBounds(w_pos=(0.0, 1.0), max_delta=0.1) and reg.actuate == ("w_pos",)
    assert reg.initial == Knobs(w_pos=0.5) and reg.knobs == Knobs(w_pos=0.5)
    with pytest.raises(ConfigError, match=r"^bounds.w_pos: .*got \[0\]"):
        Regulator(make_controller("test_ramp"), 0.3, bounds={"w_pos": [0]}, total_steps=3)
    with pytest.raises(ConfigError, match=r"^initial.w_po: .*did you mean 'w_pos'"):
        Regulator(make_controller("test_ramp"), 0.3, initial={"w_po": 0.5}, total_steps=3)
    # an actuated knob starting outside its bounds is refused, not clamped silently
    with pytest.raises(ConfigError, match=r"^initial.w_pos: .*inside bounds.w_pos.*got 1.5"):
        Regulator(make_controller("test_ramp"), 0.3, initial=Knobs(w_pos=1.5), total_steps=3)
    # a knob the controller does not move keeps its value, bounds or not
    reg = Regulator(make_controller("test_ramp"), 0.3, initial=Knobs(w_neg=1.9), total_steps=3,
                    bounds={"w_neg": [0, 1]})
    assert reg.knobs.w_neg == 1.9
