"""``auto``: the default controller. Write a target curve; it finds out how the knobs act.

Which way a knob moves entropy depends on the model, the optimiser and the phase of training,
so nothing here is a fixed sign. The knobs are moved along a few *directions* in knob space:

- ``throttle`` (every actuated weight down): scales the whole update, so it slows whatever the
  policy is doing; RLVR's drift is a collapse, so down raises entropy. The one trusted prior.
- ``balance`` (w_pos down, w_neg up; both weights actuated): the paper's direction on a
  pretrained policy, reversed on a policy trained from scratch. No prior sign.
- ``eps_high`` up / ``eps_low`` down (when actuated): clip bounds, which act only when the ratio
  leaves 1 (more than one update per rollout batch). No prior sign.

Each direction's effect g_j (nats per step per unit move) is estimated online with a small
paired dither as the instrument (``controllers.dither``: consistent in closed loop, where a
plain regression credits the collapse to the knobs). A Gaussian prior per direction (throttle
+g0, the others 0, spread g0, with g0 = ``prior_gain`` x H) shrinks each estimate:
m_j = (mu_j / tau^2 + g_hat_j / se_j^2) / (1 / tau^2 + 1 / se_j^2). The knobs then move along
v = sum_j m_j D_j / max |m_j| (steepest raise per unit of knob movement; a direction whose
effect is unknown is simply not used), by one scalar command u (u > 0 raises entropy):

    knobs = initial + u v + dither
    u = kp (e + I / T_i + T_d de) + u_ff + u_hold,    e = (T' - H_f) / T     (relative error)

- Gains from the identified plant gain along v, G = sum_j m_j^2 / max|m| (relative: G / H), by
  SIMC for an integrating plant: kp = 1 / (G_rel (tau_c + lag)), T_i = 4 (tau_c + lag),
  T_d = ``lag``; feed-forward u_ff = slope(T) / G_rel follows a moving target.
- Preview: the target curve is known in advance, so the loop aims at it through a centred
  window of ``preview`` steps each side (``_aim``): a step becomes a ramp that starts before the
  step and ends after it, which is what a rate-limited plant can follow with the least squared
  error; a linear segment is left as it is.
- Hold: the estimator's trend is the drift the knobs do not explain (nats per step at u = 0);
  u_hold = max(-drift / G, 0) is the command that cancels it, so the loop sits at the target
  with a zero error instead of an integral that winds up during the approach. Measured on
  ``suite_sim.yaml`` (5 seeds, this controller alone): scratch regime 33.8 % -> 22.8 %,
  pretrained 26.7 % -> 25.0 %; on the one-sided test plant the undershoot fell from 0.27 to
  0.13-0.17 nats (target 1.0) and from 0.33 to 0.08-0.10 (target 0.5).
- Reference governor: where nothing can undo an undershoot (from scratch, late in training),
  the approach aims ``margin`` filtered-noise standard deviations above the target, so the
  overshoot stays inside the noise band; the derivative term brakes a fast approach.
  The hold is released at most 5 % per step, and only while entropy is above its aim: with the
  brake at its bound nothing excites the plant, drift and gain are confounded, and a noisy
  drift estimate must not drop the brake.
- The noise ratchet: on a one-sided plant every release of the brake is kept and every brake
  only pauses, so a command that follows the noise walks entropy down. Hence the derivative
  only brakes (a rise under RLVR is noise or the knobs' own doing), the hold is released only
  above the aim, and a direction with no prior sign moves the knobs only by the part of its
  estimate beyond ``evidence_z`` standard errors (a soft threshold; a spurious z of 2-3 used to
  send the scratch regime's balance the wrong way at the collapse).
- Signs: throttling every weight is a brake (at all weights 0 the policy does not move), so
  its sign is kept; any other direction's sign is the data's once |z| reaches ``sign_lock``,
  and stays so until the data say the opposite as firmly. A dither never pushes a weight off
  its floor, but is moved inward from a ceiling: a knob pinned at its upper bound the wrong
  way keeps exciting the plant, which is how the wrong sign is found. Pinned the way the
  error pushes for 2 (tau_c + lag) steps with the error still growing, the sign of every
  non-brake direction carrying at least half the move (and not locked by the data) is reversed.
- Anti-windup: the integral does not grow while u is saturated the way the error pushes, nor
  while the knobs have no authority (fewer than ``min_mixed`` of the groups have mixed rewards:
  all-equal rewards give zero advantages), nor while the error is closing at least at half the
  designed rate (the approach is a transient the proportional path handles); it leaks while
  the target stays out of reach. Measured on ``suite_sim.yaml`` (this controller alone, 5
  seeds): pretrained 25.0 -> 24.1 %, scratch 23.4 -> 22.7 %; on seeds 5-9, not used while
  designing it, 26.1 -> 25.6 % and 23.8 -> 20.8 %; one-sided test plant undershoot 0.13-0.17
  -> 0.06-0.10 nats (target 1.0) and 0.08-0.10 -> 0.05-0.06 (target 0.5).
- Authority: kp is scaled by 1 / max(mixed / 0.5, 0.25) as the mixed-group fraction falls.

Bounds of the weights default to [0, 2] (``DEFAULT_BOUNDS``): a one-sided [0, 1] range can
only slow the collapse, never speed it up. When every actuated weight sits at its minimum the
policy learns nothing; the Regulator reports it (``control/frozen``, an event), and the lower
bounds are the user's floor on learning.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from controllers import _params as P
from controllers.dither import DitherIVEstimator, paired_dither
from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import KnobBounds, Knobs
from regulator.observation import Observation
from regulator.registry import register_controller

WEIGHTS = ("w_pos", "w_neg")
#: knob-space vectors of the clip directions: a unit move shifts a bound by 0.2 (its GRPO value)
CLIP_DIRECTIONS = {"eps_high": {"eps_high": 0.2}, "eps_low": {"eps_low": -0.2}}


def directions_for(actuate: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """The control directions (name -> knob-space vector) for the actuated knobs."""
    w = [k for k in WEIGHTS if k in actuate]
    out: dict[str, dict[str, float]] = {}
    if w:
        out["throttle"] = {k: -1.0 for k in w}
    if len(w) == 2:
        out["balance"] = {"w_pos": -1.0, "w_neg": 1.0}
    for k, vec in CLIP_DIRECTIONS.items():
        if k in actuate:
            out[k] = dict(vec)
    return out


@register_controller("auto")
class AutoController(Controller):
    """The default controller: direction, gain and authority of every knob found online.

    Params (defaults in brackets; none needs setting):
        tau_c [10]: closed-loop time constant (steps) the gains aim for (> 0).
        lag [4]: plant lag (steps; the optimiser's momentum), also the derivative time (>= 0).
        prior_gain [0.02]: prior |effect| of the throttle, relative entropy per step per unit (> 0).
        ema [0.5]: EMA weight of the past on the measured entropy, in [0, 1).
        margin [1.0]: governor offset above a target approached from above, in standard
            deviations of the filtered measurement noise (>= 0).
        excite [0.08]: dither amplitude (knob units along a direction, >= 0; 0 = no
            identification: the prior alone decides).
        excite_hold [3]: steps each dither block holds (>= 1).
        forgetting [0.985]: forgetting factor of the estimator, in (0.5, 1].
        min_mixed [0.05]: mixed-group fraction below which the knobs count as powerless.
        kp_limits [[0.3, 60]]: range of the self-tuned proportional gain (relative units).
        prior [{throttle: 1}]: prior mean effect per direction, in units of ``prior_gain`` x H.
        probe_steps [24], probe_amplitude [0.5]: a larger dither over the first steps (inside
            the usual burn-in), where identification is cheapest.
        evidence_z [3.0]: a direction with no prior sign moves the knobs only by the part of its
            estimate beyond this many standard errors (>= 0; 0 = the plain posterior).
        preview [tau_c + lag]: half-width (steps) of the centred window through which the
            target is aimed at, by default the loop's designed response time (>= 0; 0 = aim at
            the target itself). See ``_aim``.
        sign_lock [4.0]: a z-score this large makes the estimate's sign the direction's prior
            (> 0), so forgetting the data later does not fall back to a sign they refuted.
    """

    #: knob bounds this controller runs under when the config names none
    DEFAULT_BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {"w_pos": (0.0, 2.0), "w_neg": (0.0, 2.0)}
    #: knobs it moves when the config names none (the trainer adds the clip bounds when there
    #: is more than one update per rollout batch)
    DEFAULT_ACTUATE: ClassVar[tuple[str, ...]] = WEIGHTS

    def __init__(self, tau_c: float = 10.0, lag: float = 4.0, prior_gain: float = 0.02,
                 ema: float = 0.5, margin: float = 1.0, excite: float = 0.08, excite_hold: int = 3,
                 forgetting: float = 0.985, min_mixed: float = 0.05,
                 kp_limits: list[float] | None = None, prior: dict[str, float] | None = None,
                 probe_steps: int = 24, probe_amplitude: float = 0.5,
                 evidence_z: float = 3.0, sign_lock: float = 4.0, preview: int | None = None) -> None:
        self.tau_c = P.number("tau_c", tau_c, above=0.0)
        self.lag = P.number("lag", lag, minimum=0.0)
        self.prior_gain = P.number("prior_gain", prior_gain, above=0.0)
        self.ema = P.number("ema", ema, minimum=0.0, below=1.0)
        self.margin = P.number("margin", margin, minimum=0.0)
        self.excite = P.number("excite", excite, minimum=0.0)
        self.excite_hold = P.integer("excite_hold", excite_hold, minimum=1)
        self.forgetting = P.number("forgetting", forgetting, above=0.5, maximum=1.0)
        self.min_mixed = P.number("min_mixed", min_mixed, minimum=0.0, maximum=1.0)
        lim = [0.3, 60.0] if kp_limits is None else kp_limits
        if not isinstance(lim, (list, tuple)) or len(lim) != 2:
            raise ConfigError("kp_limits", "a [min, max] pair", lim)
        lo = P.number("kp_limits[0]", lim[0], above=0.0)
        self.kp_limits = (lo, P.number("kp_limits[1]", lim[1], minimum=lo))
        self.probe_steps = P.integer("probe_steps", probe_steps, minimum=0)
        self.probe_amplitude = P.number("probe_amplitude", probe_amplitude, minimum=0.0)
        self.evidence_z = P.number("evidence_z", evidence_z, minimum=0.0)
        self.sign_lock = P.number("sign_lock", sign_lock, above=0.0)
        self.preview = (round(self.tau_c + self.lag) if preview is None
                        else P.integer("preview", preview, minimum=0))
        self.preview_steps = self.preview + 1
        self.prior = {"throttle": 1.0}
        for k, x in (prior or {}).items():
            self.prior[str(k)] = P.number(f"prior.{k}", x)
        self.dirs: dict[str, dict[str, float]] = {}
        self.estimator: DitherIVEstimator | None = None
        self._clear()

    # --- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.h_filt: float | None = None
        self.noise2: float | None = None  # EWMA of the squared innovation H - H_f,prev
        self.integral = 0.0
        self.hold = 0.0
        self.deriv = 0.0
        self.u = 0.0
        self.saturated = 0  # consecutive steps with u pinned at a limit
        self.e_pinned = 0.0  # the error when the current pinned stretch began
        self.last_dither: dict[str, float] = {}
        self.shares: dict[str, float] = {}
        self.kp = 0.0
        self.learned: dict[str, float] = {}
        self.past: list[float] = []  # the last ``preview`` targets
        self.aim = math.nan

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = WEIGHTS) -> None:
        super().reset(initial, bounds, actuate)
        self.dirs = directions_for(self.actuate)
        if not self.dirs:
            raise ConfigError("control.actuate", "at least one of w_pos, w_neg, eps_low, eps_high",
                                list(self.actuate))
        self.estimator = DitherIVEstimator(tuple(self.dirs), forgetting=self.forgetting)
        # throttling every weight that is not zero anyway is a brake: at all weights 0 the policy
        # does not move, so its sign (down never lowers entropy) is physics, not a prior to
        # revise. Throttling w_pos alone while w_neg trains shifts the balance: either sign.
        self.full_brake = all(k in self.actuate or getattr(initial, k) == 0.0 for k in WEIGHTS)
        self._clear()

    def state_dict(self) -> dict[str, Any]:
        est = self.estimator
        return {"h_filt": self.h_filt, "noise2": self.noise2, "integral": self.integral,
                "hold": self.hold,
                "deriv": self.deriv, "u": self.u, "saturated": self.saturated,
                "e_pinned": self.e_pinned,
                "last_dither": dict(self.last_dither), "shares": dict(self.shares), "kp": self.kp,
                "learned": dict(self.learned), "past": list(self.past),
                "estimator": None if est is None else est.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.h_filt = None if state["h_filt"] is None else float(state["h_filt"])
        self.noise2 = None if state["noise2"] is None else float(state["noise2"])
        self.integral, self.deriv, self.u = (float(state[k]) for k in ("integral", "deriv", "u"))
        self.hold = float(state.get("hold", 0.0))
        self.saturated = int(state["saturated"])
        self.e_pinned = float(state.get("e_pinned", 0.0))
        self.last_dither = {k: float(v) for k, v in state["last_dither"].items()}
        self.shares = {k: float(v) for k, v in state["shares"].items()}
        self.kp = float(state["kp"])
        self.learned = {k: float(v) for k, v in state.get("learned", {}).items()}
        self.past = [float(x) for x in state.get("past", [])]
        if self.estimator is not None and state.get("estimator") is not None:
            self.estimator.load_state_dict(state["estimator"])

    def metrics(self) -> dict[str, float]:
        """Per direction: ``control/gain_est/<d>`` (nats/step/unit), ``control/gain_z/<d>`` and
        ``control/share/<d>`` (its part of the move, signed); plus ``control/u``, ``control/kp``
        and ``control/aim`` (the target seen through the preview window, ``_aim``)."""
        est = self.estimator
        if est is None:
            return {}
        out = {"control/u": self.u, "control/kp": self.kp, "control/aim": self.aim}
        for d in self.dirs:
            out[f"control/gain_est/{d}"] = est.gain(d)
            out[f"control/gain_z/{d}"] = est.zscore(d)
            out[f"control/share/{d}"] = self.shares.get(d, 0.0)
        return out

    # --- identification ----------------------------------------------------------------------
    def _coordinates(self, knobs: Knobs) -> list[float]:
        """The applied knobs' deviation from ``initial``, along each (orthogonal) direction."""
        out = []
        for vec in self.dirs.values():
            dot = sum(c * (getattr(knobs, k) - getattr(self.initial, k)) for k, c in vec.items())
            out.append(dot / sum(c * c for c in vec.values()))
        return out

    def _is_brake(self, direction: str) -> bool:
        """Whether ``direction`` throttles every weight that trains: its sign is physics (reset)."""
        return direction == "throttle" and self.full_brake

    def _posterior(self, level: float) -> dict[str, float]:
        """m_j: each direction's effect (nats/step/unit), the estimate shrunk to its prior."""
        est = self.estimator
        assert est is not None
        g0 = self.prior_gain * max(level, 1e-3)
        out = {}
        for d in self.dirs:
            mu = g0 * self.learned.get(d, self.prior.get(d, 0.0))
            se = est.stderr(d)
            if not math.isfinite(se) or se <= 0:
                out[d] = mu
                continue
            w_prior, w_data = 1.0 / g0**2, 1.0 / se**2
            g = est.gain(d)
            if mu == 0.0 and g != 0.0:  # no prior sign: only the evidence beyond evidence_z counts
                g *= max(0.0, 1.0 - (self.evidence_z * se / g) ** 2)
            out[d] = (mu * w_prior + g * w_data) / (w_prior + w_data)
            if self._is_brake(d):
                out[d] = max(out[d], 0.1 * g0)
        return out

    def _aim(self, obs: Observation) -> tuple[float, float]:
        """(this step's aim, the next step's): the target seen through a centred window.

        Entropy moves at a bounded rate, so a step in the target cannot be followed at once;
        the squared error is least when the move starts before the step and ends after it,
        along a ramp centred on it. The mean of the target over [t - n, t + n] (n = ``preview``)
        is that ramp for a step and leaves a linear segment unchanged; its slope is the
        feed-forward. The window shrinks near the run's ends to stay centred (at step 0 the aim
        is the target: on a one-sided plant an early dip is never undone). The future comes
        from ``Observation.preview``, the past from this run.
        """
        past = self.past  # the last `preview` targets at most
        future = obs.preview or (obs.next_target,)  # an Observation built without a preview
        seq, i = past + [obs.target, *future], len(past)  # seq[i] is step t
        left = obs.total_steps - 1 - obs.step  # steps after t in the run

        def window(j: int, ahead: int) -> list[float]:  # centred on seq[j], symmetric
            m = max(min(self.preview, j, ahead, len(seq) - 1 - j), 0)
            return seq[j - m:j + m + 1]

        now = window(i, left)
        nxt = window(i + 1, left - 1) if left > 0 else now
        return sum(now) / len(now), sum(nxt) / len(nxt)

    # --- the law -----------------------------------------------------------------------------
    def act(self, obs: Observation) -> Knobs:
        est = self.estimator
        assert est is not None, "reset() first"
        h = obs.entropy
        # 1. identification: the previous step's applied knobs and dither, along each direction
        dith = [self.last_dither.get(d, 0.0) for d in self.dirs]
        est.update(obs.step, h, self._coordinates(obs.knobs), dith)
        for d in self.dirs:  # a sign the data have confirmed replaces the prior (hysteresis)
            z = est.zscore(d)
            if abs(z) >= self.sign_lock and not self._is_brake(d):
                self.learned[d] = math.copysign(max(abs(self.prior.get(d, 0.0)), 1.0), z)
        # 2. measurement filter and its noise band
        prev = self.h_filt
        if prev is None:
            self.h_filt = h
        else:
            innov = h - prev
            self.noise2 = innov * innov if self.noise2 is None else 0.9 * self.noise2 + 0.1 * innov * innov
            self.h_filt = self.ema * prev + (1.0 - self.ema) * h
        sigma_f = math.sqrt(self.noise2 or 0.0) * math.sqrt((1 - self.ema) / (1 + self.ema))
        # 3. the move direction v and the plant gain along it
        m = self._posterior(self.h_filt)
        top = max(abs(x) for x in m.values()) or 1.0
        self.shares = {d: x / top for d, x in m.items()}
        v: dict[str, float] = {}
        for d, vec in self.dirs.items():
            for k, c in vec.items():
                v[k] = v.get(k, 0.0) + self.shares[d] * c
        gain = sum(x * x for x in m.values()) / top  # nats per step per unit u
        level = max(self.h_filt, 1e-3)
        g_rel = max(gain / level, 1e-6)
        # 4. gains: SIMC for an integrating plant, scaled up as authority fades
        mixed = obs.extras.get("mixed_groups", math.nan)
        auth = 1.0 if not math.isfinite(mixed) else min(max(mixed / 0.5, 0.25), 1.0)
        kp_lo, kp_hi = self.kp_limits
        self.kp = min(max(1.0 / (g_rel * (self.tau_c + self.lag)), kp_lo), kp_hi) / auth
        t_i = 4.0 * (self.tau_c + self.lag)
        # 5. the reference governor: approach from above aims `margin` noise deviations high
        aim, aim_next = self._aim(obs)
        self.aim = aim
        self.past = [*self.past, obs.target][-self.preview:] if self.preview else []
        scale = max(abs(aim), 1e-3)
        band = self.margin * sigma_f
        above = self.h_filt - aim
        lift = band if above >= 0 else max(0.0, band + above)
        e = (aim + lift - self.h_filt) / scale
        d_raw = 0.0 if prev is None else -(self.h_filt - prev) / scale
        self.deriv = 0.5 * self.deriv + 0.5 * d_raw
        u_ff = ((aim_next - aim) / scale) / g_rel
        lo, hi = P.u_range(v, self.initial, self.bounds)
        # u_hold: the command that holds entropy still against the identified drift. At the
        # target u = u_hold brakes the collapse at once instead of waiting for an integral to
        # wind up (which on a one-sided plant arrives after the overshoot that nothing undoes).
        # Brake-only (>= 0): RLVR's drift is a collapse, the one trusted prior.
        # The hold is released slowly (a 5 % decay per step at most): while the brake sits at
        # its bound nothing excites the plant, drift and gain are then confounded, and a noisy
        # drift estimate would otherwise drop the brake at once.
        if est.n >= est.warmup:
            tau = (obs.step - (est.t0 or 0)) / 100.0
            drift = float(est.theta[1] + 2.0 * est.theta[2] * tau) / 100.0  # nats per step at u = 0
            release = 0.95 if e < 0 else 1.0  # released only while entropy is above its aim
            self.hold = max(min(max(-drift / max(gain, 1e-9), 0.0), hi), release * self.hold)
            u_ff += self.hold

        # the derivative only brakes (the noise ratchet, module doc)
        def law(integral: float) -> float:
            return self.kp * (e + integral / t_i + self.lag * max(self.deriv, 0.0)) + u_ff

        candidate = self.integral + e
        u_raw = law(candidate)
        pinned = (u_raw > hi and e > 0) or (u_raw < lo and e < 0)
        powerless = math.isfinite(mixed) and mixed < self.min_mixed
        # closing in: the error shrinks at least at half the designed closed-loop rate, so the
        # proportional path is doing the work and integrating the transient would only wind up
        # (an overshoot on a one-sided plant is never undone)
        de = self.deriv + (aim_next - aim) / scale  # smoothed change of e per step
        closing = e * de < 0 and abs(de) >= 0.5 * abs(e) / (self.tau_c + self.lag)
        self.saturated = self.saturated + 1 if pinned else 0
        stretch = max(round(2 * (self.tau_c + self.lag)), 2)  # steps per pinned-stretch check
        if self.saturated == 1:
            self.e_pinned = e
        elif self.saturated % stretch == 1:
            # pinned the way the error pushes for a window, and the error still growing: the
            # directions in use do not act as assumed; a sign the data have not established
            # is reversed (the knob's integrated move is collinear with the drift terms, so
            # the estimator alone cannot refute it, and the hold would read it as drift)
            if abs(e) > abs(self.e_pinned) + 3.0 * sigma_f / scale:
                for d, sh in self.shares.items():  # the directions carrying the move
                    if abs(sh) >= 0.5 and not self._is_brake(d) and abs(est.zscore(d)) < self.sign_lock:
                        self.learned[d] = -math.copysign(max(abs(self.prior.get(d, 0.0)), 1.0), sh)
            self.e_pinned = e
        if pinned or powerless or closing:
            u_raw = law(self.integral)
            if self.saturated > self.tau_c:  # out of reach for a while: forget the backlog
                self.integral *= 0.9
        else:
            self.integral = candidate
        self.u = min(max(u_raw, lo), hi)
        # 6. knobs = initial + u v, plus the dither inside the bounds (``_dither_fit``)
        values = {}
        for k, g in v.items():
            b_lo, b_hi = self.bounds.range(k)
            values[k] = min(max(getattr(self.initial, k) + g * self.u, b_lo), b_hi)
        self.last_dither = {}
        for j, (d, vec) in enumerate(self.dirs.items()):
            amp = self.excite * (0.35 if abs(est.zscore(d)) >= 3.0 else 1.0)
            if est.n <= self.probe_steps:
                amp = max(amp, self.probe_amplitude)
            offset, amp = self._dither_fit(values, vec, amp)
            sgn = paired_dither(obs.step, self.excite_hold, salt=j + 1)
            self.last_dither[d] = sgn * amp
            for k, c in vec.items():
                values[k] += (offset + sgn * amp) * c
        return self.with_actuated(values)

    def _dither_fit(self, values: dict[str, float], vec: dict[str, float], amp: float) -> tuple[float, float]:
        """(offset, amplitude) of a dither along ``vec`` that stays inside the bounds.

        Centred where it fits both ways. Against any other bound (a ceiling, a clip bound's
        limit) it is moved inward, so a knob pinned at its upper bound still excites the plant
        (the only way to learn that its sign is the opposite of the one assumed); not when the
        other side is unbounded. Never off a weight's floor: a braked policy stays braked.
        """
        d_lo, d_hi = -math.inf, math.inf  # the range of the move along vec
        floor_lo = floor_hi = False  # whether that end is a weight's floor
        for k, c in vec.items():
            b_lo, b_hi = self.bounds.range(k)
            down, up = (b_lo - values[k]) / c, (b_hi - values[k]) / c  # moves that reach each bound
            lo_end, hi_end = (down, up) if c > 0 else (up, down)
            is_floor = k in WEIGHTS
            if lo_end > d_lo:
                d_lo, floor_lo = lo_end, is_floor and c > 0
            if hi_end < d_hi:
                d_hi, floor_hi = hi_end, is_floor and c < 0
        d_lo, d_hi = min(d_lo, 0.0), max(d_hi, 0.0)
        centred = min(amp, -d_lo, d_hi)
        if centred >= amp or not math.isfinite(d_hi - d_lo):
            return 0.0, centred
        a = min(amp, (d_hi - d_lo) / 2.0)
        if d_hi < a and not floor_hi:  # pinned at the upper end: dither below it
            return d_hi - a, a
        if -d_lo < a and not floor_lo:
            return d_lo + a, a
        return 0.0, centred
