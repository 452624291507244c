"""EntropySim-v0 as a stable-baselines3 ``VecEnv``: B plants in one batched computation.

stable-baselines3 does not take gymnasium's ``VectorEnv`` (it has its own vector API), so without
this wrapper PPO falls back to B single envs in ``DummyVecEnv`` — B separate plant computations
per step. ``EntropySimVecEnv(num_envs, **kwargs)`` takes the same keyword arguments as
``gym.make("regulator/EntropySim-v0", ...)`` and follows SB3's conventions: ``reset()`` returns
the observations only; when the episode ends (all plants share the horizon) ``step_wait``
returns the next episode's first observations, with the last ones in
``infos[i]["terminal_observation"]`` and ``infos[i]["TimeLimit.truncated"] = True``.

Needs the ``rl`` extra (``pip install -e '.[rl]'``); nothing else in the project imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import VecEnv

from envs import spaces as sp
from envs.sim_env import _SimCore


class EntropySimVecEnv(VecEnv):
    """``num_envs`` simulated plants stepped together, for stable-baselines3."""

    def __init__(self, num_envs: int = 8, **kwargs: Any) -> None:
        from regulator.errors import ConfigError

        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError("num_envs", "an integer >= 1", num_envs)
        self._core = _SimCore(num_envs, **kwargs)
        super().__init__(num_envs, sp.observation_space(), sp.action_space(self._core.actuate))
        self._actions: np.ndarray | None = None
        self._rng = np.random.default_rng()

    def _episode_seeds(self) -> list[int]:
        seeds = [s for s in self._seeds if s is not None]
        if len(seeds) == self.num_envs:
            out = [int(s) for s in seeds]
        else:
            base = int(self._rng.integers(0, 2**31 - 1))
            out = [base + i for i in range(self.num_envs)]
        self._reset_seeds()
        return out

    def reset(self) -> np.ndarray:
        obs, _ = self._core.reset(self._episode_seeds())
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.float32)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        obs, reward, end, infos = self._core.step(self._actions)
        self._actions = None
        dones = np.full(self.num_envs, end, dtype=bool)
        if end:
            for b, info in enumerate(infos):
                info["terminal_observation"] = obs[b]
                info["TimeLimit.truncated"] = True
            obs, _ = self._core.reset(self._episode_seeds())
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        pass

    # -- attribute access SB3 uses (one shared core: every index sees the same settings) -------
    def _indices(self, indices: None | int | Sequence[int]) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)

    def get_attr(self, attr_name: str, indices: None | int | Sequence[int] = None) -> list[Any]:
        value = None if attr_name == "render_mode" else getattr(self._core, attr_name)
        return [value for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: None | int | Sequence[int] = None) -> None:
        raise AttributeError("EntropySimVecEnv shares one batched plant: build a new env to change "
                             f"{attr_name!r}")

    def env_method(self, method_name: str, *args: Any, indices: None | int | Sequence[int] = None,
                   **kwargs: Any) -> list[Any]:
        raise AttributeError(f"EntropySimVecEnv has no per-env method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: None | int | Sequence[int] = None) -> list[bool]:
        return [False for _ in self._indices(indices)]
