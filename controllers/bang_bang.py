"""``bang_bang``: the paper's entropy-guided rule, with dead-band and hysteresis variants.

The paper (arXiv 2511.05993), on lambda = w_pos:
    lambda <- clip(lambda - Delta, 0, 1)  if H < delta
    lambda <- clip(lambda + Delta, 0, 1)  otherwise,        Delta = 0.05, lambda_0 = 0.
Generalised: the knob moves by ``direction * delta_step`` when entropy is below the threshold
(``direction`` = the sign of the change that raises entropy; the paper's for w_pos is -1) and by
``-direction * delta_step`` otherwise, clipped to ``control.bounds`` (w_pos default [0, 1], the
paper's clip). The threshold is the target curve unless ``threshold`` fixes it.

Variants: ``band`` > 0: no change while |H - threshold| <= band (dead band, after AEnt);
``hysteresis`` > 0: the moving direction flips only once H crosses threshold -/+ hysteresis.

``direction: auto``: the sign is estimated online (``controllers.adaptive.KnobEffectEstimator``:
RLS with forgetting, hysteresis + confidence bound), starting from the paper's; the rule's own
back-and-forth steps are the excitation. Estimates: ``metrics()`` -> ``control/gain_est/<knob>``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from controllers import _params as P
from controllers.adaptive import KnobEffectEstimator
from regulator.controller import Controller
from regulator.knobs import DEFAULT_ACTUATE, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema


class BangBangParams(Schema):
    """Parameters of ``bang_bang``."""

    knob: P.Knob = "w_pos"
    """The knob it moves (must be in ``control.actuate``)."""
    direction: P.DirectionOrAuto = None
    """+1 or -1: the sign of the knob change that raises entropy; ``auto`` = estimated online
    from the paper's; None = the paper's (w_pos -1, w_neg +1, eps_low -1, eps_high +1)."""
    delta_step: float = Field(0.05, gt=0)
    """The step Delta (knob units)."""
    lambda0: float | None = Field(0.0, allow_inf_nan=True)
    """The knob's value before the first step (the paper's lambda_0 = 0); None = start from
    ``control.initial``."""
    threshold: float | None = Field(None, ge=0)
    """A fixed entropy threshold delta (nats); None = the target curve."""
    band: float = Field(0.0, ge=0)
    """Dead-band half-width (nats): no change while |H - threshold| <= band."""
    hysteresis: float = Field(0.0, ge=0)
    """Hysteresis half-width (nats): the moving direction flips only once H crosses
    threshold -/+ hysteresis."""
    forgetting: float = Field(0.98, gt=0.5, le=1)
    """``auto``: RLS forgetting factor."""
    confidence: float = Field(2.5, gt=0)
    """``auto``: |g| / se needed before an estimate counts."""
    confirm: int = Field(10, ge=1)
    """``auto``: consecutive confident contrary steps before a sign flips."""

    @model_validator(mode="after")
    def _lambda0_is_a_knob_value(self) -> BangBangParams:
        if self.lambda0 is not None:
            P.knob_value(self.knob, self.lambda0, "lambda0")
        return self


class BangBangController(Controller):
    """Step one knob by a fixed amount toward raising or lowering entropy.

    Each step the knob is updated from this step's entropy, then applied to this step.
    """

    name = "bang_bang"
    Params = BangBangParams
    params: BangBangParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.knob = p.knob
        self.auto = p.direction == "auto"
        fixed = p.direction not in (None, "auto")
        self.direction = int(p.direction) if fixed else P.PAPER_DIRECTION[p.knob]  # type: ignore[arg-type]
        self.estimator: KnobEffectEstimator | None = None
        self.value = 0.0 if p.lambda0 is None else p.lambda0
        self.raising: bool | None = None  # current mode: moving toward higher entropy?

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = DEFAULT_ACTUATE) -> None:
        super().reset(initial, bounds, actuate)
        P.require_actuated(f"bang_bang on {self.knob}", (self.knob,), self.actuate)
        lo, hi = bounds.range(self.knob)
        v0 = getattr(initial, self.knob) if self.params.lambda0 is None else self.params.lambda0
        self.value = min(max(v0, lo), hi)
        self.raising = None
        if self.auto:
            self.estimator = KnobEffectEstimator(
                (self.knob,), {self.knob: self.value}, {self.knob: self.direction},
                forgetting=self.params.forgetting, z=self.params.confidence, confirm=self.params.confirm)

    def act(self, obs: Observation) -> Knobs:
        thr = obs.target if self.params.threshold is None else self.params.threshold
        h = obs.entropy
        if self.estimator is not None:
            self.estimator.update(obs.step, h, {self.knob: getattr(obs.knobs, self.knob)}, obs.extras)
            self.direction = self.estimator.sign(self.knob)
        # mode: the paper's rule is "raise if H < delta, else lower"; hysteresis delays the flip
        if self.raising is None or self.params.hysteresis == 0.0:
            self.raising = h < thr
        elif self.raising and h > thr + self.params.hysteresis:
            self.raising = False
        elif not self.raising and h < thr - self.params.hysteresis:
            self.raising = True
        if self.params.band == 0.0 or abs(h - thr) > self.params.band:
            step = self.direction * self.params.delta_step * (1 if self.raising else -1)
            lo, hi = self.bounds.range(self.knob)
            self.value = min(max(self.value + step, lo), hi)
        return self.with_actuated({self.knob: self.value})

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "raising": self.raising}
        if self.estimator is not None:
            out["estimator"] = self.estimator.state_dict()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])
        self.raising = None if state["raising"] is None else bool(state["raising"])
        if self.estimator is not None and "estimator" in state:
            self.estimator.load_state_dict(state["estimator"])
            self.direction = self.estimator.sign(self.knob)

    def metrics(self) -> dict[str, float]:
        """``control/gain_est/<knob>`` (and sign, z-score) under ``direction: auto``; else {}."""
        return {} if self.estimator is None else self.estimator.metrics()
