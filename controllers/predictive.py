"""``predictive``: one-step model-predictive choice of the weights from the per-sign first-order
entropy statistics, with an online-calibrated step size per sign.

First-order model of the next step (``regulator.loss.predicted_entropy_change``: dh_pos, dh_neg =
entropy change of the A>0 / A<0 tokens at unit weight, per unit step):

    H_{t+1} - H_t = d_t + eta_pos w_pos dh_pos + eta_neg w_neg dh_neg

eta_k (the effective step size of each sign: learning rate, optimiser normalisation, the
tokens the first-order term misses) and the drift d_t are calibrated online by the RLS of
``controllers.adaptive.KnobEffectEstimator`` on the entropy level with the regressors
X_k = sum_{s<t} w_k,s dh_k,s (levels, not differences: the sensor noise is white and the
per-step signal small). eta_k may come out negative: dh is evidence about direction, not ground
truth.

Each step it picks the weights w nearest to the previous ones (minimum norm) whose predicted
entropy is ``next_target``:

    r = (next_target - H_f) - d_t - sum_k v_k w_k,prev,   v_k = eta_k dh_k
    w = clip(w_prev + v r / (|v|^2 + rho),  bounds),  |w - w_prev| <= max_move

H_f is the EMA-filtered measurement, rho = (damping x typical |v|)^2 keeps the step finite when
the statistics vanish (at collapse no knob has authority, docs/regimes.md §2). Before ``warmup``
steps eta_k = ``eta0`` (the first-order prediction taken at face value). Only w_pos / w_neg can
be actuated. The Regulator adds its bounds and rate limits on top.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from controllers.adaptive import DH_KEY, KnobEffectEstimator
from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import DEFAULT_ACTUATE, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema


class PredictiveParams(Schema):
    """Parameters of ``predictive``."""

    eta0: float = Field(1.0, gt=0)
    """Step size used before calibration (the first-order prediction taken at face value)."""
    warmup: int = Field(20, ge=2)
    """Steps before the calibrated eta replaces eta0."""
    forgetting: float = Field(0.98, gt=0.5, le=1)
    """RLS forgetting factor."""
    ema: float = Field(0.5, ge=0, lt=1)
    """EMA weight of the past on the measured entropy."""
    max_move: float = Field(0.2, gt=0)
    """Largest change of a weight per step (knob units)."""
    damping: float = Field(0.5, ge=0)
    """rho = (damping x EMA of |v|)^2 keeps the step finite when the statistics vanish."""


class PredictiveController(Controller):
    """Sets w_pos / w_neg so the first-order predicted next entropy equals ``next_target``."""

    name = "predictive"
    Params = PredictiveParams
    params: PredictiveParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.estimator: KnobEffectEstimator | None = None
        self._clear()

    def _clear(self) -> None:
        self.h_filt: float | None = None
        self.v_scale = 0.0
        self.last_dh: dict[str, float] = {}

    def reset(self, initial: Knobs, bounds: KnobBounds, actuate: tuple[str, ...] = DEFAULT_ACTUATE) -> None:
        super().reset(initial, bounds, actuate)
        bad = [k for k in self.actuate if k not in DH_KEY]
        if bad:
            raise ConfigError("control.actuate", "w_pos and/or w_neg only (predictive uses the "
                              "per-sign statistics dh_pos / dh_neg)", list(self.actuate))
        self.estimator = KnobEffectEstimator(self.actuate, {k: 0.0 for k in self.actuate},
                                             {k: 1 for k in self.actuate}, forgetting=self.params.forgetting,
                                             warmup=self.params.warmup)
        self._clear()

    def eta(self, knob: str) -> float:
        est = self.estimator
        if est is None or est.n < self.params.warmup:
            return self.params.eta0
        return est.gain(knob)

    def act(self, obs: Observation) -> Knobs:
        est = self.estimator
        assert est is not None, "reset() first"
        dh = {k: obs.extras.get(DH_KEY[k], math.nan) for k in self.actuate}
        # the regressor of step t uses the knobs and statistics of step t-1: w_{t-1} dh_{t-1}
        applied = {k: getattr(obs.knobs, k) * self.last_dh.get(k, 0.0) for k in self.actuate}
        est.update(obs.step, obs.entropy, applied)
        self.last_dh = {k: (v if math.isfinite(v) else 0.0) for k, v in dh.items()}
        h = obs.entropy
        self.h_filt = h if self.h_filt is None else self.params.ema * self.h_filt + (1 - self.params.ema) * h
        prev = {k: getattr(obs.knobs, k) for k in self.actuate}
        if not all(math.isfinite(v) for v in dh.values()):
            return self.with_actuated(prev)  # no statistics this step: hold
        tau = obs.step / 100.0
        drift = (est.theta[1] + 2.0 * est.theta[2] * tau) / 100.0 if est.n >= self.params.warmup else 0.0
        v = {k: self.eta(k) * dh[k] for k in self.actuate}
        norm2 = sum(x * x for x in v.values())
        self.v_scale = 0.9 * self.v_scale + 0.1 * math.sqrt(norm2) if self.v_scale else math.sqrt(norm2)
        rho = (self.params.damping * self.v_scale) ** 2
        r = (obs.next_target - self.h_filt) - drift - sum(v[k] * prev[k] for k in self.actuate)
        out = {}
        for k in self.actuate:
            move = v[k] * r / (norm2 + rho) if norm2 + rho > 0 else 0.0
            out[k] = prev[k] + min(max(move, -self.params.max_move), self.params.max_move)
        return self.with_actuated(out)

    def metrics(self) -> dict[str, float]:
        """``control/gain_est/<knob>``: the calibrated step size eta_k of each actuated weight."""
        if self.estimator is None:
            return {}
        return {f"control/gain_est/{k}": self.eta(k) for k in self.actuate}

    def state_dict(self) -> dict[str, Any]:
        return {"h_filt": self.h_filt, "v_scale": self.v_scale, "last_dh": dict(self.last_dh),
                "estimator": None if self.estimator is None else self.estimator.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.h_filt = None if state["h_filt"] is None else float(state["h_filt"])
        self.v_scale = float(state["v_scale"])
        self.last_dh = {k: float(v) for k, v in state["last_dh"].items()}
        if self.estimator is not None and state.get("estimator") is not None:
            self.estimator.load_state_dict(state["estimator"])
