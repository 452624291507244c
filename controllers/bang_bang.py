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

from controllers import _params as P
from controllers.adaptive import KnobEffectEstimator
from regulator.controller import Controller
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.registry import register_controller


@register_controller("bang_bang")
class BangBangController(Controller):
    """Step one knob by a fixed amount toward raising or lowering entropy.

    Params (defaults in brackets):
        knob ["w_pos"]: the knob it moves (must be in ``control.actuate``).
        direction [paper's: w_pos -1, w_neg +1, eps_low -1, eps_high +1]: +1 or -1, the sign of
            the knob change that raises entropy, or ``auto`` (estimated online from the paper's).
        forgetting [0.98], confidence [2.5], confirm [10]: the ``auto`` estimator's RLS
            forgetting factor, |g| / se bound and flip confirmation steps (see ``pid``).
        delta_step [0.05]: the step Delta (> 0, knob units).
        lambda0 [0.0]: the knob's value before the first step (the paper's lambda_0 = 0);
            None = start from ``control.initial``.
        threshold [None]: a fixed entropy threshold delta (nats, >= 0); None = the target curve.
        band [0.0]: dead band half-width (nats, >= 0).
        hysteresis [0.0]: hysteresis half-width (nats, >= 0).

    Each step the knob is updated from this step's entropy, then applied to this step.
    """

    def __init__(
        self,
        knob: str = "w_pos",
        direction: int | None = None,
        delta_step: float = 0.05,
        lambda0: float | None = 0.0,
        threshold: float | None = None,
        band: float = 0.0,
        hysteresis: float = 0.0,
        forgetting: float = 0.98,
        confidence: float = 2.5,
        confirm: int = 10,
    ) -> None:
        self.knob = P.choice("knob", knob, KNOB_NAMES, "knob names")
        self.auto = direction == "auto"
        self.direction = (P.PAPER_DIRECTION[knob] if direction is None or self.auto
                          else P.direction("direction", direction))
        self.forgetting = P.number("forgetting", forgetting, above=0.5, maximum=1.0)
        self.confidence = P.number("confidence", confidence, above=0.0)
        self.confirm = P.integer("confirm", confirm, minimum=1)
        self.estimator: KnobEffectEstimator | None = None
        self.delta_step = P.number("delta_step", delta_step, above=0.0)
        self.lambda0 = None if lambda0 is None else P.knob_value("lambda0", knob, lambda0)
        self.threshold = None if threshold is None else P.number("threshold", threshold, minimum=0.0)
        self.band = P.number("band", band, minimum=0.0)
        self.hysteresis = P.number("hysteresis", hysteresis, minimum=0.0)
        self.value = 0.0 if self.lambda0 is None else self.lambda0
        self.raising: bool | None = None  # current mode: moving toward higher entropy?

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = ("w_pos",)) -> None:
        super().reset(initial, bounds, actuate)
        P.require_actuated(f"bang_bang on {self.knob}", (self.knob,), self.actuate)
        lo, hi = bounds.range(self.knob)
        v0 = getattr(initial, self.knob) if self.lambda0 is None else self.lambda0
        self.value = min(max(v0, lo), hi)
        self.raising = None
        if self.auto:
            self.estimator = KnobEffectEstimator(
                (self.knob,), {self.knob: self.value}, {self.knob: self.direction},
                forgetting=self.forgetting, z=self.confidence, confirm=self.confirm)

    def act(self, obs: Observation) -> Knobs:
        thr = obs.target if self.threshold is None else self.threshold
        h = obs.entropy
        if self.estimator is not None:
            self.estimator.update(obs.step, h, {self.knob: getattr(obs.knobs, self.knob)}, obs.extras)
            self.direction = self.estimator.sign(self.knob)
        # mode: the paper's rule is "raise if H < delta, else lower"; hysteresis delays the flip
        if self.raising is None or self.hysteresis == 0.0:
            self.raising = h < thr
        elif self.raising and h > thr + self.hysteresis:
            self.raising = False
        elif not self.raising and h < thr - self.hysteresis:
            self.raising = True
        if self.band == 0.0 or abs(h - thr) > self.band:
            step = self.direction * self.delta_step * (1 if self.raising else -1)
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
