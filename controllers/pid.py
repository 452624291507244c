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
import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, Strict, StrictFloat, field_validator, model_validator

from controllers import _params as P
from controllers.adaptive import KnobEffectEstimator, prbs
from regulator.controller import Controller
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import DEFAULT_ACTUATE, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema
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


#: [lo, hi] with lo <= 0 <= hi; either end may be infinite
ULimits = Annotated[tuple[Annotated[StrictFloat, Field(le=0, allow_inf_nan=True)],
                          Annotated[StrictFloat, Field(ge=0, allow_inf_nan=True)]], Strict(False)]
#: [progress in [0, 1], factor >= 0]
SchedulePoint = Annotated[tuple[Annotated[StrictFloat, Field(ge=0, le=1)],
                                Annotated[StrictFloat, Field(ge=0)]], Strict(False)]


def _gain(knob: str, v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v == 0:
        raise ConfigError(key, "a nonzero number (its sign is the direction that raises entropy)", v)
    return float(v)


class PIDParams(Schema):
    """Parameters of ``pid``; explicit values override a preset's."""

    preset: str | None = None
    """``entropic`` = EntroPIC's PI law (kp 1, ki 0.01, u clipped to [-1, 1], w_pos = 1 - u,
    w_neg = 1 + u, no anti-windup); needs w_pos and w_neg actuated and initial weights 1."""
    kp: float = Field(1.0, ge=0)
    """Proportional gain (u per nat of error; the sign lives in ``gains``)."""
    ki: float = Field(0.1, ge=0)
    """Integral gain (u per nat-step)."""
    kd: float = Field(0.0, ge=0)
    """Derivative gain (u per nat per step), on the filtered measurement."""
    gains: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_GAINS))
    """g_k per knob, nonzero: its sign is the knob change that raises entropy (the paper's by
    default); a partial mapping keeps the defaults for the other knobs."""
    ff: float = Field(0.0, ge=0)
    """Feed-forward gain on the target's slope next_target - target."""
    ema: float = Field(0.0, ge=0, lt=1)
    """EMA weight of the past on the measured entropy (0 = no filter)."""
    d_filter: float = Field(0.5, ge=0, lt=1)
    """Low-pass weight of the past on the derivative."""
    anti_windup: Literal["clamp", "none"] = "clamp"
    """``clamp``: no integral growth while the knobs are saturated the way the error pushes."""
    u_limits: ULimits | None = None
    """[lo, hi] clip on u (lo <= 0 <= hi, may be infinite); None = only the knob bounds."""
    relative_error: bool = False
    """Use e / target (a fraction) instead of nats."""
    gain_schedule: Annotated[list[SchedulePoint], Field(min_length=1)] | None = None
    """[[progress, factor], ...]: a piecewise-linear factor on kp, ki, kd over training
    progress (progress in [0, 1], strictly increasing; factor >= 0)."""
    direction: Literal["fixed", "auto"] = "fixed"
    """``fixed``: the signs of ``gains``; ``auto``: signs estimated online, ``gains`` the prior."""
    excite: float = Field(0.1, ge=0)
    """``auto``: dither amplitude (knob units) added while an estimate is weak."""
    excite_hold: int = Field(5, ge=1)
    """``auto``: steps the dither holds each +-1 value."""
    forgetting: float = Field(0.98, gt=0.5, le=1)
    """``auto``: RLS forgetting factor lambda."""
    memory: float = Field(1.0, ge=0, le=1)
    """``auto``: rho of the filtered knob deviation; 1 = integrating plant (a knob sets the
    entropy's rate of change)."""
    confidence: float = Field(2.5, gt=0)
    """``auto``: |g| / se needed before an estimate counts."""
    confirm: int = Field(10, ge=1)
    """``auto``: consecutive confident contrary steps before a sign flips."""
    prior: Literal["gains", "dh"] = "gains"
    """``auto``: initial sign from ``gains``, or ``dh`` = from the per-sign first-order
    statistics dh_pos / dh_neg (weights only) until the RLS is confident."""
    gain_ref: float | None = Field(None, gt=0)
    """``auto``: nats per step per unit u; once estimates are confident every |g_k| is scaled
    by gain_ref / sum_k |g_est_k| |g_k| (clipped to [0.25, 4]); None = no scaling."""

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        preset = data.get("preset") if isinstance(data, Mapping) else None
        if isinstance(preset, str) and preset in PRESETS:
            return {**PRESETS[preset], **data}
        return data

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, v: str | None) -> str | None:
        if v is not None and v not in PRESETS:
            raise unknown_name_error("", v, PRESETS, "pid presets")
        return v

    @field_validator("gains", mode="plain")
    @classmethod
    def _gains(cls, v: Any) -> dict[str, float]:
        return {**DEFAULT_GAINS, **P.knob_mapping(v, _gain, "nonzero gain")}

    @field_validator("gain_schedule")
    @classmethod
    def _increasing(cls, v: list[tuple[float, float]] | None) -> list[tuple[float, float]] | None:
        if v is not None and any(b[0] <= a[0] for a, b in zip(v, v[1:])):
            raise ConfigError("", "progress values in strictly increasing order", [list(x) for x in v])
        return v


class PIDController(Controller):
    """PID on e = target - entropy; every actuated knob k is set to initial_k + g_k u."""

    name = "pid"
    Params = PIDParams
    params: PIDParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.estimator: KnobEffectEstimator | None = None
        self._clear()

    # --- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.integral = 0.0
        self.deriv = 0.0
        self.h_filt: float | None = None  # filtered measurement H_f
        self.last_u = 0.0

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = DEFAULT_ACTUATE) -> None:
        super().reset(initial, bounds, actuate)
        if self.params.preset == "entropic":
            P.require_actuated("pid preset 'entropic'", ("w_pos", "w_neg"), self.actuate)
            for k in ("w_pos", "w_neg"):
                if getattr(initial, k) != 1.0:
                    raise ConfigError(f"control.initial.{k}", "1.0 (EntroPIC sets weights 1 +/- alpha)",
                                      getattr(initial, k))
            if bounds.range("w_pos")[1] < 2.0 or bounds.range("w_neg")[1] < 2.0:
                log.warning("pid preset 'entropic': bounds below [0, 2] on w_pos/w_neg cut EntroPIC's "
                            "1 +/- alpha range (alpha in [-1, 1])")
        self.estimator = None
        if self.params.direction == "auto":
            self.estimator = KnobEffectEstimator(
                self.actuate, {k: getattr(initial, k) for k in self.actuate},
                {k: 1 if self.params.gains[k] > 0 else -1 for k in self.actuate},
                forgetting=self.params.forgetting, memory=self.params.memory, z=self.params.confidence,
                confirm=self.params.confirm, use_dh=self.params.prior == "dh")
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
            return {k: self.params.gains[k] for k in self.actuate}
        est.update(obs.step, obs.entropy, {k: getattr(obs.knobs, k) for k in self.actuate},
                   obs.extras)
        c = 1.0
        if self.params.gain_ref is not None:
            sure = [k for k in self.actuate if est.confident(k)]
            total = sum(abs(est.gain(k)) * abs(self.params.gains[k]) for k in sure)
            if sure and total > 0:
                c = min(max(self.params.gain_ref / total, 0.25), 4.0)
        return {k: est.sign(k) * c * abs(self.params.gains[k]) for k in self.actuate}

    def excitation(self, obs: Observation) -> dict[str, float]:
        """Dither d_k (knob units) on the knobs whose estimate is not yet confident."""
        est = self.estimator
        if est is None or self.params.excite == 0.0:
            return {}
        return {k: self.params.excite * prbs(obs.step, self.params.excite_hold, salt=i)
                for i, k in enumerate(self.actuate) if not est.confident(k)}

    def gain_factor(self, obs: Observation) -> float:
        """s(p): the gain-schedule factor at this step's training progress."""
        points = self.params.gain_schedule
        return 1.0 if points is None else interpolate(points, obs.progress)

    def u_range(self, gains: dict[str, float]) -> tuple[float, float]:
        """[u_lo, u_hi] beyond which every actuated knob is saturated, cut by ``u_limits``."""
        lo, hi = P.u_range(gains, self.initial, self.bounds)
        if self.params.u_limits is not None:
            lo, hi = max(lo, self.params.u_limits[0]), min(hi, self.params.u_limits[1])
        return lo, hi

    def act(self, obs: Observation) -> Knobs:
        h = obs.entropy
        prev = self.h_filt
        self.h_filt = h if prev is None else self.params.ema * prev + (1.0 - self.params.ema) * h
        e = obs.target - self.h_filt
        if self.params.relative_error:
            e = e / max(abs(obs.target), 1e-8)
        # derivative on the measurement (no kick on target steps), first-order low-pass
        d_raw = 0.0 if prev is None else -(self.h_filt - prev)
        if self.params.relative_error:
            d_raw = d_raw / max(abs(obs.target), 1e-8)
        self.deriv = self.params.d_filter * self.deriv + (1.0 - self.params.d_filter) * d_raw
        s = self.gain_factor(obs)
        gains = self.knob_gains(obs)
        lo, hi = self.u_range(gains)
        slope = obs.next_target - obs.target

        p = self.params

        def law(integral: float) -> float:
            return s * (p.kp * e + p.ki * integral + p.kd * self.deriv) + p.ff * slope

        candidate = self.integral + e
        u_raw = law(candidate)
        # anti-windup (conditional integration): keep I while the output is saturated and the
        # error would push it further into saturation
        if self.params.anti_windup == "clamp" and ((u_raw > hi and e > 0) or (u_raw < lo and e < 0)):
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
