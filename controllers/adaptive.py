"""Online estimate of each knob's effect on entropy: RLS with forgetting, plus a sign decision
that never flips on noise alone.

Model (one step = one time unit; k_t the knobs applied at step t, H_t the measured entropy):

    F_{k,t} = rho F_{k,t-1} + (k_{t-1} - k_ref)          filtered knob deviation
    H_t     = a + b tau + c tau^2 + sum_k g_k F_{k,t} + n_t    tau = t / 100 (a local drift)

With rho = 1 the plant is integrating (a knob sets the *rate* of entropy change, the GRPO case:
g_k is nats per step per unit knob); rho < 1 fits a plant with a lag. The fit is on levels, not
differences: the sensor noise n_t is white (docs/regimes.md §4) and large, and differencing
would double it while the per-step knob effect is a few thousandths of a nat. F_t uses knobs up
to t-1 only, so it is independent of n_t even in closed loop.

Recursive least squares with exponential forgetting lambda (Ljung):
    e = H_t - phi^T theta,   K = P phi / (lambda + phi^T P phi)
    theta += K e,            P = (P - K phi^T P) / lambda
The noise variance s2 is an EWMA of e^2 (a-priori residuals), the standard error of g_k is
se_k = sqrt(s2 P_kk) and its t-statistic z_k = g_k / se_k.

Sign decision (hysteresis + confidence bound): the sign s_k starts at a prior (the configured
direction) and flips only after ``confirm`` consecutive steps with z_k beyond ``z`` on the other
side. Before the first confident estimate, ``prior: dh`` lets the per-sign first-order
statistics (``dh_pos`` for w_pos, ``dh_neg`` for w_neg, EMA-smoothed) set the sign instead; they
are evidence about direction, not ground truth, so the RLS overrides them once it is confident.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: the per-sign first-order statistic that speaks about each weight knob
DH_KEY = {"w_pos": "dh_pos", "w_neg": "dh_neg"}


def prbs(step: int, hold: int, salt: int = 0) -> float:
    """A deterministic pseudo-random +-1 sequence, constant over blocks of ``hold`` steps.

    Stateless (a hash of the block index), so controller state stays small and exact on resume.
    """
    x = (step // max(hold, 1)) * 0x9E3779B1 + salt * 0x85EBCA77 + 0x27D4EB2F
    x = (x ^ (x >> 15)) * 0x2C1B3C6D & 0xFFFFFFFF
    x = (x ^ (x >> 12)) * 0x297A2D39 & 0xFFFFFFFF
    x ^= x >> 15
    return 1.0 if x & 1 else -1.0


class KnobEffectEstimator:
    """Tracks g_k (entropy response per unit knob) for each knob in ``knobs``; see module doc.

    ``update(entropy, applied, dh)`` once per step with the knobs applied at the previous step;
    then ``sign(k)``, ``gain(k)``, ``zscore(k)``, ``confident(k)``.
    """

    def __init__(self, knobs: Sequence[str], reference: Mapping[str, float],
                 prior: Mapping[str, int], *, forgetting: float = 0.99, memory: float = 1.0,
                 z: float = 2.5, confirm: int = 5, warmup: int = 20, noise_floor: float = 0.02,
                 use_dh: bool = False, dh_ema: float = 0.9, p0: float = 100.0) -> None:
        self.knobs = tuple(knobs)
        self.reference = {k: float(reference[k]) for k in self.knobs}
        self.prior = {k: int(prior[k]) for k in self.knobs}
        self.forgetting = forgetting
        self.memory = memory
        self.z = z
        self.confirm = confirm
        self.warmup = warmup
        self.use_dh = use_dh
        self.dh_ema = dh_ema
        self.p0 = p0
        self.noise_floor = noise_floor
        self.clear()

    @property
    def dim(self) -> int:
        return 3 + len(self.knobs)

    def clear(self) -> None:
        n = self.dim
        self.theta = [0.0] * n
        self.P = [[self.p0 if i == j else 0.0 for j in range(n)] for i in range(n)]
        self.F = {k: 0.0 for k in self.knobs}
        self.s2: float | None = None
        self.n = 0
        self.signs = dict(self.prior)
        self.against = {k: 0 for k in self.knobs}
        self.decided = {k: False for k in self.knobs}  # has the RLS been confident yet?
        self.dh = {k: 0.0 for k in self.knobs}
        self.flips = 0

    # --- estimation --------------------------------------------------------------------------
    def _phi(self, step: int) -> list[float]:
        tau = step / 100.0
        return [1.0, tau, tau * tau] + [self.F[k] for k in self.knobs]

    def update(self, step: int, entropy: float, applied: Mapping[str, float],
               dh: Mapping[str, float] | None = None) -> None:
        """One RLS step on (H_t, phi_t) with phi_t built from the knobs ``applied`` at t-1."""
        for k in self.knobs:
            self.F[k] = self.memory * self.F[k] + (float(applied[k]) - self.reference[k])
        phi = self._phi(step)
        n, lam = self.dim, self.forgetting
        Pphi = [sum(self.P[i][j] * phi[j] for j in range(n)) for i in range(n)]
        denom = lam + sum(phi[i] * Pphi[i] for i in range(n))
        err = entropy - sum(phi[i] * self.theta[i] for i in range(n))
        gain = [v / denom for v in Pphi]
        self.theta = [self.theta[i] + gain[i] * err for i in range(n)]
        self.P = [[(self.P[i][j] - gain[i] * Pphi[j]) / lam for j in range(n)] for i in range(n)]
        # a-priori residual variance; the first residuals carry the intercept's transient
        e2 = err * err / denom * lam if self.n > 0 else None
        if e2 is not None:
            self.s2 = e2 if self.s2 is None else 0.95 * self.s2 + 0.05 * e2
            # floor: a sensor is never better than ``noise_floor`` x H (a near-deterministic
            # start, e.g. a uniform policy, would otherwise make any wiggle look significant)
            self.s2 = max(self.s2, (self.noise_floor * abs(entropy)) ** 2)
        self.n += 1
        if dh is not None:
            for k in self.knobs:
                v = dh.get(DH_KEY.get(k, ""), math.nan)
                if math.isfinite(v):
                    self.dh[k] = self.dh_ema * self.dh[k] + (1 - self.dh_ema) * v
        self._decide()

    def _decide(self) -> None:
        """Hysteresis: flip s_k only after ``confirm`` consecutive confident contrary estimates."""
        for k in self.knobs:
            zk = self.zscore(k)
            if self.n < self.warmup or not math.isfinite(zk):
                continue
            if abs(zk) >= self.z:
                self.decided[k] = True
            if abs(zk) >= self.z and math.copysign(1, zk) != self.signs[k]:
                self.against[k] += 1
                if self.against[k] >= self.confirm:
                    self.signs[k] = -self.signs[k]
                    self.against[k] = 0
                    self.flips += 1
            else:
                self.against[k] = 0
            if self.use_dh and not self.decided[k] and k in DH_KEY and self.dh[k] != 0.0:
                self.signs[k] = 1 if self.dh[k] > 0 else -1

    # --- queries -----------------------------------------------------------------------------
    def _index(self, knob: str) -> int:
        return 3 + self.knobs.index(knob)

    def gain(self, knob: str) -> float:
        """g_k: entropy change per unit knob (per step when memory = 1)."""
        return self.theta[self._index(knob)]

    def stderr(self, knob: str) -> float:
        i = self._index(knob)
        if self.s2 is None:
            return math.inf
        return math.sqrt(max(self.s2 * self.P[i][i], 0.0))

    def zscore(self, knob: str) -> float:
        se = self.stderr(knob)
        return self.gain(knob) / se if se > 0 and math.isfinite(se) else 0.0

    def confident(self, knob: str) -> bool:
        """Is |g_k| / se_k at or beyond the confidence bound ``z`` now?"""
        return self.n >= self.warmup and abs(self.zscore(knob)) >= self.z

    def sign(self, knob: str) -> int:
        """s_k: +1 if raising the knob raises entropy, with hysteresis."""
        return self.signs[knob]

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for k in self.knobs:
            out[f"control/gain_est/{k}"] = self.gain(k)
            out[f"control/gain_sign/{k}"] = float(self.signs[k])
            out[f"control/gain_z/{k}"] = self.zscore(k)
        return out

    # --- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"theta": list(self.theta), "P": [list(r) for r in self.P], "F": dict(self.F),
                "s2": self.s2, "n": self.n, "signs": dict(self.signs),
                "against": dict(self.against), "decided": dict(self.decided),
                "dh": dict(self.dh), "flips": self.flips}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.theta = [float(v) for v in state["theta"]]
        self.P = [[float(v) for v in r] for r in state["P"]]
        self.F = {k: float(state["F"][k]) for k in self.knobs}
        self.s2 = None if state["s2"] is None else float(state["s2"])
        self.n = int(state["n"])
        self.signs = {k: int(state["signs"][k]) for k in self.knobs}
        self.against = {k: int(state["against"][k]) for k in self.knobs}
        self.decided = {k: bool(state["decided"][k]) for k in self.knobs}
        self.dh = {k: float(state["dh"][k]) for k in self.knobs}
        self.flips = int(state["flips"])
