"""EntropySim-v0 as a stable-baselines3 VecEnv (the ``rl`` extra): SB3's conventions, seeding,
and a short PPO run on the batched plant; relative observations across entropy scales."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

import gymnasium as gym
from stable_baselines3 import PPO

import envs
from envs import spaces as sp
from envs.sb3 import EntropySimVecEnv

KW = {"horizon": 6, "plant": {"prompts": 4, "prompts_per_step": 2, "group_size": 4}}


def test_sb3_conventions_and_seeding():
    env = EntropySimVecEnv(4, **KW)
    env.seed(3)
    obs = env.reset()
    assert obs.shape == (4, len(sp.OBSERVATION_FIELDS))
    traj = [obs]
    for t in range(6):
        obs, reward, dones, infos = env.step(np.zeros((4, 1), dtype=np.float32))
        traj.append(obs)
        assert reward.shape == (4,) and len(infos) == 4
        if t < 5:
            assert not dones.any() and "terminal_observation" not in infos[0]
    assert dones.all() and infos[0]["TimeLimit.truncated"]
    assert infos[0]["terminal_observation"].shape == obs[0].shape
    assert not np.array_equal(infos[0]["terminal_observation"], obs[0])  # obs: the new episode
    assert obs[0][sp.OBSERVATION_FIELDS.index("progress")] == 0.0
    env2 = EntropySimVecEnv(4, **KW)
    env2.seed(3)
    assert np.array_equal(env2.reset(), traj[0])  # same seed, same start
    assert env.get_attr("horizon") == [6] * 4 and env.env_is_wrapped(object) == [False] * 4


def test_ppo_trains_on_the_batched_plant():
    env = EntropySimVecEnv(8, **KW)
    model = PPO("MlpPolicy", env, n_steps=6, batch_size=24, n_epochs=1, seed=0, device="cpu")
    model.learn(total_timesteps=96)
    assert model.num_timesteps >= 96
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (8, 1)


def test_relative_observations_have_the_same_scale_on_another_entropy_scale():
    """A relative observation starts at entropy 1.0 whatever the plant's entropy is."""
    field = sp.OBSERVATION_FIELDS.index("entropy")
    absolute, relative = [], []
    for regime in ("pretrained", "scratch"):
        for kind, out in (("absolute", absolute), ("relative", relative)):
            env = gym.make(envs.SIM_ID, regime=regime, observation=kind, horizon=4)
            obs, _ = env.reset(seed=0)
            out.append(float(obs[field]))
    assert absolute[0] != pytest.approx(absolute[1], rel=0.2)  # two entropy scales
    assert relative == pytest.approx([1.0, 1.0])
    with pytest.raises(Exception, match="observation"):
        gym.make(envs.SIM_ID, observation="relativ")
