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
from typing import Any

import numpy as np

from controllers import _params as P
from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.registry import register_controller

ALGORITHMS = ("ducb", "thompson", "exp3")
_CONTEXTS = ("neg", "pos")  # sign of e = target - H at the pull ("pos": entropy too low)


@register_controller("bandit")
class BanditController(Controller):
    """A multi-armed bandit over knob settings; reward = minus the tracking error (via exp).

    Params (defaults in brackets):
        arms [required]: mapping knob -> non-empty list of values; arms = their Cartesian
            product (knobs in the order w_pos, w_neg, eps_low, eps_high). Every listed knob must
            be actuated, every value inside ``control.bounds``.
        algorithm ["ducb"]: ``ducb``, ``thompson`` or ``exp3``.
        hold [1]: steps each pull is held (integer >= 1); the reward is the error measured after
            the last of them, so set it to the plant's response time (a few steps).
        reward_scale [0.1]: nats; g = exp(-|e| / reward_scale) (> 0).
        discount [0.99]: gamma of ducb / thompson statistics, in (0, 1] (1 = no forgetting).
        window [None]: sliding window (pulls, >= 1) for ducb / thompson instead of discounting.
        ucb_c [0.5]: ducb exploration constant c (>= 0).
        sigma [0.25]: thompson reward noise scale (> 0).
        exp3_eta [0.1]: exp3 exploration / learning rate eta, in (0, 1].
        context [false]: keep separate statistics for e > 0 and e <= 0.
        seed [0]: integer seed of the numpy Generator (its state is in ``state_dict``).
    """

    def __init__(
        self,
        arms: dict[str, list[float]] | None = None,
        algorithm: str = "ducb",
        hold: int = 1,
        reward_scale: float = 0.1,
        discount: float = 0.99,
        window: int | None = None,
        ucb_c: float = 0.5,
        sigma: float = 0.25,
        exp3_eta: float = 0.1,
        context: bool = False,
        seed: int = 0,
    ) -> None:
        if arms is None:
            raise ConfigError("arms", "a mapping knob -> list of values, e.g. {w_pos: [0.0, 0.5, 1.0]}")
        spec = P.knob_mapping("arms", arms)
        if not spec:
            raise ConfigError("arms", "at least one knob with a list of values", arms)
        values: dict[str, list[float]] = {}
        for k in KNOB_NAMES:
            if k not in spec:
                continue
            vs = spec[k]
            if not isinstance(vs, (list, tuple)) or not vs:
                raise ConfigError(f"arms.{k}", "a non-empty list of values", vs)
            values[k] = [P.knob_value(f"arms.{k}[{i}]", k, v) for i, v in enumerate(vs)]
        self.knobs = tuple(values)
        self.arms: list[dict[str, float]] = [
            dict(zip(self.knobs, combo)) for combo in itertools.product(*values.values())
        ]
        self.algorithm = P.choice("algorithm", algorithm, ALGORITHMS, "bandit algorithms")
        self.hold = P.integer("hold", hold, minimum=1)
        self.reward_scale = P.number("reward_scale", reward_scale, above=0.0)
        self.discount = P.number("discount", discount, above=0.0, maximum=1.0)
        self.window = None if window is None else P.integer("window", window, minimum=1)
        self.ucb_c = P.number("ucb_c", ucb_c, minimum=0.0)
        self.sigma = P.number("sigma", sigma, above=0.0)
        self.exp3_eta = P.number("exp3_eta", exp3_eta, above=0.0, maximum=1.0)
        self.context = P.boolean("context", context)
        self.seed = P.integer("seed", seed, minimum=0)
        self._clear()

    # --- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        k = len(self.arms)
        self.rng = np.random.default_rng(self.seed)
        self.counts = {c: [0.0] * k for c in _CONTEXTS}   # discounted N_i
        self.sums = {c: [0.0] * k for c in _CONTEXTS}     # discounted S_i
        self.logw = {c: [0.0] * k for c in _CONTEXTS}     # exp3 log-weights
        self.history: deque[tuple[str, int, float]] = deque(maxlen=self.window)
        self.pulls = [0] * k                               # undiscounted, all contexts
        self.current: int | None = None
        self.current_ctx = "neg"
        self.current_p = 1.0                               # exp3 probability of the pull
        self.held = 0

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = ("w_pos",)) -> None:
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
                             maxlen=self.window)
        self.pulls = [int(x) for x in state["pulls"]]
        self.current = None if state["current"] is None else int(state["current"])
        self.current_ctx = str(state["current_ctx"])
        self.current_p = float(state["current_p"])
        self.held = int(state["held"])

    # --- statistics --------------------------------------------------------------------------
    def stats(self, ctx: str) -> tuple[np.ndarray, np.ndarray]:
        """(N_i, S_i) for context ``ctx``: discounted, or over the sliding window."""
        if self.window is None:
            return np.array(self.counts[ctx]), np.array(self.sums[ctx])
        n, s = np.zeros(len(self.arms)), np.zeros(len(self.arms))
        for c, i, g in self.history:
            if c == ctx:
                n[i] += 1.0
                s[i] += g
        return n, s

    def _update(self, ctx: str, arm: int, g: float) -> None:
        self.pulls[arm] += 1
        if self.algorithm == "exp3":
            k = len(self.arms)
            w = self.logw[ctx]
            w[arm] += self.exp3_eta * g / (self.current_p * k)
            top = max(w)
            self.logw[ctx] = [x - top for x in w]  # normalise: only ratios matter
            return
        if self.window is not None:
            self.history.append((ctx, arm, g))
            return
        n, s = self.counts[ctx], self.sums[ctx]
        for i in range(len(n)):
            n[i] *= self.discount
            s[i] *= self.discount
        n[arm] += 1.0
        s[arm] += g

    def exp3_probs(self, ctx: str) -> np.ndarray:
        w = np.exp(np.array(self.logw[ctx]))
        k = len(self.arms)
        return (1.0 - self.exp3_eta) * w / w.sum() + self.exp3_eta / k

    def _argmax(self, scores: np.ndarray) -> int:
        best = np.flatnonzero(scores == scores.max())
        return int(best[0] if len(best) == 1 else self.rng.choice(best))

    def _choose(self, ctx: str) -> int:
        if self.algorithm == "exp3":
            p = self.exp3_probs(ctx)
            arm = int(self.rng.choice(len(self.arms), p=p))
            self.current_p = float(p[arm])
            return arm
        n, s = self.stats(ctx)
        if self.algorithm == "ducb":
            untried = n < 1e-9
            if untried.any():
                return self._argmax(untried.astype(float))
            index = s / n + self.ucb_c * np.sqrt(math.log(max(n.sum(), 1.0 + 1e-12)) / n)
            return self._argmax(index)
        n0, m0 = 1.0, 1.0  # thompson prior: one pseudo-pull with the best reward
        mean = (s + n0 * m0) / (n + n0)
        theta = self.rng.normal(mean, self.sigma / np.sqrt(n + n0))
        return self._argmax(theta)

    # --- the loop ----------------------------------------------------------------------------
    def reward(self, obs: Observation) -> float:
        """g = exp(-|e| / reward_scale) in (0, 1]: 1 on target."""
        return math.exp(-abs(obs.error) / self.reward_scale)

    def act(self, obs: Observation) -> Knobs:
        if self.current is None or self.held >= self.hold:
            if self.current is not None:  # obs was measured after the arm acted for `hold` steps
                self._update(self.current_ctx, self.current, self.reward(obs))
            ctx = ("pos" if obs.error > 0 else "neg") if self.context else "neg"
            self.current, self.current_ctx = self._choose(ctx), ctx
            self.held = 0
        self.held += 1
        return self.with_actuated(self.arms[self.current])
