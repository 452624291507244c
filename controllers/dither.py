"""Identify each control direction's effect on entropy in closed loop, without the closed-loop bias.

Why an instrument: a controller moves its knobs *because of* the entropy it measured, so the knob
history correlates with the plant's own drift (an accelerating collapse makes a feedback
controller push the "raise" way harder). Regressing entropy on the knob history then credits the
drift to the knobs and can lock in the wrong sign with a large z-score. A dither the controller
adds from a fixed pseudo-random sequence is independent of the drift and of the sensor noise;
using it as the instrument of the regression keeps the estimate consistent in closed loop
(instrumental-variable least squares, Söderström & Stoica).

The dither: for each direction j a sequence of block pairs, each pair (+a, -a) or (-a, +a) with
the order drawn from a hash of (pair, j), every block ``hold`` steps long. Its running sum
returns to zero after every pair, so it carries no low-frequency content for the drift terms or
the feedback loop to absorb, and different directions are uncorrelated.

Model (one step = one time unit; the plant integrates: a knob sets the *rate* of change):

    H_t = a + b tau + c tau^2 + sum_j g_j X_{j,t} + n_t,   tau = (t - t_0) / 100
    X_{j,t} = sum_{s<t} (projection of the applied knobs at s on direction j)
    Z_{j,t} = sum_{s<t} dither_{j,s}                        (the instrument of X_j)

IV recursive least squares with forgetting lambda:
    K = P zeta / (lambda + phi^T P zeta),  theta += K (H_t - phi^T theta),
    P = (P - K phi^T P) / lambda,          R = lambda R + zeta zeta^T
Cov(theta) ~ s2 P R P^T, with s2 an EWMA of the a-priori residuals (floored at a fraction of H:
no sensor is perfect). g_j is nats per step per unit of direction j.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def paired_dither(step: int, hold: int, salt: int) -> float:
    """+-1, constant over blocks of ``hold`` steps; each pair of blocks sums to zero."""
    block = step // max(hold, 1)
    pair, second = divmod(block, 2)
    x = (pair * 0x9E3779B1 + salt * 0x85EBCA77 + 0x27D4EB2F) & 0xFFFFFFFF
    x = (x ^ (x >> 15)) * 0x2C1B3C6D & 0xFFFFFFFF
    x = (x ^ (x >> 12)) * 0x297A2D39 & 0xFFFFFFFF
    first = 1.0 if (x ^ (x >> 15)) & 1 else -1.0
    return -first if second else first


class DitherIVEstimator:
    """Effect g_j of each direction on entropy, estimated with the dither as instrument.

    ``update(step, entropy, moves, dithers)`` once per step with the previous step's applied
    move along each direction and the dither part of it; then ``gain(j)``, ``zscore(j)``.
    """

    TREND = 3  # intercept, slope, curvature of the local drift

    def __init__(self, directions: Sequence[str], *, forgetting: float = 0.98, warmup: int = 16,
                 noise_floor: float = 0.01, p0: float = 1e4) -> None:
        self.directions = tuple(directions)
        self.forgetting = float(forgetting)
        self.warmup = int(warmup)
        self.noise_floor = float(noise_floor)
        self.p0 = float(p0)
        self.clear()

    @property
    def dim(self) -> int:
        return self.TREND + len(self.directions)

    def clear(self) -> None:
        n = self.dim
        self.theta = np.zeros(n)
        self.P = np.eye(n) * self.p0
        self.R = np.zeros((n, n))
        self.X = np.zeros(len(self.directions))
        self.Z = np.zeros(len(self.directions))
        self.s2: float | None = None
        self.n = 0
        self.t0: int | None = None

    def _trend(self, step: int) -> list[float]:
        tau = (step - (self.t0 or 0)) / 100.0
        return [1.0, tau, tau * tau]

    def update(self, step: int, entropy: float, moves: Sequence[float], dithers: Sequence[float]) -> None:
        """One IV-RLS step on H_t with the moves and dithers applied at step t-1."""
        if self.t0 is None:
            self.t0 = step
            self.theta[0] = entropy  # start the intercept at the first level (no transient in s2)
        self.X += np.asarray(moves, dtype=float)
        self.Z += np.asarray(dithers, dtype=float)
        phi = np.array(self._trend(step) + self.X.tolist())
        zeta = np.array(self._trend(step) + self.Z.tolist())
        lam = self.forgetting
        Pz = self.P @ zeta
        denom = lam + float(phi @ Pz)
        if abs(denom) < 1e-12:
            return
        err = entropy - float(phi @ self.theta)
        K = Pz / denom
        self.theta = self.theta + K * err
        self.P = (self.P - np.outer(K, phi @ self.P)) / lam
        self.R = lam * self.R + np.outer(zeta, zeta)
        if self.n >= self.TREND:  # the first residuals carry the trend's start-up transient
            e2 = err * err
            self.s2 = e2 if self.s2 is None else 0.95 * self.s2 + 0.05 * e2
            self.s2 = max(self.s2, (self.noise_floor * abs(entropy)) ** 2)
        self.n += 1

    def _index(self, direction: str) -> int:
        return self.TREND + self.directions.index(direction)

    def gain(self, direction: str) -> float:
        """g_j: entropy change per step per unit move along ``direction``."""
        return float(self.theta[self._index(direction)])

    def stderr(self, direction: str) -> float:
        if self.s2 is None or self.n < self.warmup:
            return math.inf
        i = self._index(direction)
        var = float(self.s2 * (self.P[i] @ self.R @ self.P[i]))
        return math.sqrt(var) if var > 0 and math.isfinite(var) else math.inf

    def zscore(self, direction: str) -> float:
        se = self.stderr(direction)
        return self.gain(direction) / se if math.isfinite(se) and se > 0 else 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"theta": self.theta.tolist(), "P": self.P.tolist(), "R": self.R.tolist(),
                "X": self.X.tolist(), "Z": self.Z.tolist(), "s2": self.s2, "n": self.n, "t0": self.t0}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.theta = np.asarray(state["theta"], dtype=float)
        self.P = np.asarray(state["P"], dtype=float)
        self.R = np.asarray(state["R"], dtype=float)
        self.X = np.asarray(state["X"], dtype=float)
        self.Z = np.asarray(state["Z"], dtype=float)
        self.s2 = None if state["s2"] is None else float(state["s2"])
        self.n = int(state["n"])
        self.t0 = None if state["t0"] is None else int(state["t0"])
