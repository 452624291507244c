"""``regulator tune``: identification on a synthetic linear plant with known parameters, SIMC
gains, the sim-plant spec end to end, and bad configs exiting 2 naming the key."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from envs.identify import KnobModel, control_section, recommend
from envs.tune import identify, parse_tune_spec, tune_main
from regulator.cli import main
from regulator.config import ControlConfig
from regulator.errors import ConfigError
from regulator.knobs import KNOB_NAMES

GAINS = {"w_pos": -0.008, "w_neg": 0.003, "eps_high": 0.0}  # true g (nats / step / unit knob)
DELAY = 2  # true dead time (steps)
NOISE = 0.02  # measurement noise (nats)


def linear_effect(dev: np.ndarray) -> float:
    """sum_k g_k (k - k0) for one step's knob deviations (columns in GAINS order)."""
    return float(sum(g * dev[c] for c, g in enumerate(GAINS.values())))


def common_mode_effect(dev: np.ndarray) -> float:
    """Only w_pos and w_neg moved *together* act (their common part), with gain -0.006: a plant
    on which every single-knob probe sees nothing."""
    a, b = dev[0], dev[1]
    common = math.copysign(min(abs(a), abs(b)), a) if a * b > 0 else 0.0
    return -0.006 * common


def linear_runner(seed_offset: int = 0, effect=linear_effect):
    """H_t = 0.5 - 0.002 t + sum_{s < t - DELAY} effect(k_s - k0) + N(0, NOISE^2), with
    process noise common to the runs of one seed (as paired runs of a real plant share it)."""
    def run(schedules, seeds, steps):
        out = np.zeros((len(schedules), len(seeds), steps))
        for j, seed in enumerate(seeds):
            rng = np.random.default_rng(seed + seed_offset)
            drift = np.cumsum(rng.normal(0, 0.003, steps))  # shared by the paired runs
            for i, sch in enumerate(schedules):
                meas = np.random.default_rng([seed + seed_offset, i]).normal(0, NOISE, steps)
                dev = np.array([[getattr(k, n) - getattr(sch[0], n) for n in GAINS] for k in sch])
                per_step = np.array([effect(d) for d in dev])
                # knobs of steps < t - DELAY have acted on H_t
                acted = np.array([per_step[:max(t - DELAY, 0)].sum() for t in range(steps)])
                out[i, j] = 0.5 - 0.002 * np.arange(steps) + drift + acted + meas
        return out
    return run


SPEC = {"plant": "sim", "knobs": ["w_pos", "w_neg", "eps_high"], "start": 5, "probe_steps": 30,
        "seeds": 4, "bounds": {"w_pos": [0, 2], "w_neg": [0, 2], "eps_high": [0, 1]},
        "delta": {"w_pos": 0.5, "w_neg": 0.5, "eps_high": 0.2}}


@pytest.mark.parametrize("offset", [0, 100])
def test_identification_recovers_sign_gain_delay_noise(offset):
    spec = parse_tune_spec(SPEC)
    models, _, _ = identify(spec, linear_runner(offset))
    by = {m.knob: m for m in models}
    for k in ("w_pos", "w_neg"):
        m = by[k]
        assert m.sign == (1 if GAINS[k] > 0 else -1)
        assert m.gain == pytest.approx(GAINS[k], rel=0.3)
        assert m.verdict == "strong"
        assert abs(m.delay - DELAY) <= 1
        assert m.noise == pytest.approx(NOISE, rel=0.3)
    assert by["eps_high"].verdict != "strong"  # no effect: no authority claimed
    # the joint probe moves every knob by du per unit u (weights 1, clip bounds 0.2): on a linear
    # plant its gain is the sum of the singles' (-0.008 + 0.003 + 0.2 x 0)
    joint = by["w_pos+w_neg+eps_high"]
    assert joint.gain == pytest.approx(GAINS["w_pos"] + GAINS["w_neg"], rel=0.3)
    rec = recommend(models, {k: (0.0, 2.0) for k in KNOB_NAMES})
    assert rec["mode"] == "single"  # the singles combined (0.011 / step / u) beat the joint (0.005)


def test_a_common_mode_plant_is_found_by_the_joint_probe_alone():
    """Single-knob probes see nothing; the joint probe finds sign and gain, and the
    recommendation moves both weights together with SIMC gains from the joint model."""
    spec = parse_tune_spec({**SPEC, "knobs": ["w_pos", "w_neg"], "delta": {"w_pos": 0.5, "w_neg": 0.5}})
    assert spec.joint  # the default with two knobs
    models, _, labels = identify(spec, linear_runner(effect=common_mode_effect))
    by = {m.knob: m for m in models}
    assert ("w_pos+w_neg", "up") in labels and ("w_pos+w_neg", "down") in labels
    assert by["w_pos"].verdict != "strong" and by["w_neg"].verdict != "strong"
    joint = by["w_pos+w_neg"]
    assert joint.verdict == "strong" and joint.gain == pytest.approx(-0.006, rel=0.3)
    rec = recommend(models, {k: (0.0, 2.0) for k in KNOB_NAMES}, tau_c=10.0)
    assert rec["mode"] == "joint" and rec["gains"] == {"w_pos": -1.0, "w_neg": -1.0}
    theta = joint.delay + 1.0
    assert rec["kp"] == pytest.approx(1 / (abs(joint.gain) * (10 + theta)))
    # without the joint probe nothing has authority
    no_joint = parse_tune_spec({**SPEC, "knobs": ["w_pos", "w_neg"], "joint": False,
                                "delta": {"w_pos": 0.5, "w_neg": 0.5}})
    assert recommend(identify(no_joint, linear_runner(effect=common_mode_effect))[0],
                     {k: (0.0, 2.0) for k in KNOB_NAMES})["knobs"] == []


def test_recommend_applies_simc_for_an_integrating_plant():
    m = [KnobModel("w_pos", -0.01, 0.001, 1, 0.02, 0.5, 0.0),
         KnobModel("w_neg", 0.0001, 0.001, 0, 0.02, 0.5, 0.0)]
    b = {k: (0.0, 2.0) for k in KNOB_NAMES}
    rec = recommend(m, b, tau_c=10.0)
    assert rec["knobs"] == ["w_pos"] and rec["gains"] == {"w_pos": -1.0}
    theta = 2.0  # delay 1 + the one-step sampling delay
    assert rec["kp"] == pytest.approx(1 / (0.01 * (10 + theta)))
    assert rec["ki"] == pytest.approx(rec["kp"] / (4 * (10 + theta)))
    # the noise rule: Kc sigma <= u_noise (0.3)
    auto = recommend(m, b)
    assert auto["kp"] * 0.02 <= 0.3 + 1e-9
    assert recommend(m, b, u_noise=0.1)["kp"] * 0.02 <= 0.1 + 1e-9
    assert recommend([m[1]], b)["knobs"] == []


def test_recommend_prefers_a_joint_direction_unless_clearly_beaten():
    """The joint direction wins within 2 standard errors of the best candidate (it keeps its
    sign across phases); a clearly larger sum of single-knob gains still wins. Figures: the tiny
    trainer of configs/default.yaml probed from step 60 and from step 10 (docs/tuning.md)."""
    b = {k: (0.0, 2.0) for k in KNOB_NAMES}
    at60 = [KnobModel("w_pos", -0.01455, 0.00224, 0, 0.045, 0.5, 0.0),
            KnobModel("w_neg", -0.00169, 0.00224, 0, 0.045, 0.5, 0.0),
            KnobModel("w_pos+w_neg", -0.01353, 0.00153, 0, 0.045, 0.5, 0.0)]
    rec = recommend(at60, b)
    assert rec["mode"] == "joint" and rec["gains"] == {"w_pos": -1.0, "w_neg": -1.0}
    assert rec["process_gain"] == pytest.approx(0.01353)
    at10 = [KnobModel("w_pos", -0.0041, 0.00075, 0, 0.005, 0.5, 0.0),
            KnobModel("w_neg", 0.0021, 0.00062, 1, 0.005, 0.5, 0.0),
            KnobModel("w_pos+w_neg", -0.00296, 0.00045, 0, 0.005, 0.5, 0.0)]
    rec = recommend(at10, b)
    assert rec["mode"] == "single" and rec["gains"] == {"w_pos": -1.0, "w_neg": 1.0}
    assert rec["process_gain"] == pytest.approx(0.0062)


def test_relative_gains_equal_the_absolute_ones_at_the_probed_level():
    """relative=True: kp and ki scaled by the base's mean entropy over the probe window, so
    that kp_rel x (e / H_ref) = kp x e there; the control section says relative_error."""
    m = [KnobModel("w_pos", -0.01, 0.001, 1, 0.02, 0.5, 0.0, level=2.0)]
    b = {k: (0.0, 2.0) for k in KNOB_NAMES}
    absolute, rel = recommend(m, b, tau_c=10.0), recommend(m, b, tau_c=10.0, relative=True)
    assert not absolute["relative_error"] and rel["relative_error"]
    assert rel["kp"] == pytest.approx(2.0 * absolute["kp"])
    assert rel["ki"] == pytest.approx(2.0 * absolute["ki"])
    sec = control_section(rel, {"w_pos": 1.0}, b, None)
    assert sec["params"]["relative_error"] is True
    assert "relative_error" not in control_section(absolute, {"w_pos": 1.0}, b, None)["params"]
    # identification records the level: the synthetic plant's base mean over the window
    models, H, _ = identify(parse_tune_spec(SPEC), linear_runner())
    assert models[0].level == pytest.approx(H[0][:, SPEC["start"] + 1:].mean())


def test_tune_main_on_the_sim_plant(tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({
        "plant": "sim", "plant_params": {"regime": "pretrained"}, "knobs": ["w_pos", "w_neg"],
        "bounds": {"w_pos": [0, 2], "w_neg": [0, 2]}, "probe_steps": 20, "seeds": 3,
        "target": {"kind": "constant", "value": 0.35}, "out_dir": str(tmp_path / "out")}))
    assert tune_main(str(cfg), ["seeds=2"]) == 0
    out = capsys.readouterr().out
    assert "authority" in out and "control:" in out
    for f in ("identification.json", "probes.png", "control.yaml"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    control = yaml.safe_load((tmp_path / "out" / "control.yaml").read_text())["control"]
    # the paper's regime: lowering w_pos raises entropy, raising w_neg does (tests/test_plant_facts)
    assert control["params"]["gains"].get("w_pos", -1) < 0
    assert control["params"]["gains"].get("w_neg", 1) > 0
    reg = ControlConfig.from_mapping(control).build(10)  # ready to paste: it builds
    assert math.isfinite(reg.step(0, 0.4).w_pos)


@pytest.mark.parametrize("bad,key", [
    ({"plant": "real"}, "plant"),
    ({"knobs": ["w_poz"]}, "knobs[0]"),
    ({"delta": {"w_pos": -1}}, "delta.w_pos"),
    ({"seeds": 1}, "seeds"),
    ({"probe_steps": 2}, "probe_steps"),
    ({"tau_c": 0}, "tau_c"),
    ({"plant_params": {"regime": "warm"}}, "plant_params.regime"),
    ({"bounds": {"w_pos": [1, 0]}}, "bounds.w_pos"),
    ({"probe_stepz": 3}, "probe_stepz"),
    ({"joint": "yes"}, "joint"),
    ({"relative": 1}, "relative"),
    ({"joint": True}, "joint"),  # a single knob has no joint direction
    ({"seeds": [0, -1]}, "seeds[1]"),
])
def test_bad_tune_configs_exit_2_naming_the_key(tmp_path, capsys, bad, key):
    raw = {"plant": "sim", "knobs": ["w_pos"], **bad}
    with pytest.raises(ConfigError) as e:
        parse_tune_spec(raw)
    assert e.value.key == key
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    assert main(["tune", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert key in err and len(err.strip().splitlines()) == 1


def test_a_train_config_is_accepted_and_its_tune_section_checked():
    raw = yaml.safe_load(open("configs/default.yaml"))
    spec = parse_tune_spec(raw)
    assert spec.plant == "trainer" and spec.knobs == ["w_pos", "w_neg"]
    assert spec.starts == [60] and spec.probe_steps == 20 and len(spec.seeds) == 3  # its tune: section
    assert spec.joint and spec.relative  # the defaults with two knobs
    del raw["tune"]
    assert parse_tune_spec(raw).starts == [10]  # the default for training configs
    with pytest.raises(ConfigError) as e:
        parse_tune_spec({**raw, "tune": {"seedz": 3}})
    assert e.value.key == "tune.seedz"


def test_trainer_probes_apply_the_spec_bounds():
    """The real trainer as the plant (tiny probe): a +0.5 step of w_pos from 1 within the spec's
    bounds [0, 2] must reach the trainer (the default bounds, w_pos <= 1, would clamp it to no step)."""
    raw = yaml.safe_load(open("configs/default.yaml"))
    raw["tune"] = {"knobs": ["w_pos"], "seeds": 2, "start": 1, "probe_steps": 4,
                   "bounds": {"w_pos": [0.0, 2.0]}}
    spec = parse_tune_spec(raw)
    from envs.tune import trainer_runner

    models, H, labels = identify(spec, trainer_runner(spec.train_raw, progress=False))
    base, up, down = (H[labels.index(lab)] for lab in (("", "base"), ("w_pos", "up"), ("w_pos", "down")))
    assert np.allclose(base[:, :2], up[:, :2]) and np.allclose(base[:, :2], down[:, :2])  # paired
    assert not np.allclose(base[:, 3:], up[:, 3:])  # the step acted
    assert not np.allclose(base[:, 3:], down[:, 3:])
    assert math.isfinite(models[0].gain)


def test_phases_with_opposite_signs_recommend_direction_auto():
    """Two probe phases on the synthetic plant with the w_neg gain reversed in the second one."""
    spec = parse_tune_spec({**SPEC, "knobs": ["w_pos", "w_neg"], "start": [5, 50],
                            "delta": {"w_pos": 0.5, "w_neg": 0.5}})
    first = identify(spec, linear_runner(), 5)[0]
    GAINS["w_neg"] = -GAINS["w_neg"]
    try:
        second = identify(spec, linear_runner(), 50)[0]
    finally:
        GAINS["w_neg"] = -GAINS["w_neg"]
    from envs.tune import _result

    out = _result(spec, [first, second])
    assert out["flips"] == ["w_neg"]
    assert out["control"]["params"]["direction"] == "auto"
    assert out["control"]["params"]["gains"]["w_neg"] > 0  # the first phase's sign is the prior
    with pytest.raises(ConfigError) as e:
        parse_tune_spec({**SPEC, "start": [50, 5]})
    assert e.value.key == "start"


def test_an_out_dir_that_is_a_file_exits_2_before_the_probes(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("a file")
    cfg = tmp_path / "t.yaml"
    cfg.write_text(yaml.safe_dump({"plant": "sim", "knobs": ["w_pos"], "out_dir": str(taken)}))
    assert main(["tune", str(cfg)]) == 2
    printed = capsys.readouterr()
    err = printed.err.strip()
    assert f"out_dir: expected a directory path (an existing file has that name), got {str(taken)!r}" in err
    assert len(err.splitlines()) == 1 and "regulator tune:" not in printed.out  # no probe ran
    raw = yaml.safe_load(open("configs/default.yaml"))
    raw["train"]["out_dir"] = str(taken)  # the default tune.out_dir is train.out_dir/tune
    with pytest.raises(ConfigError) as e:
        parse_tune_spec(raw)
    assert e.value.key == "tune.out_dir" and str(taken) in str(e.value)


def test_a_spec_without_target_writes_a_control_file_that_trains(tmp_path, capsys):
    """A sim spec names no target: control.yaml holds the target a control section without one
    runs (it held target: null, which `regulator train --control` refused), and a training run
    from configs/default.yaml with that file as its control section starts and finishes."""
    spec = tmp_path / "t.yaml"
    spec.write_text(yaml.safe_dump({
        "plant": "sim", "plant_params": {"regime": "pretrained"}, "knobs": ["w_pos", "w_neg"],
        "bounds": {"w_pos": [0, 2], "w_neg": [0, 2]}, "probe_steps": 20, "seeds": 2,
        "out_dir": str(tmp_path / "tune")}))
    assert main(["tune", str(spec)]) == 0
    control = yaml.safe_load((tmp_path / "tune" / "control.yaml").read_text())["control"]
    assert control["target"] == ControlConfig.from_mapping({}).resolved()["target"]
    run = tmp_path / "run"
    assert main(["train", "configs/default.yaml", "--control", str(tmp_path / "tune" / "control.yaml"),
                 "--set", "train.steps=3", "--set", "train.eval_every=0", "--set", "train.save_every=0",
                 "--set", f"train.out_dir={run}"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
