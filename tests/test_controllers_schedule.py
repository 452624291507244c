"""``schedule`` values match their formulas exactly, including the paper's two lambda schedules."""

from __future__ import annotations

import math

import pytest

from regulator import KnobBounds, Knobs, Observation, make_controller

N = 101  # total steps; progress p = step / 100


def _values(spec, knob="w_pos", n=N, bounds=None):
    c = make_controller("schedule", knobs={knob: spec})
    c.reset(Knobs(), bounds or KnobBounds(w_pos=(0.0, 5.0), w_neg=(0.0, 5.0)), (knob,))
    return [getattr(c.act(Observation(step=s, total_steps=n, entropy=0.3, target=0.3)), knob)
            for s in range(n)]


def test_constant_and_bare_number():
    assert _values({"kind": "constant", "value": 0.4}) == [0.4] * N
    assert _values(0.7) == [0.7] * N


def test_linear_and_cosine():
    assert _values({"kind": "linear", "start": 1.0, "end": 0.2}) == pytest.approx(
        [1.0 + (0.2 - 1.0) * s / 100 for s in range(N)], abs=1e-12)
    assert _values({"kind": "cosine", "start": 1.0, "end": 0.2}) == pytest.approx(
        [0.2 + 0.8 * (1 + math.cos(math.pi * s / 100)) / 2 for s in range(N)], abs=1e-12)


def test_exponential_and_piecewise():
    assert _values({"kind": "exponential", "start": 2.0, "end": 0.5, "rate": 3.0}) == pytest.approx(
        [0.5 + 1.5 * math.exp(-3.0 * s / 100) for s in range(N)], abs=1e-12)
    got = _values({"kind": "piecewise", "points": [[10, 1.0], [30, 0.0], [60, 0.5]]})
    assert got[:11] == [1.0] * 11
    assert got[20] == pytest.approx(0.5) and got[30] == 0.0 and got[45] == pytest.approx(0.25)
    assert got[60:] == [0.5] * 41


def test_paper_stage_based_lambda():
    # lambda = 0 for the first half of training, then linear 0 -> 1
    got = _values({"kind": "stage"})
    expected = [0.0 if s / 100 <= 0.5 else (s / 100 - 0.5) / 0.5 for s in range(N)]
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[50] == 0.0 and got[75] == pytest.approx(0.5) and got[100] == pytest.approx(1.0)


def test_paper_epoch_wise_lambda():
    # lambda = (e - 1) / (E - 1) in epoch e = 1..E; 100 steps, E = 4 -> epochs of 25 steps
    c = make_controller("schedule", knobs={"w_pos": {"kind": "epoch", "epochs": 4}})
    c.reset(Knobs(), KnobBounds(), ("w_pos",))
    got = [c.act(Observation(step=s, total_steps=100, entropy=0.3, target=0.3)).w_pos for s in range(100)]
    for s, v in enumerate(got):
        e = s // 25 + 1
        assert v == pytest.approx((e - 1) / 3, abs=1e-12)
    assert got[0] == 0.0 and got[99] == 1.0


def test_schedule_values_are_clamped_into_bounds():
    got = _values({"kind": "linear", "start": 0.0, "end": 2.0}, bounds=KnobBounds())
    assert max(got) == 1.0 and got[25] == pytest.approx(0.5)
