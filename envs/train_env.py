"""``regulator/EntropyTrain-v0``: the entropy-tracking task over the real trainer.

One env step = one GRPO training step (``trainer.run.train_step``). ``reset`` builds the run
(model, DeepSpeed engine, rollout backend) from a training config, samples and measures the
first rollout batch and returns its observation. ``step(action)`` maps the action (a Box in
[-1, 1] per actuated knob, linearly onto the knob's bounds) to knobs, applies them to the update
of the batch already measured, then samples and measures the next batch. Observation:
``envs.spaces.OBSERVATION_FIELDS`` (also ``env.unwrapped.observation_fields``), the same fields
as EntropySim-v0. Reward: -|H_{t+1} - H*_{t+1}|. The episode is truncated after ``horizon``
steps. ``info`` is the trainer's metrics row of the step just taken (the trainer's metric names), without
the ``time/*`` entries (so equal seeds give equal infos), plus ``entropy/next`` = H_{t+1}.

Keyword arguments:
    config: a training config (path or mapping; default: ``configs/default.yaml`` of the checkout).
    overrides: ``key.path=value`` strings applied to it (as ``--set``).
    target: a target spec (default: the config's ``control.target``).
    actuate: knob names the action moves (default ``regulator.knobs.DEFAULT_ACTUATE``).
    bounds, initial: as ``control.bounds`` / ``control.initial`` (default: the config's).
    horizon: steps per episode (default: the config's ``train.steps``).
    observation: ``absolute`` (nats) or ``relative`` (entropy fields in units of the episode's
        first entropy), as in EntropySim-v0.
``reset(seed=s)`` sets ``train.seed = s`` (model init, prompts and sampling): equal seeds give
equal trajectories. Nothing is written to disk.

How: the trainer runs in a worker thread; its controller hands each Observation to the env and
waits for the env's knobs, so ``train_step`` is the same code ``regulator train`` runs, with the
same Regulator safety layer (bounds, rate limits) between the action and the update.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from envs import spaces as sp
from regulator.config import apply_overrides, load_yaml
from regulator.controller import Controller
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import DEFAULT_ACTUATE, KNOB_NAMES, KnobBounds, Knobs
from regulator.observation import Observation

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"
_METRICS = ("accuracy", "reward_mean", "pos_token_frac", "neg_token_frac", "clip_frac_low",
            "clip_frac_high")


class _Stop(BaseException):
    """Ends the trainer thread (a BaseException, so the Regulator's fault handler lets it pass)."""


class _Handshake(Controller):
    """A controller that asks the env: it posts the observation and waits for the knobs."""

    name = "gym-env"

    def __init__(self, out: queue.Queue, inbox: queue.Queue) -> None:
        self.out, self.inbox = out, inbox

    def act(self, obs: Observation) -> Knobs:
        self.out.put(("obs", obs))
        item = self.inbox.get()
        if item is None:
            raise _Stop
        return item


class EntropyTrainEnv(gym.Env):
    __doc__ = __doc__

    metadata = {"render_modes": []}
    observation_fields = sp.OBSERVATION_FIELDS

    def __init__(self, config: str | Path | Mapping[str, Any] | None = None,
                 overrides: Sequence[str] = (), target: Mapping[str, Any] | float | None = None,
                 actuate: Sequence[str] | str = DEFAULT_ACTUATE,
                 bounds: KnobBounds | Mapping[str, Any] | None = None,
                 initial: Knobs | Mapping[str, Any] | None = None, horizon: int | None = None,
                 observation: str = "absolute") -> None:
        from trainer.config import TrainConfig

        raw = load_yaml(config if config is not None else DEFAULT_CONFIG) \
            if not isinstance(config, Mapping) else dict(config)
        raw = apply_overrides(raw, list(overrides))
        self._raw = raw
        self.cfg = TrainConfig.from_mapping(raw)
        if not isinstance(actuate, (str, list, tuple)):
            raise ConfigError("actuate", "a knob name or a list of knob names", actuate)
        actuate = (actuate,) if isinstance(actuate, str) else tuple(actuate)
        if not actuate:
            raise ConfigError("actuate", "at least one knob name", list(actuate))
        for i, k in enumerate(actuate):
            if k not in KNOB_NAMES:
                raise unknown_name_error(f"actuate[{i}]", k, KNOB_NAMES, "knob names")
        self.actuate = actuate
        self.bounds = bounds if isinstance(bounds, KnobBounds) else (
            KnobBounds.from_mapping(bounds) if bounds is not None else self.cfg.control.bounds)
        self.initial = initial if isinstance(initial, Knobs) else (
            Knobs.from_mapping(initial) if initial is not None else self.cfg.control.initial)
        from regulator.knobs import check_initial_in_bounds

        check_initial_in_bounds(self.initial, self.bounds, self.actuate)
        self.relative = sp.check_observation(observation) == "relative"
        self._scale = 1.0
        self.target_spec = target if target is not None else self.cfg.control.target
        from regulator.targets import make_target

        make_target(self.target_spec, key="target")  # validate now
        self.horizon = int(horizon if horizon is not None else self.cfg.train.steps)
        if self.horizon < 1:
            raise ConfigError("horizon", "an integer >= 1", horizon)
        self.observation_space = sp.observation_space()
        self.action_space = sp.action_space(self.actuate)
        self._thread: threading.Thread | None = None
        self._seed = self.cfg.train.seed

    # -- the trainer thread ---------------------------------------------------------------------
    def _start(self, seed: int) -> Observation:
        from regulator.safety import Regulator
        from regulator.targets import make_target
        from trainer.config import TrainConfig
        from trainer.run import build_session

        raw = apply_overrides(self._raw, [f"train.seed={seed}", f"train.steps={self.horizon + 1}"])
        cfg = TrainConfig.from_mapping(raw)
        self._out: queue.Queue = queue.Queue()
        self._inbox: queue.Queue = queue.Queue()
        regulator = Regulator(_Handshake(self._out, self._inbox), make_target(self.target_spec),
                              initial=self.initial, bounds=self.bounds, actuate=self.actuate,
                              total_steps=self.horizon)
        session = build_session(cfg, regulator=regulator)
        self._regulator = regulator

        def loop() -> None:
            from trainer.run import train_step

            try:
                for step in range(self.horizon + 1):
                    row = train_step(session.run, step)
                    if row.get("train/skipped"):  # no observation to hand out: end the episode
                        raise RuntimeError(session.run.regulator.last_event)
                    self._out.put(("row", row))
            except _Stop:
                return
            except BaseException as e:  # noqa: BLE001 - reported to the env
                self._out.put(("error", e))

        self._thread = threading.Thread(target=loop, name="EntropyTrain-v0", daemon=True)
        self._thread.start()
        return self._expect("obs")

    def _expect(self, kind: str) -> Any:
        got, value = self._out.get()
        if got == "error":
            raise RuntimeError(f"the trainer failed: {type(value).__name__}: {value}") from value
        if got != kind:  # pragma: no cover - protocol bug
            raise RuntimeError(f"EntropyTrain-v0: expected {kind}, got {got}")
        return value

    def _stop(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join(timeout=60)
        self._thread = None

    # -- gym API -----------------------------------------------------------------------------------
    def _encode(self, obs: Observation) -> np.ndarray:
        metrics = {"entropy": obs.entropy, **{k: getattr(obs, k) for k in _METRICS}, **obs.extras}
        return sp.encode(obs.step, self.horizon, obs.target, obs.next_target, obs.knobs, metrics,
                         scale=self._scale)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._stop()
        if seed is not None:
            self._seed = int(seed)
        self._obs = self._start(self._seed)
        self._scale = self._obs.entropy if self.relative else 1.0
        self._knobs = self.initial
        self._t = 0
        return self._encode(self._obs), {}

    def step(self, action: np.ndarray):
        if self._thread is None:
            raise RuntimeError("call reset() before step()")
        knobs = sp.action_to_knobs(action, self.actuate, self.bounds, self.initial, self._knobs)
        self._inbox.put(knobs)
        row = self._expect("row")
        self._knobs = knobs
        self._t += 1
        self._obs = self._expect("obs")
        reward = -abs(self._obs.entropy - self._obs.target)
        truncated = self._t >= self.horizon
        if truncated:
            self._stop()
        info = {k: v for k, v in row.items() if not k.startswith("time/")}
        info["entropy/next"] = self._obs.entropy
        return self._encode(self._obs), float(reward), False, truncated, info

    def close(self) -> None:
        self._stop()
        super().close()
