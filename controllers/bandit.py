"""``bandit``: pick knob settings from a finite set of arms by their tracking reward.

Arms: the Cartesian product of the listed values per knob, e.g. ``{w_pos: [0, 0.5, 1],
w_neg: [0.5, 1]}`` -> 6 arms. An arm is held for ``hold`` steps; the reward of a pull is
computed at the following ``act`` calls from the new observations (measured after the arm was
applied): g = exp(-|target - H| / reward_scale) in (0, 1], from the observation at the end of the
hold (the first one made after the arm acted ``hold`` steps). Plants respond with delay and lag,
so ``hold`` should cover the response time: with hold 1 on a plant with one step of delay the
reward measures the previous arm.

Algorithms (statistics are per context when ``context`` is on; context = sign of the error at
the pull):
- ``ducb``: discounted UCB (Garivier & Moulines 2011) for non-stationary plants:
  N_i <- gamma N_i + [i pulled], S_i <- gamma S_i + [i pulled] g;
  pick argmax S_i / N_i + c sqrt(log(sum_j N_j) / N_i), untried arms first.
- ``thompson``: Gaussian Thompson sampling on the same discounted (or sliding-window) statistics:
  theta_i ~ Normal((S_i + n0 m0) / (N_i + n0), sigma^2 / (N_i + n0)), prior m0 = 1, n0 = 1.
- ``exp3``: EXP3 (Auer et al. 2002): p_i = (1 - eta) w_i / sum w + eta / K, w_i <- w_i exp(eta
  g / (p_i K)) for the pulled arm (log-weights kept for stability).
With ``window`` set, ducb/thompson use the last ``window`` pulls instead of discounting.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from controllers import _params as P
from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import DEFAULT_ACTUATE, KNOB_NAMES, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema

_CONTEXTS = ("neg", "pos")  # sign of e = target - H at the pull ("pos": entropy too low)


def _arm_values(knob: str, v: Any, key: str) -> list[float]:
    if not isinstance(v, (list, tuple)) or not v:
        raise ConfigError(key, "a non-empty list of values", v)
    return [P.knob_value(knob, x, f"{key}[{i}]") for i, x in enumerate(v)]


#: knob -> the values its arms take
ArmValues = P.knob_map(_arm_values, "list of values", list[float])


class BanditParams(Schema):
    """Parameters of ``bandit``."""

    arms: ArmValues
    """Knob -> non-empty list of values; the arms are their Cartesian product (knobs in the
    order w_pos, w_neg, eps_low, eps_high). Every listed knob must be actuated, every value
    inside ``control.bounds``. Required, e.g. ``{w_pos: [0.0, 0.5, 1.0]}``."""
    algorithm: Literal["ducb", "thompson", "exp3"] = "ducb"
    """Discounted UCB, Gaussian Thompson sampling or EXP3."""
    hold: int = Field(1, ge=1)
    """Steps each pull is held; the reward is the error measured after the last of them, so
    set it to the plant's response time (a few steps)."""
    reward_scale: float = Field(0.1, gt=0)
    """Nats; the reward of a pull is g = exp(-|e| / reward_scale)."""
    discount: float = Field(0.99, gt=0, le=1)
    """gamma of the ducb / thompson statistics (1 = no forgetting)."""
    window: int | None = Field(None, ge=1)
    """A sliding window (pulls) for ducb / thompson instead of discounting."""
    ucb_c: float = Field(0.5, ge=0)
    """ducb exploration constant c."""
    sigma: float = Field(0.25, gt=0)
    """thompson reward noise scale."""
    exp3_eta: float = Field(0.1, gt=0, le=1)
    """exp3 exploration / learning rate eta."""
    context: bool = False
    """Keep separate statistics for e > 0 and e <= 0."""
    seed: int = Field(0, ge=0)
    """Seed of the numpy Generator (its state is saved with the controller)."""

    @field_validator("arms")
    @classmethod
    def _some_arm(cls, v: dict[str, list[float]] | None) -> dict[str, list[float]]:
        if not v:
            raise ConfigError("", "at least one knob with a list of values", v)
        return v


class BanditController(Controller):
    """A multi-armed bandit over knob settings; reward = minus the tracking error (via exp)."""

    name = "bandit"
    Params = BanditParams
    params: BanditParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        arms = self.params.arms
        self.knobs = tuple(k for k in KNOB_NAMES if k in arms)
        self.arms: list[dict[str, float]] = [
            dict(zip(self.knobs, combo)) for combo in itertools.product(*(arms[k] for k in self.knobs))
        ]
        self._clear()

    # --- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        k = len(self.arms)
        self.rng = np.random.default_rng(self.params.seed)
        self.counts = {c: [0.0] * k for c in _CONTEXTS}   # discounted N_i
        self.sums = {c: [0.0] * k for c in _CONTEXTS}     # discounted S_i
        self.logw = {c: [0.0] * k for c in _CONTEXTS}     # exp3 log-weights
        self.history: deque[tuple[str, int, float]] = deque(maxlen=self.params.window)
        self.pulls = [0] * k                               # undiscounted, all contexts
        self.current: int | None = None
        self.current_ctx = "neg"
        self.current_p = 1.0                               # exp3 probability of the pull
        self.held = 0

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = DEFAULT_ACTUATE) -> None:
        super().reset(initial, bounds, actuate)
        P.require_actuated("bandit", self.knobs, self.actuate)
        for arm in self.arms:
            P.require_in_bounds("a bandit arm", arm, bounds)
        self._clear()

    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": self.rng.bit_generator.state,
            "counts": self.counts, "sums": self.sums, "logw": self.logw,
            "history": [list(h) for h in self.history], "pulls": self.pulls,
            "current": self.current, "current_ctx": self.current_ctx, "current_p": self.current_p,
            "held": self.held,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.counts = {c: [float(x) for x in state["counts"][c]] for c in _CONTEXTS}
        self.sums = {c: [float(x) for x in state["sums"][c]] for c in _CONTEXTS}
        self.logw = {c: [float(x) for x in state["logw"][c]] for c in _CONTEXTS}
        self.history = deque(((str(c), int(i), float(g)) for c, i, g in state["history"]),
                             maxlen=self.params.window)
        self.pulls = [int(x) for x in state["pulls"]]
        self.current = None if state["current"] is None else int(state["current"])
        self.current_ctx = str(state["current_ctx"])
        self.current_p = float(state["current_p"])
        self.held = int(state["held"])

    # --- statistics --------------------------------------------------------------------------
    def stats(self, ctx: str) -> tuple[np.ndarray, np.ndarray]:
        """(N_i, S_i) for context ``ctx``: discounted, or over the sliding window."""
        if self.params.window is None:
            return np.array(self.counts[ctx]), np.array(self.sums[ctx])
        n, s = np.zeros(len(self.arms)), np.zeros(len(self.arms))
        for c, i, g in self.history:
            if c == ctx:
                n[i] += 1.0
                s[i] += g
        return n, s

    def _update(self, ctx: str, arm: int, g: float) -> None:
        self.pulls[arm] += 1
        if self.params.algorithm == "exp3":
            k = len(self.arms)
            w = self.logw[ctx]
            w[arm] += self.params.exp3_eta * g / (self.current_p * k)
            top = max(w)
            self.logw[ctx] = [x - top for x in w]  # normalise: only ratios matter
            return
        if self.params.window is not None:
            self.history.append((ctx, arm, g))
            return
        n, s = self.counts[ctx], self.sums[ctx]
        for i in range(len(n)):
            n[i] *= self.params.discount
            s[i] *= self.params.discount
        n[arm] += 1.0
        s[arm] += g

    def exp3_probs(self, ctx: str) -> np.ndarray:
        w = np.exp(np.array(self.logw[ctx]))
        k = len(self.arms)
        return (1.0 - self.params.exp3_eta) * w / w.sum() + self.params.exp3_eta / k

    def _argmax(self, scores: np.ndarray) -> int:
        best = np.flatnonzero(scores == scores.max())
        return int(best[0] if len(best) == 1 else self.rng.choice(best))

    def _choose(self, ctx: str) -> int:
        if self.params.algorithm == "exp3":
            p = self.exp3_probs(ctx)
            arm = int(self.rng.choice(len(self.arms), p=p))
            self.current_p = float(p[arm])
            return arm
        n, s = self.stats(ctx)
        if self.params.algorithm == "ducb":
            untried = n < 1e-9
            if untried.any():
                return self._argmax(untried.astype(float))
            index = s / n + self.params.ucb_c * np.sqrt(math.log(max(n.sum(), 1.0 + 1e-12)) / n)
            return self._argmax(index)
        n0, m0 = 1.0, 1.0  # thompson prior: one pseudo-pull with the best reward
        mean = (s + n0 * m0) / (n + n0)
        theta = self.rng.normal(mean, self.params.sigma / np.sqrt(n + n0))
        return self._argmax(theta)

    # --- the loop ----------------------------------------------------------------------------
    def reward(self, obs: Observation) -> float:
        """g = exp(-|e| / reward_scale) in (0, 1]: 1 on target."""
        return math.exp(-abs(obs.error) / self.params.reward_scale)

    def act(self, obs: Observation) -> Knobs:
        if self.current is None or self.held >= self.params.hold:
            if self.current is not None:  # obs was measured after the arm acted for `hold` steps
                self._update(self.current_ctx, self.current, self.reward(obs))
            ctx = ("pos" if obs.error > 0 else "neg") if self.params.context else "neg"
            self.current, self.current_ctx = self._choose(ctx), ctx
            self.held = 0
        self.held += 1
        return self.with_actuated(self.arms[self.current])
