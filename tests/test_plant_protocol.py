"""The Plant protocol: the simulated plant and the real trainer are driven by the same loop, and
metrics.jsonl has one writer and one reader."""

from __future__ import annotations

import json
import math

import pytest
from _train_helpers import tiny_config, write_config

from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from envs.sim_loop import SimPlants
from regulator.controller import Controller
from regulator.knobs import Knobs
from regulator.metrics_io import metrics_line, read_metrics, write_metrics
from regulator.plant import Plant, loop_step, run_loop
from regulator.safety import Regulator

SMALL = PlantConfig(prompts=8, prompts_per_step=4, group_size=4)
#: what every loop row holds, whichever plant made it
CORE = {"step", "entropy/measured", "entropy/target", "knobs/w_pos", "knobs/w_neg", "knobs/eps_low",
        "knobs/eps_high", "reward/mean", "reward/accuracy", "tokens/pos_frac", "tokens/neg_frac",
        "entropy/dh_pos", "entropy/dh_neg", "loss/policy", "clip/frac_low", "clip/frac_high",
        "time/step_s", "time/control_s", "train/skipped", "control/faults", "control/clamped"}


class _Spy(Controller):
    """Halves w_pos after step 0 and records what it was shown."""

    def __init__(self) -> None:
        self.seen = []

    def act(self, obs):
        self.seen.append(obs)
        return self.with_actuated({"w_pos": 0.5 if obs.step else 1.0})


def _regulator(steps: int) -> tuple[Regulator, _Spy]:
    spy = _Spy()
    return Regulator(spy, 1.0, actuate=("w_pos",), total_steps=steps), spy


def _drive(plant: Plant, steps: int) -> tuple[list[list[dict]], list[_Spy]]:
    assert isinstance(plant, Plant)
    regs, spies = zip(*(_regulator(steps) for _ in range(plant.num_plants)))
    rows = run_loop(plant, list(regs))
    assert plant.step == steps == plant.total_steps
    return rows, list(spies)


def test_sim_and_trainer_plants_follow_the_protocol_through_the_same_loop(tmp_path):
    from trainer.config import TrainConfig
    from trainer.plant import TrainerPlant

    steps = 3
    sim = SimPlants(SimPlant(SMALL, 2, seeds=[0, 1]), steps)
    trainer = TrainerPlant(TrainConfig.from_mapping(tiny_config(tmp_path, train={"steps": steps})))
    for plant in (sim, trainer):
        rows, spies = _drive(plant, steps)
        assert len(rows) == plant.num_plants
        for per_plant, spy in zip(rows, spies):
            assert [r["step"] for r in per_plant] == list(range(steps))
            for r in per_plant:
                assert CORE <= set(r), (type(plant).__name__, CORE - set(r))
                assert all(isinstance(v, float | int) and math.isfinite(v) for v in r.values())
            assert [r["knobs/w_pos"] for r in per_plant] == [1.0, 0.5, 0.5]  # the knobs were applied
            # the controller saw the same fields on both plants: the clip fractions of the
            # previous update (0 before the first), the dh statistics and mixed groups in extras
            first, second = spy.seen[0], spy.seen[1]
            assert (first.clip_frac_low, first.clip_frac_high) == (0.0, 0.0)
            assert (second.clip_frac_low, second.clip_frac_high) == (
                per_plant[0]["clip/frac_low"], per_plant[0]["clip/frac_high"])
            assert set(first.extras) == {"dh_pos", "dh_neg", "mixed_groups"}
            assert first.entropy == per_plant[0]["entropy/measured"]
            assert math.isfinite(first.accuracy) and math.isfinite(first.pos_token_frac)


def test_a_plant_without_a_measurement_is_not_regulated_or_updated():
    """A NaN entropy: the controller is not asked, the knobs are held and the step says why."""
    from regulator.plant import Measurement

    class _Blind:
        num_plants, step, total_steps = 1, 0, 2

        def __init__(self) -> None:
            self.updates = []

        def measure(self):
            return [Measurement(math.nan, {}, {}, note="over 0 response tokens")]

        def update(self, knobs):
            self.updates.append(knobs)
            self.step += 1
            return [{"loss/policy": math.nan}]

    plant = _Blind()
    reg, spy = _regulator(2)
    (row,) = loop_step(plant, [reg])
    assert spy.seen == [] and plant.updates == [[reg.initial]]
    assert row["train/skipped"] == 1.0 and math.isnan(row["entropy/measured"])
    assert "step 0 skipped" in reg.last_event and "over 0 response tokens" in reg.last_event
    with pytest.raises(ValueError, match="one Regulator per plant"):
        loop_step(plant, [reg, reg])


def test_train_and_bench_run_their_plants_through_the_loop(tmp_path, monkeypatch):
    """``regulator train`` steps with ``loop_step``; the bench's sim and trainer runs with
    ``run_loop`` (so both plants go through the very same function)."""
    import envs.bench
    import regulator.plant
    import trainer.run
    from regulator.cli import main

    stepped, looped = [], []
    real_step, real_loop = regulator.plant.loop_step, regulator.plant.run_loop
    monkeypatch.setattr(trainer.run, "loop_step",
                        lambda p, r: (stepped.append(type(p).__name__), real_step(p, r))[1])
    monkeypatch.setattr(envs.bench, "run_loop",
                        lambda p, r, **k: (looped.append(type(p).__name__), real_loop(p, r, **k))[1])
    cfg = tiny_config(tmp_path, train={"steps": 2, "save_every": 0})
    assert main(["train", str(write_config(tmp_path, cfg))]) == 0
    assert stepped == ["TrainerPlant"] * 2
    for plant, extra in (("sim", {"plant_params": {"prompts": 8, "prompts_per_step": 4}}),
                         ("trainer", {"trainer_config": str(write_config(tmp_path, cfg))})):
        bench = {"out_dir": str(tmp_path / plant), "plant": plant, "horizon": 2, "seeds": [0],
                 "burn_in": 0, "workers": 1, "band": False,
                 "targets": {"c": {"kind": "constant", "value": 1.0}},
                 "controllers": [{"label": "grpo", "controller": "static"}], **extra}
        path = tmp_path / f"bench_{plant}.json"
        path.write_text(json.dumps(bench))
        assert main(["bench", str(path)]) == 0
    assert looped == ["SimPlants", "TrainerPlant"]


def test_nan_round_trips_through_the_one_writer_and_reader(tmp_path):
    """NaN and infinities are written one way (strings) by the run logger and the bench alike,
    and come back as floats; a file from before (null) reads as NaN too."""
    from trainer.logging import RunLogger

    row = {"step": 0, "entropy/measured": math.nan, "loss/policy": math.inf, "x": -math.inf, "y": 0.5,
           "entropy/target": 1.0, "reward/accuracy": 0.0}
    write_metrics(tmp_path / "bench" / "metrics.jsonl", [row])
    logger = RunLogger(tmp_path, total_steps=1, start_step=0, tensorboard=False, progress=False)
    logger.log(row)
    logger.close()
    a = (tmp_path / "bench" / "metrics.jsonl").read_text()
    assert a == (tmp_path / "metrics.jsonl").read_text() == metrics_line(row)
    assert json.loads(a)["entropy/measured"] == "nan"
    for path in (tmp_path / "bench" / "metrics.jsonl", tmp_path / "metrics.jsonl"):
        (back,) = read_metrics(path)
        assert math.isnan(back["entropy/measured"]) and back["loss/policy"] == math.inf
        assert back["x"] == -math.inf and back["y"] == 0.5 and back["step"] == 0
    (tmp_path / "old.jsonl").write_text('{"step": 0, "entropy/measured": null}\n')
    assert math.isnan(read_metrics(tmp_path / "old.jsonl")[0]["entropy/measured"])


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_a_bench_report_reads_a_run_with_a_skipped_step(tmp_path):
    """A trainer run's skipped step (NaN entropy) in metrics.jsonl: the tracking figure reads
    it as NaN (it used to meet the string "nan" and crash)."""
    import numpy as np

    from envs.bench import run_dir
    from envs.bench_config import parse_bench_config
    from envs.bench_report import _trajectories

    cfg = parse_bench_config({"out_dir": str(tmp_path), "plant": "sim", "horizon": 3, "seeds": [0],
                              "targets": {"c": {"kind": "constant", "value": 1.0}},
                              "controllers": [{"label": "grpo", "controller": "static"}]})
    (run,) = cfg.runs
    write_metrics(run_dir(tmp_path, cfg, run) / "metrics.jsonl",
                  [{"step": t, "entropy/measured": h, "entropy/target": 1.0}
                   for t, h in enumerate([0.9, math.nan, 0.7])])
    ((h, t),) = _trajectories(cfg, tmp_path).values()
    assert np.isnan(h[1]) and h[0] == 0.9 and list(t) == [1.0, 1.0, 1.0]


def test_sim_plants_measure_and_update_per_plant():
    clipping = PlantConfig(prompts=8, prompts_per_step=4, group_size=4, mini_batches=2, epochs=2, lr=0.2)
    plant = SimPlants(SimPlant(clipping, 2, seeds=0), 5)
    ms = plant.measure()
    assert len(ms) == 2 and all(m.signals["clip_frac_low"] == 0.0 for m in ms)
    out = plant.update([Knobs(eps_high=0.01), Knobs()])
    assert plant.step == 1 and set(out[0]) == {"loss/policy", "clip/frac_low", "clip/frac_high"}
    assert plant.measure()[0].signals["clip_frac_high"] == out[0]["clip/frac_high"] > 0


def test_the_sim_env_reports_under_the_loop_names():
    """EntropySim-v0's info rows are the loop's rows (``regulator.plant.metrics_row``): the
    trainer's names, dh statistics under ``entropy/``."""
    import gymnasium as gym
    import numpy as np

    import envs

    env = gym.make(envs.SIM_ID, horizon=2, plant=SMALL)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(1, np.float32))
    assert CORE - {"time/step_s", "time/control_s", "control/faults", "control/clamped"} <= set(info)
    assert not any(k.startswith("control/dh") for k in info)


def test_a_braked_step_stops_the_policy_and_spends_the_optimiser_s_momentum(tmp_path):
    """With both weights at 0 the loss has no gradient. Stepping Adam on it would keep moving the
    policy on its momentum for ~1/(1 - beta1) steps, so a brake would not stop learning; keeping
    the moments frozen would make the next live step replay the last descent whatever its
    weights. So both plants take the step at zero learning rate: the weights stay, the moments
    decay by beta1 / beta2 per update. Training resumes where it stopped."""
    import torch

    from trainer.config import TrainConfig
    from trainer.engine import torch_optimizer
    from trainer.plant import TrainerPlant

    # tight clip bounds and 2 epochs: the live updates clip some tokens
    brake, go = Knobs(w_pos=0.0, w_neg=0.0), Knobs(eps_low=0.001, eps_high=0.001)
    # one-token answers to one-bit parity: mixed groups (a gradient) from the first step
    cfg = tiny_config(tmp_path, task={"kind": "parity", "k": 1}, train={"steps": 6},
                      rollout={"prompts": 8, "group_size": 4, "max_new_tokens": 1},
                      optim={"lr": 3e-3, "epochs": 2})
    trainer = TrainerPlant(TrainConfig.from_mapping(cfg))
    opt = torch_optimizer(trainer.engine)
    b1, b2 = opt.param_groups[0]["betas"]
    snapshot = lambda: {k: v.clone() for k, v in trainer.engine.module.state_dict().items()}
    moments = lambda: [(s["exp_avg"].clone(), s["exp_avg_sq"].clone(), float(s["step"]))
                       for s in opt.state.values()]
    for _ in range(2):  # momentum builds up
        trainer.measure()
        (live,) = trainer.update([go])
    assert live["clip/frac_low"] + live["clip/frac_high"] > 0
    before, m_before = snapshot(), moments()
    assert m_before and any(m.abs().sum() > 0 for m, _, _ in m_before)
    for _ in range(2):
        trainer.measure()
        (out,) = trainer.update([brake])
        assert out["loss/policy"] == 0.0
    after = snapshot()
    assert all(torch.equal(before[k], after[k]) for k in before)
    for (m0, v0, t0), (m1, v1, t1) in zip(m_before, moments()):  # 2 steps x 2 epochs of decay
        assert torch.allclose(m1, m0 * b1**4) and torch.allclose(v1, v0 * b2**4) and t1 == t0 + 4
    (m,) = trainer.measure()  # the controller sees the braked step's clip fractions, as logged
    assert (m.signals["clip_frac_low"], m.signals["clip_frac_high"]) == (0.0, 0.0)
    trainer.update([go])
    assert any(not torch.equal(after[k], v) for k, v in trainer.engine.module.state_dict().items())

    sim = SimPlant(SMALL, 2, seeds=[0, 1])
    for _ in range(2):
        sim.rollout()
        sim.update(go)
    params = lambda b: [sim._plant_slice(p, b).clone() for p in sim._params().values()]
    adam = lambda b: [sim._plant_slice(x, b).clone() for name in sim._params() for x in sim._adam[name]]
    held, moving, (m_held, v_held) = params(1), params(0), adam(1)[:2]
    t_held = float(sim.t[1])
    sim.rollout()
    sim.update([go, brake])
    n = sim.config.updates_per_step
    assert all(torch.equal(x, y) for x, y in zip(held, params(1)))
    m_now, v_now = adam(1)[:2]
    assert m_held.abs().sum() > 0 and torch.allclose(m_now, m_held * sim.config.betas[0] ** n)
    assert torch.allclose(v_now, v_held * sim.config.betas[1] ** n) and float(sim.t[1]) == t_held + n
    assert not all(torch.equal(x, y) for x, y in zip(moving, params(0)))
