"""What the gym environments show and take: observation fields and the action <-> knob mapping.

Shared by ``EntropySim-v0``, ``EntropyTrain-v0`` and the adapters, so a controller sees the same
numbers through an env as it does in the trainer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from gymnasium import spaces

from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs

#: Observation vector fields, in order. Measurements are of the rollout batch of the current
#: step, before its update; clip fractions are those of the previous update (0 before the
#: first); ``dh_pos``/``dh_neg`` the first-order entropy change of the A>0 / A<0 tokens;
#: ``mixed_groups`` the fraction of groups with both right and wrong answers (where GRPO has a
#: signal at all); ``knob_*`` the knobs applied at the previous step; ``error`` = target - entropy;
#: ``progress`` = step / (horizon - 1).
OBSERVATION_FIELDS: tuple[str, ...] = (
    "entropy", "target", "next_target", "error", "progress",
    "accuracy", "reward_mean", "pos_token_frac", "neg_token_frac",
    "clip_frac_low", "clip_frac_high", "dh_pos", "dh_neg", "mixed_groups",
    "knob_w_pos", "knob_w_neg", "knob_eps_low", "knob_eps_high",
)

#: ``observation``: ``absolute`` (nats) or ``relative``: the entropy-valued fields below in units
#: of the episode's first measured entropy, so a policy trained on one entropy scale (the
#: simulator's ~0.5 nats) sees the same numbers on another (a real model's ~2.85)
OBSERVATIONS = ("absolute", "relative")
ENTROPY_FIELDS = ("entropy", "target", "next_target", "error", "dh_pos", "dh_neg")

#: Observation values are clipped to [-OBS_LIMIT, OBS_LIMIT] (eps_high = inf shows as OBS_LIMIT).
OBS_LIMIT = 1e4


def observation_space() -> spaces.Box:
    n = len(OBSERVATION_FIELDS)
    return spaces.Box(-OBS_LIMIT, OBS_LIMIT, shape=(n,), dtype=np.float32)


def action_space(actuate: Sequence[str]) -> spaces.Box:
    return spaces.Box(-1.0, 1.0, shape=(len(actuate),), dtype=np.float32)


def encode(step: int, horizon: int, target: float, next_target: float, knobs: Knobs,
           metrics: Mapping[str, float], scale: float = 1.0) -> np.ndarray:
    """The observation vector. Missing or NaN metrics become 0 (so the vector is finite);
    ``ENTROPY_FIELDS`` are divided by ``scale`` (the first entropy, for relative observations)."""
    h = float(metrics.get("entropy", math.nan))
    values = {
        "entropy": h, "target": target, "next_target": next_target, "error": target - h,
        "progress": step / max(horizon - 1, 1),
        **{f"knob_{k}": getattr(knobs, k) for k in KNOB_NAMES},
    }
    out = np.zeros(len(OBSERVATION_FIELDS), dtype=np.float32)
    for i, name in enumerate(OBSERVATION_FIELDS):
        v = values.get(name, metrics.get(name, math.nan))
        v = float(v) if v is not None else math.nan
        if name in ENTROPY_FIELDS and scale != 1.0:
            v = v / scale if scale > 0 else math.nan
        out[i] = 0.0 if math.isnan(v) else min(max(v, -OBS_LIMIT), OBS_LIMIT)
    return out


def decode(obs: np.ndarray) -> dict[str, float]:
    """Field name -> value of an observation vector."""
    return {name: float(v) for name, v in zip(OBSERVATION_FIELDS, np.asarray(obs, dtype=np.float32))}


def action_to_knobs(action: np.ndarray, actuate: Sequence[str], bounds: KnobBounds, initial: Knobs,
                    previous: Knobs | None = None) -> Knobs:
    """a in [-1, 1] per actuated knob -> knob = lo + (a + 1) / 2 (hi - lo); the other knobs stay
    at ``initial``; bounds and rate limits (against ``previous``) apply as in the Regulator."""
    a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
    if a.shape[0] != len(actuate):
        raise ValueError(f"expected an action of {len(actuate)} values (one per {list(actuate)}), "
                         f"got {a.shape[0]}")
    changes = {}
    for k, v in zip(actuate, a):
        lo, hi = bounds.range(k)
        changes[k] = lo + (v + 1.0) / 2.0 * (hi - lo) if math.isfinite(v) else getattr(initial, k)
    return bounds.clamp(initial.replace(**changes), previous, only=tuple(actuate))


def knobs_to_action(knobs: Knobs, actuate: Sequence[str], bounds: KnobBounds) -> np.ndarray:
    """Inverse of ``action_to_knobs`` (a knob with lo == hi maps to 0)."""
    out = []
    for k in actuate:
        lo, hi = bounds.range(k)
        v = getattr(knobs, k)
        out.append(0.0 if hi <= lo else 2.0 * (min(max(v, lo), hi) - lo) / (hi - lo) - 1.0)
    return np.asarray(out, dtype=np.float32)


def check_observation(kind: object) -> str:
    """The ``observation`` kwarg of the envs and the policy controller."""
    from regulator.errors import unknown_name_error

    if kind not in OBSERVATIONS:
        raise unknown_name_error("observation", kind, OBSERVATIONS, "observation kinds")
    return str(kind)
