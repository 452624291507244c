"""``regulator/EntropySim-v0``: the entropy-tracking task over the simulated RLVR plant.

One env step = one training step of the plant. The action (a Box in [-1, 1] per actuated knob)
is mapped linearly onto the knob's bounds and applied to the update of the batch already
measured; then the next batch is sampled and measured. Observation: ``OBSERVATION_FIELDS``
(``envs.spaces``; also ``env.unwrapped.observation_fields``). Reward: -|H_{t+1} - H*_{t+1}|, minus
the absolute tracking error after the step. ``info`` holds the raw metrics under the trainer's metric names
(``entropy/measured``, ``reward/accuracy``, ``knobs/w_pos`` ...) for the step just taken.

Keyword arguments (both the single and the vector env): ``envs.sim_env_args.SimEnvArgs`` (target,
actuate, bounds, initial, horizon, observation, plant, regime), each documented there.
Seeds: ``reset(seed=s)`` gives plant b the seed s + b; equal seeds give equal trajectories.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from envs import spaces as sp
from envs.plant import SimPlant
from envs.sim_env_args import SimEnvArgs
from envs.sim_loop import SimPlants
from regulator.errors import ConfigError
from regulator.knobs import KnobBounds, Knobs
from regulator.plant import metrics_row
from regulator.schema import parse
from regulator.targets import TargetCurve, make_target


class _SimCore:
    """B plants under one target curve, driven by actions; shared by the single and vector env."""

    def __init__(self, num_plants: int, **kwargs: Any) -> None:
        args = parse(SimEnvArgs, kwargs)
        self.args = args
        self.actuate, self.bounds, self.initial = args.actuate, args.bounds, args.initial
        self.horizon = args.horizon
        self.relative = args.observation == "relative"
        self.target_spec = args.target
        self.config = args.plant
        self.plant = SimPlant(self.config, num_plants, seeds=0)
        self.num_plants = num_plants

    def reset(self, seeds: list[int]) -> tuple[np.ndarray, list[dict[str, float]]]:
        self.plant.reset(seeds)
        self.plants = SimPlants(self.plant, self.horizon)  # the Plant protocol over it
        self.targets: list[TargetCurve] = [make_target(self.target_spec, key="target")
                                           for _ in range(self.num_plants)]
        self.t = 0
        self.knobs = [self.initial] * self.num_plants
        return self._measure()

    def _target(self, b: int, step: int) -> float:
        curve = self.targets[b]
        if curve.needs_calibration:
            curve.calibrate(self.entropy[b])
        return curve(min(step, self.horizon - 1), self.horizon)

    def _measure(self) -> tuple[np.ndarray, list[dict[str, float]]]:
        self.measure = self.plants.measure()
        self.entropy = [m.entropy for m in self.measure]
        if self.t == 0:
            self.scale = list(self.entropy) if self.relative else [1.0] * self.num_plants
        obs = np.stack([
            sp.encode(self.t, self.horizon, self._target(b, self.t), self._target(b, self.t + 1),
                      self.knobs[b], {"entropy": self.entropy[b], **self.measure[b].signals},
                      scale=self.scale[b])
            for b in range(self.num_plants)
        ])
        return obs, [{"step": self.t, "entropy/measured": h} for h in self.entropy]

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool, list[dict[str, float]]]:
        actions = np.asarray(actions, dtype=np.float32).reshape(self.num_plants, len(self.actuate))
        knobs = [sp.action_to_knobs(actions[b], self.actuate, self.bounds, self.initial, self.knobs[b])
                 for b in range(self.num_plants)]
        measure, t = self.measure, self.t
        update = self.plants.update(knobs)
        infos = [metrics_row(t, measure[b], self._target(b, t), knobs[b], update[b])
                 for b in range(self.num_plants)]
        self.knobs = knobs
        self.t += 1
        obs, _ = self._measure()
        reward = np.array([-abs(self.entropy[b] - self._target(b, self.t)) for b in range(self.num_plants)],
                          dtype=np.float64)
        for b, info in enumerate(infos):
            info["entropy/next"] = self.entropy[b]
        return obs, reward, self.t >= self.horizon, infos


class _CoreView:
    """Read-only views of the run settings both env classes share through their ``_core``."""

    _core: _SimCore

    @property
    def horizon(self) -> int:
        return self._core.horizon

    @property
    def actuate(self) -> tuple[str, ...]:
        return self._core.actuate

    @property
    def bounds(self) -> KnobBounds:
        return self._core.bounds

    @property
    def initial(self) -> Knobs:
        return self._core.initial

    @property
    def target_spec(self) -> Any:
        return self._core.target_spec


class EntropySimEnv(_CoreView, gym.Env):
    __doc__ = __doc__

    metadata = {"render_modes": []}
    observation_fields = sp.OBSERVATION_FIELDS

    def __init__(self, **kwargs: Any) -> None:
        self._core = _SimCore(1, **kwargs)
        self.observation_space = sp.observation_space()
        self.action_space = sp.action_space(self._core.actuate)
        self._done = True

    @property
    def plant(self) -> SimPlant:
        return self._core.plant

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        s = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        obs, infos = self._core.reset([s])
        self._done = False
        return obs[0], infos[0]

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._done:
            raise RuntimeError("EntropySimEnv.step() called before reset() or after the episode ended")
        obs, reward, end, infos = self._core.step(np.asarray(action)[None])
        self._done = end
        return obs[0], float(reward[0]), False, bool(end), infos[0]


class EntropySimVectorEnv(_CoreView, VectorEnv):
    """``num_envs`` simulated plants in one batched computation (same kwargs as the single env).

    All plants share the horizon, so they truncate together; the step after that resets them
    (gymnasium's NEXT_STEP autoreset: that step's actions are ignored, rewards are 0).
    ``infos`` maps each metric name to an array over the envs.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}
    observation_fields = sp.OBSERVATION_FIELDS

    def __init__(self, num_envs: int = 1, **kwargs: Any) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ConfigError("num_envs", "an integer >= 1", num_envs)
        self.num_envs = num_envs
        self._core = _SimCore(self.num_envs, **kwargs)
        self.single_observation_space = sp.observation_space()
        self.single_action_space = sp.action_space(self._core.actuate)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self._needs_reset = False
        self._started = False

    def _seeds(self, seed: int | None) -> list[int]:
        base = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        return [base + b for b in range(self.num_envs)]

    @staticmethod
    def _stack(infos: list[dict[str, float]]) -> dict[str, np.ndarray]:
        return {k: np.array([i.get(k, math.nan) for i in infos]) for k in infos[0]}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        obs, infos = self._core.reset(self._seeds(seed))
        self._needs_reset = False
        self._started = True
        return obs, self._stack(infos)

    def step(self, actions: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("EntropySimVectorEnv.step() called before reset()")
        n = self.num_envs
        if self._needs_reset:
            obs, infos = self._core.reset(self._seeds(None))
            self._needs_reset = False
            return obs, np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), self._stack(infos)
        obs, reward, end, infos = self._core.step(actions)
        self._needs_reset = end
        trunc = np.full(n, end, dtype=bool)
        return obs, reward, np.zeros(n, dtype=bool), trunc, self._stack(infos)
