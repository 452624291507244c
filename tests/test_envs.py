"""The gym envs over the simulated plant: registration, env checker, determinism, adapters."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.adapters import ControllerPolicy, PolicyController
from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from envs.sim_loop import run_regulated
from envs.spaces import OBSERVATION_FIELDS, action_to_knobs, knobs_to_action
from regulator import Controller, KnobBounds, Knobs, Observation, Regulator, register_controller
from regulator.registry import list_controllers

SMALL = {"prompts": 8, "prompts_per_step": 4, "group_size": 4}


class _PropWpos(Controller):
    """Test-only: w_pos = 0.5 + 2 (H - H*), a proportional rule with the paper's sign."""

    def act(self, obs: Observation) -> Knobs:
        return self.with_actuated({"w_pos": 0.5 + 2.0 * (obs.entropy - obs.target)})


if "test_envs_prop" not in list_controllers():
    register_controller("test_envs_prop")(_PropWpos)


def test_import_registers_both_ids_without_heavy_stack():
    import subprocess
    import sys

    assert envs.SIM_ID in gym.registry and envs.TRAIN_ID in gym.registry
    spec = gym.registry[envs.SIM_ID]
    assert spec.vector_entry_point == "envs.sim_env:EntropySimVectorEnv"
    assert gym.registry[envs.TRAIN_ID].entry_point == "envs.train_env:EntropyTrainEnv"
    # a fresh interpreter: `import envs` (and making the sim env) loads no heavy stack
    code = ("import sys, gymnasium as gym, envs; gym.make('regulator/EntropySim-v0'); "
            "print(sorted(m for m in ('deepspeed', 'transformers', 'vllm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_check_env_passes_and_fields_are_documented():
    env = gym.make(envs.SIM_ID, horizon=8, plant=SMALL)
    check_env(env.unwrapped, skip_render_check=True)
    assert env.unwrapped.observation_fields == OBSERVATION_FIELDS
    assert env.observation_space.shape == (len(OBSERVATION_FIELDS),)
    for name in OBSERVATION_FIELDS:  # every field is described in the module docs
        assert name in (envs.spaces.__doc__ or "") + open(envs.spaces.__file__).read()


def _episode(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [np.append(obs, 0.0)]
    for a in actions:
        obs, r, term, trunc, info = env.step(a)
        out.append(np.append(obs, r))
    return np.array(out)


def test_equal_seeds_equal_trajectories_and_other_seeds_differ():
    env = gym.make(envs.SIM_ID, horizon=12, plant=SMALL, actuate=("w_pos", "eps_high"))
    rng = np.random.default_rng(0)
    acts = rng.uniform(-1, 1, size=(12, 2)).astype(np.float32)
    a, b, c = _episode(env, 3, acts), _episode(env, 3, acts), _episode(env, 4, acts)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_episode_truncates_at_horizon_and_reward_is_minus_abs_error():
    env = gym.make(envs.SIM_ID, horizon=3, plant=SMALL, target={"kind": "constant", "value": 0.25})
    env.reset(seed=0)
    for t in range(3):
        obs, r, term, trunc, info = env.step(np.zeros(1, dtype=np.float32))
        assert not term and trunc == (t == 2)
        assert r == pytest.approx(-abs(info["entropy/next"] - 0.25))
        assert info["knobs/w_pos"] == pytest.approx(0.5)  # a = 0 -> middle of [0, 1]
        for k in ("reward/accuracy", "entropy/measured", "clip/frac_high"):
            assert math.isfinite(info[k])


def test_action_mapping_round_trip_and_bounds():
    bounds = KnobBounds(w_pos=(0.0, 1.0), eps_high=(0.2, 0.4))
    k = action_to_knobs(np.array([-1.0, 1.0]), ("w_pos", "eps_high"), bounds, Knobs())
    assert (k.w_pos, k.eps_high, k.w_neg) == (0.0, pytest.approx(0.4), 1.0)
    k2 = action_to_knobs(np.array([5.0, -5.0]), ("w_pos", "eps_high"), bounds, Knobs())  # clipped
    assert (k2.w_pos, k2.eps_high) == (1.0, pytest.approx(0.2))
    a = knobs_to_action(Knobs(w_pos=0.25, eps_high=0.3), ("w_pos", "eps_high"), bounds)
    assert a == pytest.approx([-0.5, 0.0])


def test_vector_env_batches_plants_and_autoresets():
    venv = gym.make_vec(envs.SIM_ID, num_envs=6, vectorization_mode="vector_entry_point",
                        horizon=2, plant=SMALL)
    assert isinstance(venv.unwrapped, envs.sim_env.EntropySimVectorEnv)
    assert venv.unwrapped._core.plant.num_plants == 6
    obs, info = venv.reset(seed=5)
    assert obs.shape == (6, len(OBSERVATION_FIELDS))
    assert len(set(obs[:, 0].tolist())) > 1  # different seeds -> different plants
    _, _, _, trunc, _ = venv.step(np.zeros((6, 1), np.float32))
    assert not trunc.any()
    _, _, _, trunc, _ = venv.step(np.zeros((6, 1), np.float32))
    assert trunc.all()
    obs2, rew, _, trunc, info = venv.step(np.zeros((6, 1), np.float32))  # NEXT_STEP autoreset
    assert not trunc.any() and (rew == 0).all() and (info["step"] == 0).all()
    # the vector env's plant b with seed s + b starts as the single env with seed s + b (equal
    # up to float rounding of batched reductions)
    single = gym.make(envs.SIM_ID, horizon=2, plant=SMALL)
    o, _ = single.reset(seed=7)
    np.testing.assert_allclose(o, obs[2], rtol=1e-5, atol=1e-7)


def test_controller_through_env_equals_direct_run():
    """Closing the loop: a controller as an env policy and the same controller run directly
    (Regulator + plant, as the bench runs it) give the same trajectory."""
    horizon, target = 25, {"kind": "linear", "start": 0.45, "end": 0.3}
    bounds = KnobBounds(w_pos=(0.0, 1.0))
    env = gym.make(envs.SIM_ID, horizon=horizon, plant=SMALL, target=target, bounds={"w_pos": [0, 1]})
    policy = ControllerPolicy("test_envs_prop", env=env)
    obs, _ = env.reset(seed=11)
    via_env = []
    for _ in range(horizon):
        obs, r, term, trunc, info = env.step(policy(obs))
        via_env.append((info["entropy/measured"], info["knobs/w_pos"], info["reward/accuracy"]))
    plant = SimPlant(PlantConfig(**SMALL), 1, seeds=[11])
    reg = Regulator(_PropWpos(), target, initial=Knobs(), bounds=bounds, actuate=("w_pos",),
                    total_steps=horizon)
    rows = run_regulated(plant, [reg], horizon)[0]
    direct = [(r["entropy/measured"], r["knobs/w_pos"], r["reward/accuracy"]) for r in rows]
    assert len({round(k, 6) for _, k, _ in direct}) > 3  # the controller really moved the knob
    np.testing.assert_allclose(np.array(via_env), np.array(direct), rtol=0, atol=1e-6)


def test_policy_controller_wraps_a_callable_and_runs_in_the_regulator():
    seen = []

    def agent(obs: np.ndarray) -> np.ndarray:
        seen.append(obs)
        return np.array([1.0 if obs[OBSERVATION_FIELDS.index("error")] > 0 else -1.0])

    reg = Regulator(PolicyController(agent), 0.3, bounds=KnobBounds(), actuate=("w_pos",), total_steps=10)
    assert reg.step(0, 0.5, accuracy=0.4).w_pos == 0.0  # entropy above target -> a = -1 -> lo
    assert reg.step(1, 0.1).w_pos == 1.0
    assert seen[0][OBSERVATION_FIELDS.index("accuracy")] == pytest.approx(0.4)
    # and through the registry by name, with a 'module:attr' callable
    import sys
    import types

    mod = types.ModuleType("_fake_agents")
    mod.zero = lambda obs: np.zeros(1)
    sys.modules["_fake_agents"] = mod
    reg2 = Regulator(envs.adapters.make_controller("policy", policy="_fake_agents:zero"), 0.3,
                     actuate=("w_pos",), total_steps=10)
    assert reg2.step(0, 0.5).w_pos == 0.5  # action 0 -> middle of [0, 1]
    assert reg2.faults == 0


def test_controller_policy_on_the_vector_env_equals_direct_batched_run():
    horizon, target = 15, {"kind": "constant", "value": 0.4}
    venv = gym.make_vec(envs.SIM_ID, num_envs=3, vectorization_mode="vector_entry_point",
                        horizon=horizon, plant=SMALL, target=target)
    policy = ControllerPolicy("test_envs_prop", env=venv)
    obs, _ = venv.reset(seed=20)
    via_env = []
    for _ in range(horizon):
        obs, r, term, trunc, info = venv.step(policy(obs))
        via_env.append(np.stack([info["entropy/measured"], info["knobs/w_pos"]], -1))
    plant = SimPlant(PlantConfig(**SMALL), 3, seeds=[20, 21, 22])
    regs = [Regulator(_PropWpos(), target, actuate=("w_pos",), total_steps=horizon) for _ in range(3)]
    rows = run_regulated(plant, regs, horizon)
    direct = np.array([[[r[t]["entropy/measured"], r[t]["knobs/w_pos"]] for r in rows]
                       for t in range(horizon)])
    np.testing.assert_allclose(np.array(via_env), direct, rtol=0, atol=1e-6)
    assert len(policy.regulators) == 3


def test_the_regime_shortcut_is_the_plant_regime():
    """``regime=`` is ``plant={"regime": ...}``: the regime's own response shape, not the
    default regime's (it used to keep the pretrained length and forks)."""
    for kwargs in ({"regime": "scratch"}, {"plant": {"regime": "scratch"}},
                   {"plant": {"vocab": 6}, "regime": "scratch"}):
        cfg = gym.make(envs.SIM_ID, horizon=2, **kwargs).unwrapped._core.config
        assert (cfg.regime, cfg.length, cfg.forks) == ("scratch", 1, 1)
    explicit = gym.make(envs.SIM_ID, horizon=2, plant=PlantConfig(length=3), regime="scratch")
    assert explicit.unwrapped._core.config.length == 3  # an explicit PlantConfig keeps its fields
