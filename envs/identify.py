"""Knob identification from open-loop step probes, and PI gains by the SIMC rule.

Probe protocol (``regulator tune``): every run starts at the operating point k0 and holds it for
``start`` steps (early in training, where the knobs still have authority, docs/regimes.md §2);
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

Joint probe: with two or more knobs, one more pair of runs steps them all together, each by
GAIN_MAGNITUDE[k] x du (du = +-delta in u units), and is fitted like a knob named ``w_pos+w_neg``
(gain per unit u). It sees interactions that a sum of single-knob fits cannot.

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
    level: float = math.nan  # mean entropy of the base runs over the probe window (nats)

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
    level = float(np.mean(base[:, start + 1:]))
    return KnobModel(knob, g, se, theta, noise, float(delta), float(asym), level)


def joint_name(knobs: list[str]) -> str:
    """The name of the joint (common-mode) probe direction over ``knobs``: ``w_pos+w_neg``."""
    return "+".join(knobs)


def is_joint(name: str) -> bool:
    """Whether a model's name is a joint direction (``joint_name``) rather than one knob."""
    return "+" in name


def joint_members(name: str) -> list[str]:
    """The knobs of a joint direction (a single knob's name gives itself)."""
    return name.split("+")


def recommend(models: list[KnobModel], bounds: dict[str, tuple[float, float]], *,
              tau_c: float | None = None, u_noise: float = 0.3, keep: float = 0.3,
              relative: bool = False) -> dict[str, Any]:
    """Pick the knobs with authority and PI gains for them by SIMC (module doc).

    Single knobs: one is kept if its verdict is ``strong`` and its authority |g| x (bound span)
    is at least ``keep`` x the best knob's; their gains combine linearly (k = sum |g_k|). A joint
    model (``w_pos+w_neg``: every knob moved together, GAIN_MAGNITUDE[k] per unit u) is a
    candidate of its own, chosen when it is strong and its process gain is at least the best
    candidate's minus 2 standard errors of their difference: moving every token weight together
    scales the whole update (a learning-rate-like knob once Adam has a gradient history; from
    step 0 Adam normalises a common scale away), so its sign holds whichever advantage
    sign drives entropy in a phase, where single weights reverse (docs/regimes.md §1).
    ``relative``: gains for ``relative_error: true`` (error as a fraction of the target), kp and
    ki scaled by the probed entropy level H_ref, so they equal the SIMC gains there and grow as
    1 / target below it: entropy falls multiplicatively and its noise scales with its level
    (docs/regimes.md §4), so a fixed relative gain suits the whole curve.
    Returns {knobs, gains, kp, ki, tau_c, theta, process_gain, mode, models, relative_error},
    or {knobs: []} when nothing has authority.
    """
    strong = [m for m in models if m.verdict == "strong"]
    singles = [m for m in strong if not is_joint(m.knob)]
    joints = [m for m in strong if is_joint(m.knob)]
    cands = []  # (mode, models, gains, process gain k, its standard error)
    if singles:
        reach = {m.knob: abs(m.gain) * (bounds[m.knob][1] - bounds[m.knob][0]) for m in singles}
        best_reach = max(reach.values())
        chosen = [m for m in singles if reach[m.knob] >= keep * best_reach]
        k = sum(abs(m.gain) * GAIN_MAGNITUDE[m.knob] for m in chosen)  # nats / step per unit u
        se = math.sqrt(sum((m.stderr * GAIN_MAGNITUDE[m.knob]) ** 2 for m in chosen))
        cands.append(("single", chosen, {m.knob: m.sign * GAIN_MAGNITUDE[m.knob] for m in chosen}, k, se))
    for m in joints:  # the joint gain is already per unit u
        gains = {k: m.sign * GAIN_MAGNITUDE[k] for k in joint_members(m.knob)}
        cands.append(("joint", [m], gains, abs(m.gain), m.stderr))
    if not cands:
        return {"knobs": [], "reason": "no knob moved entropy beyond 3 standard errors"}
    best = max(cands, key=lambda c: c[3])
    # a joint direction within 2 standard errors of the best wins: it scales the whole update, so
    # its sign does not depend on which advantage sign drives entropy in a phase of training
    robust = [c for c in cands if c[0] == "joint" and c[3] >= best[3] - 2 * math.hypot(best[4], c[4])]
    mode, chosen, gains, k, _ = max(robust, key=lambda c: c[3]) if robust else best
    theta = max(m.delay for m in chosen) + 1.0
    sigma = max(m.noise for m in chosen)
    if tau_c is None:
        tau_c = max(theta, sigma / (u_noise * k) - theta)  # Kc sigma <= u_noise
    kc = 1.0 / (k * (tau_c + theta))
    tau_i = 4.0 * (tau_c + theta)
    level = float(np.mean([m.level for m in chosen]))
    scale = level if relative and math.isfinite(level) and level > 0 else 1.0
    return {"knobs": list(gains), "gains": gains, "kp": kc * scale, "ki": kc / tau_i * scale,
            "tau_c": float(tau_c), "theta": theta, "process_gain": k, "mode": mode,
            "models": [m.knob for m in chosen], "relative_error": scale != 1.0, "level": level}


def control_section(rec: dict[str, Any], initial: dict[str, float],
                    bounds: dict[str, tuple[float, float]], target: Any) -> dict[str, Any]:
    """A ready-to-paste ``control:`` mapping for the recommendation."""
    knobs = rec["knobs"]
    return {
        "controller": "pid",
        "params": {"kp": round(rec["kp"], 4), "ki": round(rec["ki"], 5),
                   **({"relative_error": True} if rec.get("relative_error") else {}),
                   "gains": {k: float(v) for k, v in rec["gains"].items()}},
        "target": target,
        "actuate": list(knobs),
        "initial": {k: float(v) for k, v in initial.items()},
        "bounds": {k: [float(bounds[k][0]), float(bounds[k][1])] for k in knobs},
    }
