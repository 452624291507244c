"""Knob identification from open-loop step probes, and PI gains by the SIMC rule.

Probe protocol (``regulator tune``): every run starts at the operating point k0 and holds it for
``start`` steps (early in training, where the knobs still have authority, CONTROL_NOTES §2);
then one knob k is stepped to k0 + delta or k0 - delta for ``probe_steps`` steps. A base run
keeps k0. Runs with the same seed are paired (same task, initial policy and sampling stream), so
the difference D_j = H_variant[start + j] - H_base[start + j] removes the common drift (the
natural collapse) and most of the sampling noise.

Model: an integrating plant with dead time theta (GRPO: the knob sets the *rate* of change):

    D_j = g * dk * max(j - theta, 0),       j = 1 .. probe_steps,   dk = +-delta

(the knob applied at step t first shows in H_{t+1}, so theta = 0 is the fastest response).
g (nats per step per unit knob) is least squares for each theta on a grid, theta the one with
the least squared error; the gain's standard error is the seed-to-seed spread of the per-seed
fits, se = sd / sqrt(n). Noise sigma: the base runs' step-to-step jitter, sd(diff H) / sqrt(2).

Tuning: SIMC for an integrating process with delay (Skogestad 2003), k e^{-theta s} / s:
    Kc = 1 / (k (tau_c + theta')),    tau_I = 4 (tau_c + theta'),    theta' = theta + 1,
in our PID's units (u per nat, ki = Kc / tau_I per step). tau_c, the closed-loop time constant,
is max(theta', the smallest value that keeps the noise in u, Kc sigma, below ``u_noise``).
u_noise = 0.3 (u units: weight units for w_pos / w_neg) was chosen among 0.1 / 0.2 / 0.3 on the
simulated plant (benchmarks/direction_auto.py; docs/tuning.md): 0.1 left the integral far too
slow to cancel the plant's own drift (the collapse).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: |PID gain| per unit u for each knob (as ``pid``'s defaults: u = 1 moves a clip bound by 0.2)
GAIN_MAGNITUDE = {"w_pos": 1.0, "w_neg": 1.0, "eps_low": 0.2, "eps_high": 0.2}


@dataclass(frozen=True)
class KnobModel:
    """What the probes say about one knob."""

    knob: str
    gain: float  # g: nats per step per unit knob (sign = the direction that raises entropy)
    stderr: float  # seed-to-seed standard error of g
    delay: int  # theta: extra steps before the response starts
    noise: float  # sigma: measurement noise of entropy (nats)
    delta: float  # the probe step size used
    asymmetry: float  # (g_up - g_down) / (|g_up| + |g_down|): nonlinearity of the response

    @property
    def sign(self) -> int:
        return 1 if self.gain >= 0 else -1

    @property
    def zscore(self) -> float:
        return abs(self.gain) / self.stderr if self.stderr > 0 else math.inf

    @property
    def verdict(self) -> str:
        """Authority: ``strong`` (|g| / se >= 3), ``weak`` (>= 1.5) or ``none``."""
        z = self.zscore
        return "strong" if z >= 3.0 else ("weak" if z >= 1.5 else "none")

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sign": self.sign, "zscore": self.zscore, "verdict": self.verdict}


def _fit(D: np.ndarray, dk: np.ndarray, theta: int) -> tuple[float, float]:
    """Least-squares g for D[r, j] ~ g dk[r] max(j + 1 - theta, 0); returns (g, sse)."""
    j = np.arange(1, D.shape[1] + 1)
    x = dk[:, None] * np.maximum(j - theta, 0)[None, :]
    den = float((x * x).sum())
    g = float((x * D).sum() / den) if den > 0 else 0.0
    return g, float(((D - g * x) ** 2).sum())


def identify_knob(knob: str, base: np.ndarray, up: np.ndarray, down: np.ndarray, start: int,
                  delta: float) -> KnobModel:
    """Fit one knob from entropy traces [seeds, steps] of the base, +delta and -delta runs.

    The traces hold H_0 .. H_{start + probe_steps}; the step acts from index ``start``.
    """
    base, up, down = (np.asarray(a, dtype=float) for a in (base, up, down))
    du, dd = up[:, start + 1:] - base[:, start + 1:], down[:, start + 1:] - base[:, start + 1:]
    n_seeds, n = du.shape
    D = np.concatenate([du, dd])
    dk = np.concatenate([np.full(n_seeds, delta), np.full(n_seeds, -delta)])
    fits = [(_fit(D, dk, th), th) for th in range(max(n // 2, 1))]
    (g, _), theta = min(fits, key=lambda f: f[0][1])
    per_seed = [_fit(np.stack([du[s], dd[s]]), np.array([delta, -delta]), theta)[0] for s in range(n_seeds)]
    se = float(np.std(per_seed, ddof=1) / math.sqrt(n_seeds)) if n_seeds > 1 else math.inf
    g_up = _fit(du, np.full(n_seeds, delta), theta)[0]
    g_dn = _fit(dd, np.full(n_seeds, -delta), theta)[0]
    asym = (g_up - g_dn) / (abs(g_up) + abs(g_dn)) if (g_up or g_dn) else 0.0
    noise = float(np.mean(np.std(np.diff(base, axis=1), axis=1, ddof=1)) / math.sqrt(2))
    return KnobModel(knob, g, se, theta, noise, float(delta), float(asym))


def recommend(models: list[KnobModel], bounds: dict[str, tuple[float, float]], *,
              tau_c: float | None = None, u_noise: float = 0.3, keep: float = 0.3) -> dict[str, Any]:
    """Pick the knobs with authority and PI gains for them by SIMC (module doc).

    A knob is kept if its verdict is ``strong`` and its authority |g| x (bound span) is at least
    ``keep`` x the best knob's. Returns {knobs, gains, kp, ki, tau_c, theta, process_gain}, or
    {knobs: []} when no knob has authority.
    """
    strong = [m for m in models if m.verdict == "strong"]
    if not strong:
        return {"knobs": [], "reason": "no knob moved entropy beyond 3 standard errors"}
    reach = {m.knob: abs(m.gain) * (bounds[m.knob][1] - bounds[m.knob][0]) for m in strong}
    best = max(reach.values())
    chosen = [m for m in strong if reach[m.knob] >= keep * best]
    gains = {m.knob: m.sign * GAIN_MAGNITUDE[m.knob] for m in chosen}
    k = sum(abs(m.gain) * GAIN_MAGNITUDE[m.knob] for m in chosen)  # nats / step per unit u
    theta = max(m.delay for m in chosen) + 1.0
    sigma = max(m.noise for m in chosen)
    if tau_c is None:
        tau_c = max(theta, sigma / (u_noise * k) - theta)  # Kc sigma <= u_noise
    kc = 1.0 / (k * (tau_c + theta))
    tau_i = 4.0 * (tau_c + theta)
    return {"knobs": [m.knob for m in chosen], "gains": gains, "kp": kc, "ki": kc / tau_i,
            "tau_c": float(tau_c), "theta": theta, "process_gain": k}


def control_section(rec: dict[str, Any], initial: dict[str, float],
                    bounds: dict[str, tuple[float, float]], target: Any) -> dict[str, Any]:
    """A ready-to-paste ``control:`` mapping for the recommendation."""
    knobs = rec["knobs"]
    return {
        "controller": "pid",
        "params": {"kp": round(rec["kp"], 4), "ki": round(rec["ki"], 5),
                   "gains": {k: float(v) for k, v in rec["gains"].items()}},
        "target": target,
        "actuate": list(knobs),
        "initial": {k: float(v) for k, v in initial.items()},
        "bounds": {k: [float(bounds[k][0]), float(bounds[k][1])] for k in knobs},
    }
