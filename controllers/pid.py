"""``pid``: a PID controller on the entropy error, acting on one or more knobs.

Law (one step = one time unit), with e = target - H_f (nats, positive = entropy too low) and
H_f the measured entropy, optionally EMA-filtered:

    u = s(p) (kp e + ki I + kd D) + ff (next_target - target)
    knob_k = initial_k + g_k u            for every actuated knob k

- I = sum of e, with anti-windup: ``clamp`` (no integral growth while every actuated knob is
  saturated in the direction e pushes; the Regulator then clamps to bounds), or ``none``.
- D = low-pass filtered derivative *on the measurement*: D <- a D + (1 - a) (-(H_f - H_f,prev)),
  so a target step gives no derivative kick.
- s(p): optional gain schedule over training progress p (piecewise linear).
- g_k: per-knob gains; their signs are the directions that raise entropy (the paper's by default:
  w_pos -1, w_neg +1, eps_low -0.2, eps_high +0.2), so u > 0 always means "raise entropy".

``direction: auto`` (sign-adaptive): g_k = s_k c |g_k|, where s_k is the sign of the knob's
effect estimated online by ``controllers.adaptive.KnobEffectEstimator`` (RLS with forgetting on
the entropy level, hysteresis + confidence bound; the configured sign is the prior) and c an
optional magnitude correction from the estimated gains (``gain_ref``). While an estimate is not
yet confident, a small pseudo-random dither (``excite``, knob units) is added to that knob.
"""

from __future__ import annotations

import logging
from typing import Any

from controllers import _params as P
from controllers.adaptive import KnobEffectEstimator, prbs
from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import KnobBounds, Knobs
from regulator.observation import Observation
from regulator.registry import register_controller
from regulator.targets import interpolate

log = logging.getLogger(__name__)

#: default |g_k|: u is in weight units; for a clip bound u = 1 moves it by 0.2 (the GRPO value
#: of the bound itself, e.g. eps_high 0.2 -> 0.4, about half the default [0, 0.5] range).
DEFAULT_GAIN_MAGNITUDE = {"w_pos": 1.0, "w_neg": 1.0, "eps_low": 0.2, "eps_high": 0.2}
DEFAULT_GAINS = {k: P.PAPER_DIRECTION[k] * m for k, m in DEFAULT_GAIN_MAGNITUDE.items()}

#: EntroPIC (arXiv 2511.15248): alpha = Kp (H - H*) + Ki sum(H - H*), clipped to [-1, 1];
#: weights 1 + alpha / 1 - alpha on positive / negative tokens. In our sign (e = H* - H, u = -alpha)
#: that is w_pos = 1 - u, w_neg = 1 + u: gains -1 / +1, with a plain (windup-free by clipping) sum.
PRESETS: dict[str, dict[str, Any]] = {
    "entropic": {"kp": 1.0, "ki": 0.01, "kd": 0.0, "u_limits": [-1.0, 1.0], "anti_windup": "none",
                 "gains": {"w_pos": -1.0, "w_neg": 1.0}},
}
_DEFAULTS: dict[str, Any] = {"kp": 1.0, "ki": 0.1, "kd": 0.0, "u_limits": None, "anti_windup": "clamp",
                             "gains": None}


@register_controller("pid")
class PIDController(Controller):
    """PID on e = target - entropy; every actuated knob k is set to initial_k + g_k u.

    Params (defaults in brackets; explicit params override a preset's values):
        kp [1.0], ki [0.1], kd [0.0]: gains >= 0 (u per nat of error; the sign lives in ``gains``).
        gains [paper's direction: w_pos -1, w_neg +1, eps_low -0.2, eps_high +0.2]: per-knob
            g_k, nonzero; the sign is the knob change that raises entropy. Partial mappings keep
            the defaults for the other knobs. Flip a sign where your plant's direction differs.
        ff [0.0]: feed-forward gain (>= 0) on the target's slope next_target - target.
        ema [0.0]: EMA weight of the past on the measured entropy, in [0, 1) (0 = no filter).
        d_filter [0.5]: low-pass weight of the past on the derivative, in [0, 1).
        anti_windup ["clamp"]: ``clamp`` (conditional integration) or ``none``.
        u_limits [None]: [lo, hi] clip on u (lo <= 0 <= hi); None = only the knob bounds.
        relative_error [false]: use e / target (a fraction) instead of nats.
        gain_schedule [None]: [[progress, factor], ...], a piecewise-linear factor on kp, ki, kd.
        preset [None]: ``entropic`` = EntroPIC's PI law (kp 1, ki 0.01, u clipped to [-1, 1],
            w_pos = 1 - u, w_neg = 1 + u); needs w_pos and w_neg actuated and initial weights 1.
        direction ["fixed"]: ``fixed`` (signs of ``gains``) or ``auto`` (signs estimated online;
            the signs of ``gains`` are only the prior). The rest apply to ``auto`` only:
        excite [0.1]: dither amplitude (knob units, >= 0) added while an estimate is weak.
        excite_hold [5]: steps the dither holds each +-1 value (>= 1).
        forgetting [0.98]: RLS forgetting factor lambda in (0.5, 1].
        memory [1.0]: rho in [0, 1]: 1 = integrating plant (knob sets the entropy rate).
        confidence [2.5]: |g| / se needed before an estimate counts (> 0).
        confirm [10]: consecutive confident contrary steps before a sign flips (>= 1).
        prior ["gains"]: initial sign from ``gains``, or ``dh`` = from the sign of the per-sign
            first-order statistics dh_pos / dh_neg (weights only) until the RLS is confident.
        gain_ref [None]: if set (> 0, nats per step per unit u), scale every |g_k| by
            c = gain_ref / sum_k |g_est_k| |g_k| (clipped to [0.25, 4]) once estimates are confident.
    """

    def __init__(
        self,
        kp: float | None = None,
        ki: float | None = None,
        kd: float | None = None,
        gains: dict[str, float] | None = None,
        ff: float = 0.0,
        ema: float = 0.0,
        d_filter: float = 0.5,
        anti_windup: str | None = None,
        u_limits: list[float] | None = None,
        relative_error: bool = False,
        gain_schedule: list[list[float]] | None = None,
        preset: str | None = None,
        direction: str = "fixed",
        excite: float = 0.1,
        excite_hold: int = 5,
        forgetting: float = 0.98,
        memory: float = 1.0,
        confidence: float = 2.5,
        confirm: int = 10,
        prior: str = "gains",
        gain_ref: float | None = None,
    ) -> None:
        base = dict(_DEFAULTS)
        if preset is not None:
            base.update(PRESETS[P.choice("preset", preset, PRESETS, "pid presets")])
        given = {"kp": kp, "ki": ki, "kd": kd, "gains": gains, "anti_windup": anti_windup,
                 "u_limits": u_limits}
        cfg = {k: (v if v is not None else base[k]) for k, v in given.items()}
        self.preset = preset
        self.kp = P.number("kp", cfg["kp"], minimum=0.0)
        self.ki = P.number("ki", cfg["ki"], minimum=0.0)
        self.kd = P.number("kd", cfg["kd"], minimum=0.0)
        self.ff = P.number("ff", ff, minimum=0.0)
        self.ema = P.number("ema", ema, minimum=0.0, below=1.0)
        self.d_filter = P.number("d_filter", d_filter, minimum=0.0, below=1.0)
        self.anti_windup = P.choice("anti_windup", cfg["anti_windup"], ("clamp", "none"),
                                    "anti-windup modes")
        self.relative_error = P.boolean("relative_error", relative_error)
        self.gains = dict(DEFAULT_GAINS)
        if cfg["gains"] is not None:
            for k, g in P.knob_mapping("gains", cfg["gains"]).items():
                g = P.number(f"gains.{k}", g)
                if g == 0:
                    raise ConfigError(f"gains.{k}", "a nonzero number (its sign is the direction "
                                      "that raises entropy)", g)
                self.gains[k] = g
        self.u_limits: tuple[float, float] | None = None
        if cfg["u_limits"] is not None:
            lim = cfg["u_limits"]
            if not isinstance(lim, (list, tuple)) or len(lim) != 2:
                raise ConfigError("u_limits", "a [lo, hi] pair with lo <= 0 <= hi", lim)
            lo = P.number("u_limits[0]", lim[0], maximum=0.0, allow_inf=True)
            hi = P.number("u_limits[1]", lim[1], minimum=0.0, allow_inf=True)
            self.u_limits = (lo, hi)
        self.gain_schedule = None
        if gain_schedule is not None:
            self.gain_schedule = P.points("gain_schedule", gain_schedule)
            for i, (x, f) in enumerate(self.gain_schedule):
                P.number(f"gain_schedule[{i}][0]", x, minimum=0.0, maximum=1.0)
                P.number(f"gain_schedule[{i}][1]", f, minimum=0.0)
        self.direction = P.choice("direction", direction, ("fixed", "auto"), "pid directions")
        self.excite = P.number("excite", excite, minimum=0.0)
        self.excite_hold = P.integer("excite_hold", excite_hold, minimum=1)
        self.forgetting = P.number("forgetting", forgetting, above=0.5, maximum=1.0)
        self.memory = P.number("memory", memory, minimum=0.0, maximum=1.0)
        self.confidence = P.number("confidence", confidence, above=0.0)
        self.confirm = P.integer("confirm", confirm, minimum=1)
        self.prior = P.choice("prior", prior, ("gains", "dh"), "direction priors")
        self.gain_ref = None if gain_ref is None else P.number("gain_ref", gain_ref, above=0.0)
        self.estimator: KnobEffectEstimator | None = None
        self._clear()

    # --- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.integral = 0.0
        self.deriv = 0.0
        self.h_filt: float | None = None  # filtered measurement H_f
        self.last_u = 0.0

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = ("w_pos",)) -> None:
        super().reset(initial, bounds, actuate)
        if self.preset == "entropic":
            P.require_actuated("pid preset 'entropic'", ("w_pos", "w_neg"), self.actuate)
            for k in ("w_pos", "w_neg"):
                if getattr(initial, k) != 1.0:
                    raise ConfigError(f"control.initial.{k}", "1.0 (EntroPIC sets weights 1 +/- alpha)",
                                      getattr(initial, k))
            if bounds.range("w_pos")[1] < 2.0 or bounds.range("w_neg")[1] < 2.0:
                log.warning("pid preset 'entropic': bounds below [0, 2] on w_pos/w_neg cut EntroPIC's "
                            "1 +/- alpha range (alpha in [-1, 1])")
        self.estimator = None
        if self.direction == "auto":
            self.estimator = KnobEffectEstimator(
                self.actuate, {k: getattr(initial, k) for k in self.actuate},
                {k: 1 if self.gains[k] > 0 else -1 for k in self.actuate},
                forgetting=self.forgetting, memory=self.memory, z=self.confidence,
                confirm=self.confirm, use_dh=self.prior == "dh")
        self._clear()

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"integral": self.integral, "deriv": self.deriv, "h_filt": self.h_filt,
                               "last_u": self.last_u}
        if self.estimator is not None:
            out["estimator"] = self.estimator.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.integral = float(state["integral"])
        self.deriv = float(state["deriv"])
        self.h_filt = None if state["h_filt"] is None else float(state["h_filt"])
        self.last_u = float(state["last_u"])
        if self.estimator is not None and "estimator" in state:
            self.estimator.load_state_dict(state["estimator"])

    def metrics(self) -> dict[str, float]:
        """``control/gain_est/<knob>`` (and sign, z-score) under ``direction: auto``; else {}."""
        return {} if self.estimator is None else self.estimator.metrics()

    # --- the law -----------------------------------------------------------------------------
    def knob_gains(self, obs: Observation) -> dict[str, float]:
        """g_k for this step, actuated knobs only; under ``auto`` g_k = s_k c |g_k| (module doc)."""
        est = self.estimator
        if est is None:
            return {k: self.gains[k] for k in self.actuate}
        est.update(obs.step, obs.entropy, {k: getattr(obs.knobs, k) for k in self.actuate},
                   obs.extras)
        c = 1.0
        if self.gain_ref is not None:
            sure = [k for k in self.actuate if est.confident(k)]
            total = sum(abs(est.gain(k)) * abs(self.gains[k]) for k in sure)
            if sure and total > 0:
                c = min(max(self.gain_ref / total, 0.25), 4.0)
        return {k: est.sign(k) * c * abs(self.gains[k]) for k in self.actuate}

    def excitation(self, obs: Observation) -> dict[str, float]:
        """Dither d_k (knob units) on the knobs whose estimate is not yet confident."""
        est = self.estimator
        if est is None or self.excite == 0.0:
            return {}
        return {k: self.excite * prbs(obs.step, self.excite_hold, salt=i)
                for i, k in enumerate(self.actuate) if not est.confident(k)}

    def gain_factor(self, obs: Observation) -> float:
        """s(p): the gain-schedule factor at this step's training progress."""
        return 1.0 if self.gain_schedule is None else interpolate(self.gain_schedule, obs.progress)

    def u_range(self, gains: dict[str, float]) -> tuple[float, float]:
        """[u_lo, u_hi] beyond which every actuated knob is saturated, cut by ``u_limits``."""
        lo, hi = P.u_range(gains, self.initial, self.bounds)
        if self.u_limits is not None:
            lo, hi = max(lo, self.u_limits[0]), min(hi, self.u_limits[1])
        return lo, hi

    def act(self, obs: Observation) -> Knobs:
        h = obs.entropy
        prev = self.h_filt
        self.h_filt = h if prev is None else self.ema * prev + (1.0 - self.ema) * h
        e = obs.target - self.h_filt
        if self.relative_error:
            e = e / max(abs(obs.target), 1e-8)
        # derivative on the measurement (no kick on target steps), first-order low-pass
        d_raw = 0.0 if prev is None else -(self.h_filt - prev)
        if self.relative_error:
            d_raw = d_raw / max(abs(obs.target), 1e-8)
        self.deriv = self.d_filter * self.deriv + (1.0 - self.d_filter) * d_raw
        s = self.gain_factor(obs)
        gains = self.knob_gains(obs)
        lo, hi = self.u_range(gains)
        slope = obs.next_target - obs.target

        def law(integral: float) -> float:
            return s * (self.kp * e + self.ki * integral + self.kd * self.deriv) + self.ff * slope

        candidate = self.integral + e
        u_raw = law(candidate)
        # anti-windup (conditional integration): keep I while the output is saturated and the
        # error would push it further into saturation
        if self.anti_windup == "clamp" and ((u_raw > hi and e > 0) or (u_raw < lo and e < 0)):
            u_raw = law(self.integral)
        else:
            self.integral = candidate
        u = min(max(u_raw, lo), hi)
        self.last_u = u
        values = {k: getattr(self.initial, k) + g * u for k, g in gains.items()}
        for k, d in self.excitation(obs).items():
            lo, hi = self.bounds.range(k)
            v = min(max(values[k], lo), hi)
            values[k] = v + d if lo <= v + d <= hi else v - d  # reflect at a bound: still excites
        return self.with_actuated(values)
