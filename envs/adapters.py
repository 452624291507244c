"""Adapters between controllers and gym policies.

- ``ControllerPolicy``: any registered controller (or Controller instance) as a policy
  ``obs -> action`` in ``EntropySim-v0`` / ``EntropyTrain-v0``, behind the same Regulator safety
  layer the trainer uses, so the env run and a direct run give the same trajectory.
- ``PolicyController`` (registry name ``policy``): any callable ``obs -> action`` (an agent
  trained with a gymnasium-compatible RL library, say) as a Controller the trainer can use:
  ``control: {controller: policy, params: {policy: "my_pkg.agents:act"}}`` (after ``import envs``;
  or ``controller: envs.adapters:PolicyController`` without it).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import PlainValidator

from envs import spaces as sp
from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import DEFAULT_ACTUATE, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.registry import make_controller, register_controller
from regulator.safety import Regulator
from regulator.schema import Schema, resolve

#: observation fields handed on to the controller as metrics (Observation fields or extras)
_METRIC_FIELDS = ("accuracy", "reward_mean", "pos_token_frac", "neg_token_frac", "clip_frac_low",
                  "clip_frac_high", "dh_pos", "dh_neg", "mixed_groups")


class ControllerPolicy:
    """A controller run as a gym policy: ``action = policy(obs)``.

    Settings (target, actuate, bounds, initial, horizon) come from ``env`` (its unwrapped env)
    unless given. The step is read from the observation's ``progress``; a step-0 observation
    starts a fresh controller and Regulator (so one policy object serves many episodes). A batch
    of observations ([num_envs, fields], from a vector env) gets one controller per row.
    """

    def __init__(self, controller: str | Controller, params: Mapping[str, Any] | None = None, *,
                 env: Any = None, target: Any = None, actuate: tuple[str, ...] | None = None,
                 bounds: KnobBounds | None = None, initial: Knobs | None = None,
                 horizon: int | None = None) -> None:
        u = getattr(env, "unwrapped", env)
        self.controller_spec = controller
        self.params = dict(params or {})
        self.target = target if target is not None else getattr(u, "target_spec", None)
        self.actuate = tuple(actuate or getattr(u, "actuate", DEFAULT_ACTUATE))
        self.bounds = bounds or getattr(u, "bounds", None) or KnobBounds()
        self.initial = initial or getattr(u, "initial", None) or Knobs()
        self.horizon = int(horizon or getattr(u, "horizon", 0))
        if self.target is None or self.horizon < 1:
            raise ConfigError("ControllerPolicy", "an env, or target and horizon", None)
        self.regulators: list[Regulator | None] = []

    def _new_regulator(self) -> Regulator:
        c = self.controller_spec
        if isinstance(c, Controller):
            if len(self.regulators) > 1:
                raise ValueError("a Controller instance serves one env; pass a registry name for a batch")
            controller = c
        else:
            controller = make_controller(c, **self.params)
        return Regulator(controller, self.target, initial=self.initial, bounds=self.bounds,
                         actuate=self.actuate, total_steps=self.horizon)

    @property
    def regulator(self) -> Regulator | None:
        """The Regulator of the first (or only) env."""
        return self.regulators[0] if self.regulators else None

    @property
    def knobs(self) -> Knobs | None:
        """The knobs the last action of the first (or only) env stands for."""
        r = self.regulator
        return None if r is None else r.knobs

    def _act(self, i: int, obs: np.ndarray) -> np.ndarray:
        f = sp.decode(obs)
        step = int(round(f["progress"] * max(self.horizon - 1, 1)))
        while len(self.regulators) <= i:
            self.regulators.append(None)
        reg = self.regulators[i]
        if step == 0 or reg is None:
            reg = self.regulators[i] = self._new_regulator()
        knobs = reg.step(step, f["entropy"], **{k: f[k] for k in _METRIC_FIELDS})
        return sp.knobs_to_action(knobs, self.actuate, self.bounds)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if obs.ndim == 1:
            return self._act(0, obs)
        return np.stack([self._act(i, o) for i, o in enumerate(obs)])


def _load_callable(spec: str | Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    if callable(spec):
        return spec
    if not isinstance(spec, str) or ":" not in spec:
        raise ConfigError("policy", "a callable or 'package.module:attribute'", spec)
    obj: Any = resolve(spec, "policy")
    if inspect.isclass(obj):
        obj = obj()
    if not callable(obj):
        raise ConfigError("policy", "a callable obs -> action", spec)
    return obj


def _policy_spec(v: Any) -> Any:
    if callable(v) or (isinstance(v, str) and ":" in v):
        return v
    raise ConfigError("", "a callable or 'package.module:attribute'", v)


class PolicyParams(Schema):
    """Parameters of ``policy``."""

    policy: Annotated[Any, PlainValidator(_policy_spec)]
    """The callable ``obs -> action`` (required), or ``"package.module:attr"`` (a class there
    is instantiated with no arguments)."""
    observation: Literal["absolute", "relative"] = "absolute"
    """How the observation vector is encoded, as in the envs: ``relative`` divides entropies by
    the first one seen."""


@register_controller("policy")
class PolicyController(Controller):
    """A callable ``obs -> action`` (the env's observation vector and action box) as a Controller.

    The Observation is encoded exactly as the envs encode it; the action is mapped onto the
    actuated knobs' bounds.
    """

    Params = PolicyParams
    params: PolicyParams

    def __init__(self, policy: str | Callable[[np.ndarray], Any], observation: str = "absolute") -> None:
        super().__init__(policy=policy, observation=observation)
        policy = self.params.policy
        self.policy_spec = policy if isinstance(policy, str) else getattr(policy, "__name__", "callable")
        self.policy = _load_callable(policy)
        self.observation = self.params.observation
        self.scale: float | None = None  # the first entropy seen (relative observations)

    def act(self, obs: Observation) -> Knobs:
        metrics = {k: getattr(obs, k) for k in _METRIC_FIELDS if hasattr(obs, k)}
        metrics.update({k: v for k, v in obs.extras.items() if k in _METRIC_FIELDS})
        metrics["entropy"] = obs.entropy
        if self.scale is None:
            self.scale = obs.entropy if self.observation == "relative" else 1.0
        vec = sp.encode(obs.step, obs.total_steps, obs.target, obs.next_target, obs.knobs, metrics,
                        scale=self.scale)
        action = np.asarray(self.policy(vec), dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(action)):
            return self.initial.replace(**{k: math.nan for k in self.actuate})  # Regulator holds
        return sp.action_to_knobs(action, self.actuate, self.bounds, self.initial)

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = DEFAULT_ACTUATE) -> None:
        super().reset(initial, bounds, actuate)
        self.scale = None

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy_spec, "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = state.get("scale")
