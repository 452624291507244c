"""Controller parameters as Params models, and the entry-point controller registry."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from controllers import AutoController, PIDController, StaticController
from regulator import ConfigError, Controller, KnobBounds, Knobs, Observation, make_controller
from regulator.registry import CONTROLLERS, ENTRY_POINT_GROUP, get_controller_class
from regulator.schema import field_docs, parse

ROOT = Path(__file__).resolve().parents[1]


def test_python_keyword_arguments_are_validated_by_the_params_model():
    c = PIDController(kp=2, gains={"w_pos": -0.5})
    assert c.params.kp == 2.0 and isinstance(c.params.kp, float)
    assert c.params.gains["w_pos"] == -0.5 and c.params.gains["w_neg"] == 1.0  # others default
    with pytest.raises(ConfigError) as info:
        PIDController(kp=-1.0)
    assert info.value.key == "kp"  # relative to the parameters; make_controller adds control.params
    with pytest.raises(ConfigError) as info:
        StaticController(knobs={"w_pos": 1.0, "eps_hihg": 0.3})
    assert info.value.key == "knobs.eps_hihg" and "did you mean 'eps_high'" in str(info.value)


def test_a_preset_fills_only_the_parameters_not_given():
    p = make_controller("pid", preset="entropic", ki=0.5).params
    assert (p.kp, p.ki, p.anti_windup, p.u_limits) == (1.0, 0.5, "none", (-1.0, 1.0))
    assert p.gains == {"w_pos": -1.0, "w_neg": 1.0, "eps_low": -0.2, "eps_high": 0.2}


@pytest.mark.parametrize(("name", "params"), [
    ("pid", {"preset": "entropic"}), ("auto", {"prior": {"balance": -1.0}}),
    ("static", {"preset": "clip_free"}), ("bandit", {"arms": {"w_pos": [0.0, 1.0]}}),
    ("schedule", {"knobs": {"w_pos": {"kind": "epoch", "epochs": 4}}}),
    ("bang_bang", {"direction": "auto"}), ("predictive", {}),
])
def test_resolved_params_build_the_same_controller(name, params):
    # the resolved parameters (every default written out) validate again to the same model
    first = make_controller(name, **params).params
    resolved = first.resolved()
    json.dumps(resolved, allow_nan=True)  # plain data
    assert make_controller(name, **resolved).params == first


def test_auto_preview_defaults_to_the_designed_response_time():
    assert AutoController().preview == 14 and AutoController().params.preview is None
    assert AutoController(tau_c=5, lag=1, preview=0).preview_steps == 1


def test_params_docs_reach_control_params_keys():
    # what `regulator config --explain control.params.kp` reads for the configured controller
    cls = get_controller_class("pid")
    docs = {key: doc for key, _, _, doc in field_docs(cls.Params)}
    assert "Proportional gain" in docs["kp"]
    assert cls.Params.model_fields["kp"].default == 1.0


def test_a_controller_without_params_refuses_keyword_arguments():
    class Plain(Controller):
        def act(self, obs: Observation) -> Knobs:
            return self.initial

    Plain()
    with pytest.raises(TypeError, match="takes no parameters"):
        Plain(gain=1.0)
    with pytest.raises(ConfigError) as info:
        parse(PIDController.Params, {"kp": 1.0, "zz": 2}, "control.params")
    assert info.value.key == "control.params.zz"


def test_builtins_come_from_this_projects_entry_points():
    eps = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
           if ep.dist is not None and ep.dist.name == "entropy-regulator"}
    assert {"auto", "static", "schedule", "pid", "bang_bang", "bandit", "predictive", "policy"} <= set(eps)
    for name, ep in eps.items():
        cls = get_controller_class(name)
        assert cls is ep.load() and cls.name == name
    assert "auto" in CONTROLLERS and "nope" not in CONTROLLERS


def test_the_registry_imports_no_controller_package_to_list_or_resolve_names():
    code = ("import sys; from regulator.registry import list_controllers, get_controller_class\n"
            "names = list_controllers(); assert 'pid' in names, names\n"
            "assert 'controllers' not in sys.modules and 'envs' not in sys.modules\n"
            "assert get_controller_class('pid').__module__ == 'controllers.pid'\n"
            "assert 'envs' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    source = (ROOT / "regulator" / "registry.py").read_text()
    assert '"controllers"' not in source and "import controllers" not in source


def test_state_round_trip_is_unchanged_by_the_params_model():
    c = make_controller("auto")
    c.reset(Knobs(), KnobBounds(w_pos=(0.0, 2.0), w_neg=(0.0, 2.0)), ("w_pos", "w_neg"))
    for t in range(30):
        c.act(Observation(step=t, total_steps=100, entropy=1.0 - 0.01 * t, target=0.8))
    state = json.loads(json.dumps(c.state_dict()))
    other = make_controller("auto")
    other.reset(Knobs(), KnobBounds(w_pos=(0.0, 2.0), w_neg=(0.0, 2.0)), ("w_pos", "w_neg"))
    other.load_state_dict(state)
    obs = Observation(step=30, total_steps=100, entropy=0.7, target=0.8)
    assert other.act(obs) == c.act(obs)


def test_params_docs_name_types_without_validator_noise():
    types = {(n, key): t for n in ("pid", "bandit", "static", "auto")
             for key, t, _, _ in field_docs(get_controller_class(n).Params)}
    assert types["pid", "u_limits"] == "tuple[float, float] | None"
    assert types["pid", "gain_schedule"] == "list[tuple[float, float]] | None"
    assert types["bandit", "algorithm"] == "'ducb' | 'thompson' | 'exp3'"
    assert types["bandit", "arms"] == "dict[str, list[float]] | None"
    assert types["static", "knobs"] == "dict[str, float] | None"
    assert types["auto", "kp_limits"] == "tuple[float, float]"
