"""``predictive``: params, state round trip, and closed loop on a plant that obeys its model."""

from __future__ import annotations

import json
import math
import random

import pytest

from regulator.errors import ConfigError
from regulator.knobs import KnobBounds, Knobs
from regulator.registry import list_controllers, make_controller
from regulator.safety import Regulator


def _first_order_plant(ctrl, steps: int, eta: dict[str, float], seed: int, target: float = 0.4):
    """dH = -0.006 + sum_k eta_k w_k dh_k with dh_pos = -0.01, dh_neg = +0.01 (+ noise on the
    statistics and the measurement): the controller's own model, with unknown step sizes."""
    rng = random.Random(seed)
    reg = Regulator(ctrl, target, initial=Knobs(), actuate=("w_pos", "w_neg"), total_steps=steps,
                    bounds=KnobBounds.from_mapping({"w_pos": [0, 2], "w_neg": [0, 2]}))
    h, hs = 0.5, []
    for t in range(steps):
        dh = {"dh_pos": -0.01 * (1 + 0.1 * rng.gauss(0, 1)), "dh_neg": 0.01 * (1 + 0.1 * rng.gauss(0, 1))}
        k = reg.step(t, h + rng.gauss(0, 0.02), **dh)
        h += -0.006 + eta["w_pos"] * k.w_pos * dh["dh_pos"] + eta["w_neg"] * k.w_neg * dh["dh_neg"]
        hs.append(h)
    return hs


def test_registered():
    assert "predictive" in list_controllers()


@pytest.mark.parametrize("eta", [{"w_pos": 0.5, "w_neg": 0.5}, {"w_pos": -1.0, "w_neg": 1.0}])
def test_tracks_when_the_statistics_are_informative(eta):
    """Also when one sign's step size is negative (the statistic points the wrong way): then the
    uncalibrated start (eta0 = 1) drives entropy the wrong way until the RLS has calibrated eta,
    and the plant's largest downward rate (-0.006 per step) limits the return."""
    for seed in range(3):
        c = make_controller("predictive")
        hs = _first_order_plant(c, 300, eta, seed)
        rms = math.sqrt(sum((x - 0.4) ** 2 for x in hs[150:]) / 150)
        assert rms < 0.05
        assert c.metrics()["control/gain_est/w_pos"] * eta["w_pos"] > 0  # calibrated sign


def test_state_round_trips_exactly():
    def build():
        c = make_controller("predictive")
        return c, Regulator(c, 0.3, actuate=("w_pos", "w_neg"), total_steps=80,
                            bounds=KnobBounds.from_mapping({"w_pos": [0, 2], "w_neg": [0, 2]}))
    a, ra = build()
    rng = random.Random(1)
    xs = [(0.5 - 0.003 * t + rng.gauss(0, 0.02), -0.01 + 0.001 * rng.gauss(0, 1)) for t in range(60)]
    for t in range(30):
        ra.step(t, xs[t][0], dh_pos=xs[t][1], dh_neg=-0.003)
    b, rb = build()
    rb.load_state_dict(json.loads(json.dumps(ra.state_dict())))
    for t in range(30, 60):
        assert ra.step(t, xs[t][0], dh_pos=xs[t][1], dh_neg=-0.003) == \
            rb.step(t, xs[t][0], dh_pos=xs[t][1], dh_neg=-0.003)
    assert a.metrics() == b.metrics()


def test_holds_without_statistics_and_rejects_clip_knobs():
    c = make_controller("predictive")
    reg = Regulator(c, 0.3, actuate=("w_pos",), total_steps=10)
    assert reg.step(0, 0.5) == Knobs()  # no dh_pos: holds the initial knobs
    with pytest.raises(ConfigError) as e:
        Regulator(make_controller("predictive"), 0.3, actuate=("eps_high",), total_steps=10)
    assert e.value.key == "control.actuate"
    with pytest.raises(ConfigError) as e:
        make_controller("predictive", max_move=0)
    assert e.value.key == "control.params.max_move"
