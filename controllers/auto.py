"""``auto``: the default controller. Write a target curve; it finds out how the knobs act.

Which way a knob moves entropy depends on the model, the optimiser and the phase of training,
so no sign is fixed. The knobs move along a few *directions* in knob space: ``throttle`` (every
actuated weight down: it slows whatever the policy does, and RLVR's drift is a collapse, so down
raises entropy: the one trusted prior), ``balance`` (w_pos down, w_neg up; no prior sign) and
the clip bounds (``eps_high`` up, ``eps_low`` down; they act only when the ratio leaves 1).

Each direction's effect g_j (nats per step per unit move) is estimated online with a small
paired dither as the instrument (``controllers.dither``: consistent in closed loop, where a plain
regression credits the collapse to the knobs), shrunk towards a Gaussian prior per direction
(throttle +g0, the others 0, spread g0 = ``prior_gain`` x H). The knobs then move along
v = sum_j m_j D_j / max |m_j| (a direction whose effect is unknown is not used) by one command:

    knobs = initial + u v + dither
    u = kp (e + I / T_i + F) + u_ff + u_hold,    e = (T' - H_f) / T     (relative error)
    F = coast r r^2 / (r^2 + sd^2),    r = max(smoothed closing rate of e, 0)

- Gains: SIMC for an integrating plant from the identified gain along v: kp = 1 / (G_rel
  (tau_c + lag)), T_i = 4 (tau_c + lag); u_ff = slope(T') / G_rel, except that a falling
  target is followed down from below it only within the noise band (the target comes to the
  entropy; ``follow_share``).
- Coast forecast F: after the weights ease off, the optimiser's momentum carries the policy on
  for about ``coast`` steps of its current rate (1 / (1 - beta1) for Adam; only the full brake,
  every weight 0, stops it at once, as the plants then step at zero learning rate), so the loop
  brakes that far ahead; weighted by the rate's signal-to-noise ratio (sd: its noise deviation) so a noisy
  sensor does not brake every descent. The rate is the error's: a falling aim moves on too.
- Preview: the loop aims at the mean of the target over a centred window (``_aim``), so a step
  becomes the ramp a rate-limited plant can follow with the least squared error.
- Hold: u_hold = max(-drift / G, 0) cancels the drift the knobs do not explain, so the loop
  sits on the target without an integral that winds up during the approach; it is released
  slowly and only while entropy is above its aim. Until a hold is identified, entropy more
  than two noise deviations below its aim gets the full brake, not a proportional one: there
  every live step is a fall, and on a one-sided plant nothing undoes it.
- Reference governor: an approach from above aims ``margin`` noise deviations high, because on
  a one-sided plant nothing undoes an undershoot, less the target's fall over the preview
  window (a falling target closes an undershoot by itself); the derivative only brakes.
- Signs: the full throttle is a brake (at all weights 0 the policy does not move) and keeps its
  sign; another direction's sign is the data's once |z| reaches ``sign_lock``, and is reversed
  when the knobs sit pinned the way the error pushes while the error keeps growing. A dither is
  moved inward from a ceiling (never off a weight's floor) so a wrongly pinned knob still
  excites the plant. A learned sign steers only descents: below the aim, or while the command
  brakes, the knobs move along the brake alone (a direction that raised entropy in one phase
  of training can lower it in the next, and on a one-sided plant that fall is never undone).
- Anti-windup: the integral holds while u is saturated, while the knobs have no authority
  (mixed-group fraction below ``min_mixed``) and while the error closes at least at half the
  designed rate; it leaks while the target stays out of reach. kp grows as authority fades.

- Ratio moves (``controllers.ratio_moves``): under Adam only the ratio of the weights sets the
  update, so turning every weight up descends no faster than GRPO. While the command is pinned
  descending and the aim is still far, the weight that raises entropy (w_neg until the balance
  estimate says otherwise) is cut; a braked loop far below its aim tries the raising side
  (``ascent_level``) and stops once the trial's mean shows that it lowers entropy instead.

Weight bounds default to [0, 2] (``DEFAULT_BOUNDS``): a one-sided [0, 1] range can only slow the
collapse. With every actuated weight at its minimum the policy learns nothing; the Regulator
reports it (``control/frozen``), and the lower bounds are the user's floor on learning.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar

from pydantic import Field, Strict, StrictFloat, field_validator

from controllers import _params as P
from controllers.dither import DitherIVEstimator, paired_dither
from controllers.ratio_moves import RatioMoves
from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema

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


def follow_share(depth: float, sigma: float) -> float:
    """Share of a falling target's slope the loop follows down from ``depth`` nats below its aim.

    Below the aim a falling target comes to the entropy; descending to keep pace would only
    widen an undershoot that nothing undoes (and late in a run, divided by a vanishing gain,
    the feed-forward turned every weight to its ceiling). Faded out linearly over two noise
    deviations ``sigma``, so a reading that noise puts just below the aim neither keeps the full
    descent nor switches it off.
    """
    if depth <= 0:
        return 1.0
    return max(0.0, 1.0 - depth / (2.0 * sigma)) if sigma > 0 else 0.0


#: [min, max] of the self-tuned kp, 0 < min <= max
KpLimits = Annotated[tuple[Annotated[StrictFloat, Field(gt=0)], StrictFloat], Strict(False)]


class AutoParams(Schema):
    """Parameters of ``auto``; none needs setting."""

    tau_c: float = Field(10.0, gt=0)
    """Closed-loop time constant (steps) the self-tuned gains aim for."""
    lag: float = Field(4.0, ge=0)
    """Plant lag (steps) in the self-tuned gains and the ratio moves' arrival check."""
    coast: float = Field(10.0, ge=0)
    """Steps the policy keeps moving after the weights ease off (the optimiser's momentum: about
    1 / (1 - beta1), 10 for Adam's 0.9; the full brake stops it at once); the derivative's
    horizon, so the loop brakes before it arrives (``benchmarks/coast.py`` measures it)."""
    prior_gain: float = Field(0.02, gt=0)
    """Prior |effect| of the throttle: relative entropy change per step per unit move."""
    ema: float = Field(0.5, ge=0, lt=1)
    """EMA weight of the past on the measured entropy."""
    margin: float = Field(1.0, ge=0)
    """Governor offset above a target approached from above, in standard deviations of the
    filtered measurement noise."""
    excite: float = Field(0.08, ge=0)
    """Dither amplitude (knob units along a direction; 0 = no identification, the prior alone
    decides)."""
    excite_hold: int = Field(3, ge=1)
    """Steps each dither block holds."""
    forgetting: float = Field(0.985, gt=0.5, le=1)
    """Forgetting factor of the effect estimator."""
    min_mixed: float = Field(0.05, ge=0, le=1)
    """Mixed-group fraction below which the knobs count as powerless (all-equal rewards give
    zero advantages)."""
    kp_limits: KpLimits = (0.3, 60.0)
    """[min, max] of the self-tuned proportional gain (relative units; 0 < min <= max)."""
    prior: dict[str, float] = Field(default_factory=lambda: {"throttle": 1.0})
    """Prior mean effect per direction (throttle, balance, eps_high, eps_low), in units of
    ``prior_gain`` x H; a partial mapping keeps throttle 1."""
    probe_steps: int = Field(24, ge=0)
    """Steps at the start with the larger ``probe_amplitude`` dither while entropy is above its
    aim (identification is cheapest there, inside the usual burn-in, on a descent the loop makes
    anyway; below the aim each extra weight is a fall that nothing may undo)."""
    probe_amplitude: float = Field(0.5, ge=0)
    """Dither amplitude during the first ``probe_steps``."""
    evidence_z: float = Field(3.0, ge=0)
    """A direction with no prior sign moves the knobs only by the part of its estimate beyond
    this many standard errors (0 = the plain posterior)."""
    sign_lock: float = Field(4.0, gt=0)
    """A z-score this large makes the estimate's sign the direction's prior, so forgetting the
    data later does not fall back to a sign they refuted."""
    descent_tilt: float = Field(1.0, ge=0, le=1)
    """Share of the entropy-raising weight cut while the loop descends at its limit
    (``controllers.ratio_moves``; 0 = no tilt)."""
    tilt_z: float = Field(2.0, ge=0)
    """|z| of the balance estimate beyond which the data, not the first-order prior (w_neg),
    name the weight that raises entropy."""
    ascent_level: float = Field(1.0, ge=0)
    """Weight given to the entropy-raising side in an ascent trial, while entropy sits more than
    10 % below its aim with every weight braked, for ``coast`` x ln 4 steps or more (the
    optimiser's momentum drained first; 0 = no trials; on a plant where nothing raises
    entropy, from scratch or late in training, a refuted trial costs a fall it cannot undo)."""
    ascent_z: float = Field(2.0, ge=0)
    """Fall of the trial's mean entropy below the mean before it, in standard errors, that
    refutes an ascent trial."""
    ascent_retry: int = Field(100, ge=1)
    """Steps before an ascent trial is tried again after its first refutation (doubling after
    each one)."""
    preview: int | None = Field(None, ge=0)
    """Half-width (steps) of the centred window through which the target is aimed at; None =
    tau_c + lag rounded, the loop's designed response time (0 = aim at the target itself)."""

    @field_validator("kp_limits")
    @classmethod
    def _kp_limits(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[1] >= v[0]:
            raise ConfigError("[1]", f"a number >= {v[0]} (the minimum)", v[1])
        return v

    @field_validator("prior")
    @classmethod
    def _prior(cls, v: dict[str, float]) -> dict[str, float]:
        return {"throttle": 1.0, **v}


class AutoController(Controller):
    """The default controller: direction, gain and authority of every knob found online."""

    name = "auto"
    Params = AutoParams
    params: AutoParams
    #: knob bounds this controller runs under when the config names none
    DEFAULT_BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {"w_pos": (0.0, 2.0), "w_neg": (0.0, 2.0)}
    #: knobs it moves when the config names none (the trainer adds the clip bounds when there
    #: is more than one update per rollout batch)
    DEFAULT_ACTUATE: ClassVar[tuple[str, ...]] = WEIGHTS

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.preview = round(p.tau_c + p.lag) if p.preview is None else p.preview
        self.preview_steps = self.preview + 1
        self.dirs: dict[str, dict[str, float]] = {}
        self.estimator: DitherIVEstimator | None = None
        self.ratio = RatioMoves(p.descent_tilt, p.tilt_z, p.ascent_level, p.ascent_z, p.ascent_retry,
                                lead=p.lag + 2.0)
        self._clear()

    # --- state -------------------------------------------------------------------------------
    def _clear(self) -> None:
        self.h_filt: float | None = None
        self.noise2: float | None = None  # EWMA of the centred squared innovation H - H_f,prev
        self.innov_mean = 0.0  # EWMA of the innovation: the motion, taken out of the noise
        self.integral = 0.0
        self.hold = 0.0
        self.deriv = 0.0
        self.u = 0.0
        self.saturated = 0  # consecutive steps with u pinned at a limit
        self.braked = 0  # consecutive steps at the full brake
        self.e_pinned = 0.0  # the error when the current pinned stretch began
        self.last_dither: dict[str, float] = {}
        self.shares: dict[str, float] = {}
        self.kp = 0.0
        self.learned: dict[str, float] = {}
        self.past: list[float] = []  # the last ``preview`` targets
        self.aim = math.nan
        self.reference = math.nan  # the aim plus the governor's margin: what the loop steers to
        self.ratio.clear()

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = WEIGHTS) -> None:
        super().reset(initial, bounds, actuate)
        self.dirs = directions_for(self.actuate)
        if not self.dirs:
            raise ConfigError("control.actuate", "at least one of w_pos, w_neg, eps_low, eps_high",
                                list(self.actuate))
        self.estimator = DitherIVEstimator(tuple(self.dirs), forgetting=self.params.forgetting)
        # throttling every weight that is not zero anyway is a brake: at all weights 0 the policy
        # does not move, so its sign (down never lowers entropy) is physics, not a prior to
        # revise. Throttling w_pos alone while w_neg trains shifts the balance: either sign.
        self.full_brake = all(k in self.actuate or getattr(initial, k) == 0.0 for k in WEIGHTS)
        self._clear()

    def state_dict(self) -> dict[str, Any]:
        est = self.estimator
        return {"h_filt": self.h_filt, "noise2": self.noise2, "innov_mean": self.innov_mean,
                "integral": self.integral,
                "hold": self.hold,
                "deriv": self.deriv, "u": self.u, "saturated": self.saturated, "braked": self.braked,
                "e_pinned": self.e_pinned,
                "last_dither": dict(self.last_dither), "shares": dict(self.shares), "kp": self.kp,
                "learned": dict(self.learned), "past": list(self.past),
                "ratio": self.ratio.state_dict(),
                "estimator": None if est is None else est.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.h_filt = None if state["h_filt"] is None else float(state["h_filt"])
        self.noise2 = None if state["noise2"] is None else float(state["noise2"])
        self.integral, self.deriv, self.u = (float(state[k]) for k in ("integral", "deriv", "u"))
        self.hold = float(state.get("hold", 0.0))
        self.innov_mean = float(state.get("innov_mean", 0.0))
        self.saturated = int(state["saturated"])
        self.braked = int(state.get("braked", 0))
        self.e_pinned = float(state.get("e_pinned", 0.0))
        self.last_dither = {k: float(v) for k, v in state["last_dither"].items()}
        self.shares = {k: float(v) for k, v in state["shares"].items()}
        self.kp = float(state["kp"])
        self.learned = {k: float(v) for k, v in state.get("learned", {}).items()}
        self.past = [float(x) for x in state.get("past", [])]
        if "ratio" in state:
            self.ratio.load_state_dict(state["ratio"])
        if self.estimator is not None and state.get("estimator") is not None:
            self.estimator.load_state_dict(state["estimator"])

    def metrics(self) -> dict[str, float]:
        """Per direction: ``control/gain_est/<d>`` (nats/step/unit), ``control/gain_z/<d>`` and
        ``control/share/<d>`` (its part of the move, signed); plus ``control/u``, ``control/kp``,
        ``control/aim`` (the target seen through the preview window, ``_aim``),
        ``control/reference`` (the aim plus the governor's margin: the level it steers to) and the ratio
        moves' ``control/tilt`` and ``control/ascent`` (0..1, ``controllers.ratio_moves``)."""
        est = self.estimator
        if est is None:
            return {}
        out = {"control/u": self.u, "control/kp": self.kp, "control/aim": self.aim,
               "control/reference": self.reference,
               "control/tilt": self.ratio.tilt, "control/ascent": self.ratio.ascent}
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

    @property
    def _est(self) -> DitherIVEstimator:
        """The effect estimator (``reset`` builds it)."""
        assert self.estimator is not None, "reset() first"
        return self.estimator

    def _is_brake(self, direction: str) -> bool:
        """Whether ``direction`` throttles every weight that trains: its sign is physics (reset)."""
        return direction == "throttle" and self.full_brake

    def _posterior(self, level: float) -> dict[str, float]:
        """m_j: each direction's effect (nats/step/unit), the estimate shrunk to its prior."""
        est = self._est
        g0 = self.params.prior_gain * max(level, 1e-3)
        out = {}
        for d in self.dirs:
            mu = g0 * self.learned.get(d, self.params.prior.get(d, 0.0))
            se = est.stderr(d)
            if not math.isfinite(se) or se <= 0:
                out[d] = mu
                continue
            w_prior, w_data = 1.0 / g0**2, 1.0 / se**2
            g = est.gain(d)
            if mu == 0.0 and g != 0.0:  # no prior sign: only the evidence beyond evidence_z counts
                g *= max(0.0, 1.0 - (self.params.evidence_z * se / g) ** 2)
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
        self._identify(obs)
        prev, sigma_f = self._filter(obs.entropy)
        aim, aim_next = self._aim(obs)
        self.aim = aim
        self.past = [*self.past, obs.target][-self.preview:] if self.preview else []
        scale = max(abs(aim), 1e-3)
        e = self._governed_error(obs, aim, sigma_f, scale)
        v, gain = self._move_direction(e)
        g_rel = max(gain / max(self.h_filt, 1e-3), 1e-6)
        # 5. gains: SIMC for an integrating plant, scaled up as authority fades
        mixed = obs.extras.get("mixed_groups", math.nan)
        auth = 1.0 if not math.isfinite(mixed) else min(max(mixed / 0.5, 0.25), 1.0)
        kp_lo, kp_hi = self.params.kp_limits
        self.kp = min(max(1.0 / (g_rel * (self.params.tau_c + self.params.lag)), kp_lo), kp_hi) / auth
        d_raw = 0.0 if prev is None else -(self.h_filt - prev) / scale
        self.deriv = 0.5 * self.deriv + 0.5 * d_raw
        aim_slope = (aim_next - aim) / scale
        closing_rate = self.deriv + aim_slope  # smoothed change of e per step
        lo, hi = P.u_range(v, self.initial, self.bounds)
        u_ff = self._feed_forward(obs.step, aim_slope / g_rel, aim - self.h_filt, sigma_f, e, gain, hi)
        forecast = self._coast_forecast(closing_rate, scale)
        u_raw = self._command(e, forecast, u_ff, closing_rate, (lo, hi), mixed, 3.0 * sigma_f / scale)
        if self.full_brake and self.hold <= 0.0 and self.h_filt < aim - 2.0 * sigma_f:
            # clearly below the aim with no identified hold: every live step is a fall that
            # nothing may undo, and a proportional brake still trains (on SmolLM2, 16 % below
            # the aim gave weights of 0.35 and each such step cost 0.05-0.15 nats); brake fully
            u_raw = max(u_raw, hi)
        self.u = min(max(u_raw, lo), hi)
        # an ascent trial starts from a drained optimiser: after enough braked steps that Adam's
        # first moment is below a quarter (beta1^n with beta1 = 1 - 1 / coast), so the trial's
        # steps follow its own gradient instead of replaying the last descent's (on SmolLM2 a
        # trial begun two braked steps after live ones fell 0.4 nats in four steps)
        at_brake = self.u >= hi - 1e-9
        drained = at_brake and self.braked >= max(3, math.ceil(self.params.coast * math.log(4.0)))
        self.braked = self.braked + 1 if at_brake else 0
        self.ratio.update(obs.step, self.h_filt, -self.deriv * scale, self.reference, aim, sigma_f,
                          descend_pinned=e < 0 and self.u <= lo + 1e-9,
                          brake_pinned=drained)
        return self._knobs(obs.step, v, e)

    def _identify(self, obs: Observation) -> None:
        """1. The previous step's applied knobs and dither, along each direction, into the
        effect estimator; a sign the data have confirmed replaces the prior (hysteresis)."""
        est = self._est
        dith = [self.last_dither.get(d, 0.0) for d in self.dirs]
        est.update(obs.step, obs.entropy, self._coordinates(obs.knobs), dith)
        for d in self.dirs:
            z = est.zscore(d)
            if abs(z) >= self.params.sign_lock and not self._is_brake(d):
                self._learn_sign(d, z)

    def _learn_sign(self, d: str, sign: float) -> None:
        """Make ``sign`` direction ``d``'s prior sign, at the prior's weight (at least 1)."""
        self.learned[d] = math.copysign(max(abs(self.params.prior.get(d, 0.0)), 1.0), sign)

    def _filter(self, h: float) -> tuple[float | None, float]:
        """2. The measurement filter: (the previous filtered entropy, the filtered noise
        deviation). The noise is the innovation's spread about its mean (a fast descent is not
        noise)."""
        prev = self.h_filt
        if prev is None:
            self.h_filt = h
        else:
            innov = h - prev
            if self.noise2 is None:
                self.innov_mean, self.noise2 = innov, 0.0
            dev2 = (innov - self.innov_mean) ** 2
            self.innov_mean = 0.9 * self.innov_mean + 0.1 * innov
            self.noise2 = 0.9 * self.noise2 + 0.1 * dev2
            self.h_filt = self.params.ema * prev + (1.0 - self.params.ema) * h
        return prev, math.sqrt(self.noise2 or 0.0) * math.sqrt((1 - self.params.ema) / (1 + self.params.ema))

    def _governed_error(self, obs: Observation, aim: float, sigma_f: float, scale: float) -> float:
        """3. The reference governor: an approach from above aims ``margin`` noise deviations
        high, less the part of that margin the target's own fall over the preview (about the
        loop's response time) covers: a falling target closes an undershoot by itself. Returns
        the relative error against that reference (``self.reference``)."""
        assert self.h_filt is not None
        closes = max(aim - min(obs.preview or (obs.next_target,)), 0.0)
        band = max(self.params.margin * sigma_f - closes, 0.0)
        above = self.h_filt - aim
        lift = band if above >= 0 else max(0.0, band + above)
        self.reference = aim + lift
        return (self.reference - self.h_filt) / scale

    def _move_direction(self, e: float) -> tuple[dict[str, float], float]:
        """4. The move direction v (knob -> change per unit u) and the plant gain along it
        (nats per step per unit u). Below the aim, or while the command brakes (u > 0 last
        step), only the brake moves: its sign is physics, while a learned direction that raised
        entropy earlier can lower it now (late from scratch, w_neg alone collapses fastest) and
        nothing undoes that fall; the guarded way up is the ascent trial
        (``controllers.ratio_moves``). At u = 0 both give the initial knobs."""
        assert self.h_filt is not None
        m = self._posterior(self.h_filt)
        if (e > 0 or self.u > 0) and self.full_brake:
            m = {d: (x if self._is_brake(d) else 0.0) for d, x in m.items()}
        top = max(abs(x) for x in m.values()) or 1.0
        self.shares = {d: x / top for d, x in m.items()}
        v: dict[str, float] = {}
        for d, vec in self.dirs.items():
            for k, c in vec.items():
                v[k] = v.get(k, 0.0) + self.shares[d] * c
        return v, sum(x * x for x in m.values()) / top

    def _feed_forward(self, step: int, u_slope: float, depth: float, sigma_f: float, e: float,
                      gain: float, hi: float) -> float:
        """The target's slope as a command (``u_slope``; a falling one followed from ``depth``
        below the aim only by ``follow_share``), plus u_hold: the command that holds entropy
        still against the identified drift. At the target u = u_hold brakes the collapse at once
        instead of waiting for an integral to wind up (which on a one-sided plant arrives after
        the overshoot that nothing undoes). Brake-only (>= 0): RLVR's drift is a collapse, the
        one trusted prior. The hold is released slowly (a 5 % decay per step at most) and only
        while entropy is above its aim: while the brake sits at its bound nothing excites the
        plant, drift and gain are then confounded, and a noisy drift estimate would otherwise
        drop the brake at once."""
        est = self._est
        u_ff = u_slope * follow_share(depth, sigma_f) if u_slope < 0 else u_slope
        if est.n >= est.warmup:
            tau = (step - (est.t0 or 0)) / 100.0
            drift = float(est.theta[1] + 2.0 * est.theta[2] * tau) / 100.0  # nats per step at u = 0
            release = 0.95 if e < 0 else 1.0
            self.hold = max(min(max(-drift / max(gain, 1e-9), 0.0), hi), release * self.hold)
            u_ff += self.hold
        return u_ff

    def _coast_forecast(self, closing_rate: float, scale: float) -> float:
        """The fall still to come once the weights brake: ``coast`` steps of the rate at which
        the error closes (the aim moves too), weighted by that rate's signal-to-noise ratio
        r^2 / (r^2 + sd^2), so a noisy sensor does not brake every descent on noise. Only ever
        brakes (the noise ratchet, module doc). sd: H_f moves by (1 - ema) x the innovation, and
        the rate's 0.5 EMA keeps 1/3 of its variance."""
        sd2 = (1.0 - self.params.ema) ** 2 * (self.noise2 or 0.0) / 3.0 / scale**2
        rate = max(closing_rate, 0.0)
        return self.params.coast * rate * rate**2 / (rate**2 + sd2) if rate > 0 else 0.0

    def _command(self, e: float, forecast: float, u_ff: float, de: float, limits: tuple[float, float],
                 mixed: float, growth: float) -> float:
        """The law u = kp (e + I / T_i + F) + u_ff with its anti-windup: the integral holds
        while u is pinned the way the error pushes, while the knobs have no authority, and while
        the error closes (``de``: its change per step) at least at half the designed rate (the
        proportional path is doing the work; integrating the transient would only wind up, and
        an overshoot on a one-sided plant is never undone); pinned for long, it leaks. A pinned
        stretch whose error grew by more than ``growth`` reverses the unproven signs."""
        lo, hi = limits
        t_i = 4.0 * (self.params.tau_c + self.params.lag)

        def law(integral: float) -> float:
            return self.kp * (e + integral / t_i + forecast) + u_ff

        candidate = self.integral + e
        u_raw = law(candidate)
        pinned = (u_raw > hi and e > 0) or (u_raw < lo and e < 0)
        powerless = math.isfinite(mixed) and mixed < self.params.min_mixed
        response = self.params.tau_c + self.params.lag + self.params.coast  # braking starts a coast early
        closing = e * de < 0 and abs(de) >= 0.5 * abs(e) / response
        self.saturated = self.saturated + 1 if pinned else 0
        stretch = max(round(2 * (self.params.tau_c + self.params.lag)), 2)  # steps per pinned-stretch check
        if self.saturated == 1:
            self.e_pinned = e
        elif self.saturated % stretch == 1:
            if abs(e) > abs(self.e_pinned) + growth:
                self._reverse_unproven_signs()
            self.e_pinned = e
        if pinned or powerless or closing:
            u_raw = law(self.integral)
            if self.saturated > self.params.tau_c:  # out of reach for a while: forget the backlog
                self.integral *= 0.9
        else:
            self.integral = candidate
        return u_raw

    def _reverse_unproven_signs(self) -> None:
        """Pinned the way the error pushes for a window, and the error still growing: the
        directions in use do not act as assumed. A sign the data have not established is
        reversed (the knob's integrated move is collinear with the drift terms, so the
        estimator alone cannot refute it, and the hold would read it as drift)."""
        est = self._est
        for d, sh in self.shares.items():  # the directions carrying the move
            locked = abs(est.zscore(d)) >= self.params.sign_lock
            if abs(sh) >= 0.5 and not self._is_brake(d) and not locked:
                self._learn_sign(d, -sh)

    def _knobs(self, step: int, v: dict[str, float], e: float) -> Knobs:
        """6. knobs = initial + u v, the ratio moves, plus the dither inside the bounds
        (``_dither_fit``; the larger probe only above the aim, ``probe_steps``)."""
        est = self._est
        values = {}
        for k, g in v.items():
            b_lo, b_hi = self.bounds.range(k)
            values[k] = min(max(getattr(self.initial, k) + g * self.u, b_lo), b_hi)
        if "balance" in self.dirs:  # both weights actuated: the ratio moves
            self.ratio.apply(values, self.ratio.raising_weight(est.gain("balance"), est.zscore("balance")))
        self.last_dither = {}
        for j, (d, vec) in enumerate(self.dirs.items()):
            amp = self.params.excite * (0.35 if abs(est.zscore(d)) >= 3.0 else 1.0)
            if est.n <= self.params.probe_steps and e < 0:
                amp = max(amp, self.params.probe_amplitude)
            offset, amp = self._dither_fit(values, vec, amp)
            sgn = paired_dither(step, self.params.excite_hold, salt=j + 1)
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
