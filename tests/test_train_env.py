"""``regulator/EntropyTrain-v0``: the real trainer behind the gym API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from _train_helpers import tiny_config
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401 - registers the ids


def _env(tmp_path, horizon=3, **kw):
    cfg = tiny_config(tmp_path)
    return gym.make("regulator/EntropyTrain-v0", config=cfg, horizon=horizon,
                    target={"kind": "constant", "value": 1.0}, **kw)


def test_check_env(tmp_path):
    env = _env(tmp_path, actuate=("w_pos", "w_neg"), bounds={"w_pos": [0, 2], "w_neg": [0, 2]})
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_episode_actions_reach_the_update(tmp_path):
    env = _env(tmp_path, horizon=3, actuate=("w_neg",), bounds={"w_neg": [0.0, 2.0]})
    u = env.unwrapped
    obs, _ = env.reset(seed=1)
    fields = list(u.observation_fields)
    assert obs.shape == (len(fields),) and obs.dtype == np.float32
    h0 = obs[fields.index("entropy")]
    assert 0 < h0 < 5
    rows, done = [], False
    for a in ([-1.0], [0.0], [1.0]):
        assert not done
        obs, reward, terminated, truncated, info = env.step(np.array(a, dtype=np.float32))
        rows.append(info)
        done = terminated or truncated
        # reward = -|H_{t+1} - target|
        assert reward == -abs(info["entropy/next"] - 1.0)
        assert obs[fields.index("knob_w_neg")] == info["knobs/w_neg"]
        assert {"entropy/dh_pos", "entropy/dh_neg", "loss/policy", "train/skipped"} <= set(info)
    assert done
    assert [r["knobs/w_neg"] for r in rows] == [0.0, 1.0, 2.0]
    assert all(r["knobs/w_pos"] == 1.0 for r in rows)
    assert rows[0]["entropy/measured"] == h0
    # same seed, same actions: the same trajectory
    obs2, _ = env.reset(seed=1)
    assert obs2[fields.index("entropy")] == h0
    env.close()


def test_keyword_mistakes_are_one_line_config_errors(tmp_path):
    """An unknown keyword, a config that is no path or mapping and a malformed override name
    the keyword (they were a raw TypeError, or a string iterated character by character)."""
    import pytest

    from regulator.errors import ConfigError

    cfg = tiny_config(tmp_path)
    for kw, key, hint in ((dict(horizn=3), "horizn", "did you mean 'horizon'?"),
                          (dict(bogus=1), "bogus", "config, horizon"),
                          (dict(config=5), "config", "got 5"),
                          (dict(config=cfg, overrides=["steps"]), "overrides[0]", "got 'steps'"),
                          (dict(config=str(tmp_path / "none.yaml")), "config", "existing YAML file")):
        with pytest.raises(ConfigError) as e:
            gym.make("regulator/EntropyTrain-v0", **kw)
        assert e.value.key == key and hint in str(e.value), (kw, str(e.value))
    # a single override string is one override
    env = gym.make("regulator/EntropyTrain-v0", config=cfg, overrides="train.steps=2")
    assert env.unwrapped.horizon == 2 and env.unwrapped.cfg.train.steps == 2
    env = gym.make("regulator/EntropyTrain-v0", config=cfg, overrides=["train.steps=4", "train.seed=3"])
    assert (env.unwrapped.horizon, env.unwrapped.cfg.train.seed) == (4, 3)
