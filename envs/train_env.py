"""``regulator/EntropyTrain-v0``: the entropy-tracking task over the real trainer.

One env step = one GRPO training step of a ``trainer.plant.TrainerPlant``. ``reset`` builds the
plant (model, DeepSpeed engine, rollout backend) from a training config, samples and measures the
first rollout batch and returns its observation. ``step(action)`` maps the action (a Box in
[-1, 1] per actuated knob, linearly onto the knob's bounds) to knobs, applies them to the update
of the batch already measured, then samples and measures the next batch. Observation:
``envs.spaces.OBSERVATION_FIELDS`` (also ``env.unwrapped.observation_fields``), the same fields
as EntropySim-v0. Reward: -|H_{t+1} - H*_{t+1}|. The episode is truncated after ``horizon``
steps. ``info`` is the trainer's metrics row of the step just taken (the trainer's metric names), without
the ``time/*`` entries (so equal seeds give equal infos), plus ``entropy/next`` = H_{t+1}.

Keyword arguments (``envs.sim_env_args.TrainEnvArgs``; a mistake is a ConfigError naming it):
    config: a training config (path or mapping; default: ``configs/default.yaml`` of the checkout).
    overrides: ``key.path=value`` strings applied to it (as ``--set``; one string or a list).
    target: a target spec (default: the config's ``control.target``).
    actuate: knob names the action moves (default ``regulator.knobs.DEFAULT_ACTUATE``, [w_pos], as
        in EntropySim-v0; not the config's ``control.actuate``).
    bounds, initial: as ``control.bounds`` / ``control.initial`` (default: the config's).
    horizon: steps per episode (default: the config's ``train.steps``).
    observation: ``absolute`` (nats) or ``relative`` (entropy fields in units of the episode's
        first entropy), as in EntropySim-v0.
``reset(seed=s)`` sets ``train.seed = s`` (model init, prompts and sampling): equal seeds give
equal trajectories. Nothing is written to disk.

How: the env drives a ``trainer.plant.TrainerPlant`` through the Plant protocol, as the sim
env drives the simulated plant: ``measure()`` at reset and after each step, ``update(knobs)``
with the action's knobs (bounds and rate limits applied as the Regulator applies them).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from envs import spaces as sp
from envs.sim_env_args import TrainEnvArgs
from regulator.config import apply_overrides, load_yaml
from regulator.errors import ConfigError
from regulator.knobs import check_initial_in_bounds
from regulator.plant import Measurement, metrics_row
from regulator.schema import parse

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"


class EntropyTrainEnv(gym.Env):
    __doc__ = __doc__

    metadata = {"render_modes": []}
    observation_fields = sp.OBSERVATION_FIELDS

    def __init__(self, config: str | Path | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """Keyword arguments: the fields of ``envs.sim_env_args.TrainEnvArgs`` (module doc); a
        mistake is a ConfigError naming the keyword."""
        from trainer.config import TrainConfig

        args = parse(TrainEnvArgs, {"config": config, **kwargs})
        try:
            raw = args.config if isinstance(args.config, dict) else load_yaml(args.config or DEFAULT_CONFIG)
        except ConfigError as e:
            raise e.with_key("config") from None
        raw = apply_overrides(raw, args.overrides)
        self._raw = raw
        self.cfg = TrainConfig.from_mapping(raw)
        control = self.cfg.control
        self.actuate = args.actuate
        self.bounds = args.bounds if args.bounds is not None else control.bounds
        self.initial = args.initial if args.initial is not None else control.initial
        check_initial_in_bounds(self.initial, self.bounds, self.actuate)
        self.relative = args.observation == "relative"
        self._scale = 1.0
        self.target_spec = args.target if args.target is not None else control.target
        self.horizon = args.horizon if args.horizon is not None else self.cfg.train.steps
        self.observation_space = sp.observation_space()
        self.action_space = sp.action_space(self.actuate)
        self._plant: Any = None
        self._seed = self.cfg.train.seed

    # -- the plant ---------------------------------------------------------------------------------
    def _measure(self) -> Measurement:
        """Measure the next batch; a step with nothing measured has no observation: an error."""
        (m,) = self._plant.measure()
        if not np.isfinite(m.entropy):
            self._plant = None
            raise RuntimeError(f"the trainer failed: step {self._t} skipped: entropy {m.entropy} "
                               f"{m.note} (no observation to hand out)")
        return m

    def _target(self, step: int) -> float:
        if self._curve.needs_calibration:
            self._curve.calibrate(self._m.entropy)
        return self._curve(min(step, self.horizon - 1), self.horizon)

    def _encode(self) -> np.ndarray:
        t = self._t
        return sp.encode(t, self.horizon, self._target(t), self._target(t + 1), self._knobs,
                         {"entropy": self._m.entropy, **self._m.signals}, scale=self._scale)

    # -- gym API -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        from regulator.targets import make_target
        from trainer.plant import TrainerPlant

        super().reset(seed=seed)
        self._plant = None
        if seed is not None:
            self._seed = int(seed)
        self._plant = TrainerPlant.from_config(self._raw, [f"train.seed={self._seed}",
                                                           f"train.steps={self.horizon + 1}"])
        self._curve = make_target(self.target_spec)
        self._knobs = self.initial
        self._t = 0
        self._m = self._measure()
        self._scale = self._m.entropy if self.relative else 1.0
        return self._encode(), {}

    def step(self, action: np.ndarray):
        if self._plant is None:
            raise RuntimeError("call reset() before step()")
        knobs = sp.action_to_knobs(action, self.actuate, self.bounds, self.initial, self._knobs)
        m, t = self._m, self._t
        (updated,) = self._plant.update([knobs])
        row = metrics_row(t, m, self._target(t), knobs, updated)
        self._knobs, self._t = knobs, t + 1
        self._m = self._measure()
        reward = -abs(self._m.entropy - self._target(self._t))
        truncated = self._t >= self.horizon
        if truncated:
            self._plant = None
        info = {k: v for k, v in row.items() if not k.startswith("time/")}
        info["entropy/next"] = self._m.entropy
        return self._encode(), float(reward), False, truncated, info

    def close(self) -> None:
        self._plant = None
        super().close()
