"""The Regulator: the safety layer between a controller and the trainer.

It builds each step's Observation, calls the controller, and never lets a bad output through:
non-finite values or a raising controller hold the last knobs, values are clamped to bounds and
rate limits. Every intervention is counted so the trainer can log it (``control/faults``,
``control/clamped``). A controller that brakes every actuated weight to its lower bound stops
learning; that is reported, never silent: ``control/frozen`` is 1 on such steps and an event
says when it starts (the lower bounds of the weights are the user's floor on learning).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from regulator.controller import Controller
from regulator.knobs import (
    DEFAULT_ACTUATE,
    KNOB_NAMES,
    KnobBounds,
    Knobs,
    check_actuate,
    check_initial_in_bounds,
)
from regulator.observation import Observation
from regulator.targets import TargetCurve, make_target

log = logging.getLogger(__name__)

#: steps off the floor after which a new freeze is reported again (one event per episode)
FROZEN_QUIET_STEPS = 20

#: consecutive faults after which the Regulator stops the run (``control.max_consecutive_faults``)
MAX_CONSECUTIVE_FAULTS = 10


class ControllerFailure(RuntimeError):
    """The controller faulted on every one of the last ``max_consecutive_faults`` steps: the run
    would be plain training with held knobs, so it stops instead of passing silently."""

_OBS_FIELDS = {f.name for f in fields(Observation)} - {
    "step", "total_steps", "entropy", "target", "next_target", "preview", "knobs", "extras"
}


class Regulator:
    """Wraps a controller with a target curve, bounds and rate limits.

    ``step(step, entropy, **metrics)`` returns the knobs to apply at ``step``. Metrics named like
    Observation fields (``accuracy``, ``reward_mean``, ``clip_frac_high`` ...) fill those fields;
    any other numeric metric goes to ``Observation.extras``. ``last_event`` says what the
    Regulator did at the last step (a fault, a clamp, a freeze) as one message starting with
    ``step N:``, or is empty.
    """

    def __init__(
        self,
        controller: Controller,
        target: TargetCurve | Mapping[str, Any] | float,
        *,
        initial: Knobs | Mapping[str, float] | None = None,
        bounds: KnobBounds | Mapping[str, Any] | None = None,
        actuate: tuple[str, ...] | list[str] | str = DEFAULT_ACTUATE,
        total_steps: int,
        max_consecutive_faults: int = MAX_CONSECUTIVE_FAULTS,
    ) -> None:
        if not isinstance(controller, Controller):
            raise TypeError(f"Regulator needs a regulator.Controller, got {type(controller).__name__}")
        self.controller = controller
        self.target = target if isinstance(target, TargetCurve) else make_target(target)
        self.initial = initial if isinstance(initial, Knobs) else Knobs.from_mapping(initial)
        self.bounds = bounds if isinstance(bounds, KnobBounds) else KnobBounds.from_mapping(bounds)
        self.actuate = check_actuate(actuate)
        self.total_steps = int(total_steps)
        # Actuated knobs start inside their bounds, or the first clamp would jump; the others
        # stay exactly as given (e.g. eps_high = inf for a clip-free run).
        check_initial_in_bounds(self.initial, self.bounds, self.actuate)
        self.knobs = self.initial
        self.faults = 0
        self.consecutive_faults = 0
        self.max_consecutive_faults = int(max_consecutive_faults)  # 0: never stop
        self.clamped = 0
        self.frozen = False
        self.frozen_steps = 0
        self.frozen_last_step = -(10**9)
        self.last_event = ""
        self.last_observation: Observation | None = None
        self.controller.reset(self.initial, self.bounds, self.actuate)

    @property
    def controller_name(self) -> str:
        return self.controller.name or type(self.controller).__name__

    def target_at(self, step: int) -> float:
        return self.target(step, self.total_steps)

    def _observe(self, step: int, entropy: float, metrics: Mapping[str, Any]) -> Observation:
        known: dict[str, float] = {}
        extras: dict[str, float] = {}
        for k, v in metrics.items():
            if v is None:
                continue
            try:
                v = float(v)
            except (TypeError, ValueError):
                continue
            (known if k in _OBS_FIELDS else extras)[k] = v
        last = self.total_steps - 1
        ahead = max(int(self.controller.preview_steps), 0)
        preview = tuple(self.target_at(min(step + k, last)) for k in range(1, ahead + 1))
        return Observation(
            step=step, total_steps=self.total_steps, entropy=float(entropy),
            target=self.target_at(step), next_target=self.target_at(min(step + 1, last)),
            preview=preview,
            knobs=self.knobs, extras=extras, **known,
        )

    def step(self, step: int, entropy: float, **metrics: Any) -> Knobs:
        """Observe this step's entropy, ask the controller, return safe knobs for this step."""
        self.last_event = ""
        if self.target.needs_calibration and math.isfinite(entropy):
            self.target.calibrate(entropy)
        if not math.isfinite(entropy) or self.target.needs_calibration:
            return self._fault(step, f"non-finite entropy {entropy}: knobs held")
        obs = self._observe(step, entropy, metrics)
        self.last_observation = obs
        try:
            out = self.controller.act(obs)
        except Exception as e:  # contain any controller failure
            return self._fault(
                step, f"controller {self.controller_name!r} raised {type(e).__name__}: {e}: knobs held"
            )
        if not isinstance(out, Knobs):
            return self._fault(
                step, f"controller {self.controller_name!r} returned {type(out).__name__}, not Knobs: "
                "knobs held"
            )
        values = [getattr(out, k) for k in KNOB_NAMES]
        if not all(math.isfinite(v) or (k == "eps_high" and v == math.inf)
                   for k, v in zip(KNOB_NAMES, values)):
            return self._fault(step, f"controller {self.controller_name!r} returned {out}: knobs held")
        self.consecutive_faults = 0
        # Knobs the controller may not move stay where they were set.
        out = out.replace(**{k: getattr(self.initial, k) for k in KNOB_NAMES if k not in self.actuate})
        safe = self.bounds.clamp(out, previous=self.knobs, only=self.actuate)
        if safe != out:
            self.clamped += 1
            self.last_event = f"step {step}: clamped {out} -> {safe}"
        self.knobs = safe
        self._check_frozen(step)
        return safe

    def _check_frozen(self, step: int) -> None:
        """Is every actuated weight at its lower bound (no learning at all)? Say so when it starts."""
        weights = [k for k in ("w_pos", "w_neg") if k in self.actuate]
        at_floor = bool(weights) and all(getattr(self.knobs, k) <= self.bounds.range(k)[0] for k in weights)
        # a dither that dips in and out of the floor is one freeze, not one event per dip
        quiet = step - self.frozen_last_step > FROZEN_QUIET_STEPS
        if at_floor and not self.frozen and quiet:
            floors = ", ".join(f"{k}={self.bounds.range(k)[0]:g}" for k in weights)
            note = (f"controller {self.controller_name!r} holds every weight at its lower "
                    f"bound ({floors}): the policy is not learning; raise control.bounds.<weight>[0] "
                    "to set a floor on learning")
            self.last_event = f"{self.last_event}; {note}" if self.last_event else f"step {step}: {note}"
            log.warning("step %d: %s", step, note)
        self.frozen = at_floor
        self.frozen_steps += int(at_floor)
        if at_floor:
            self.frozen_last_step = step

    def _fault(self, step: int, message: str) -> Knobs:
        message = f"step {step}: {message}"
        self.faults += 1
        self.consecutive_faults += 1
        self.last_event = message
        log.warning(message)
        if 0 < self.max_consecutive_faults <= self.consecutive_faults:
            raise ControllerFailure(
                f"{self.consecutive_faults} consecutive control faults, the last: {message} "
                "(control.max_consecutive_faults; 0 never stops)")
        return self.knobs

    def metrics(self) -> dict[str, float]:
        """For logging: ``control/faults``, ``control/clamped`` and the controller's own
        ``metrics()`` (a controller whose metrics raise is reported, not fatal)."""
        out = {"control/faults": float(self.faults), "control/clamped": float(self.clamped),
               "control/frozen": float(self.frozen), "control/frozen_steps": float(self.frozen_steps)}
        try:
            extra = self.controller.metrics()
        except Exception as e:  # a logging hook must never stop a run
            log.warning("controller %r metrics() raised %s: %s", self.controller_name,
                        type(e).__name__, e)
            return out
        for k, v in (extra or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.setdefault(str(k), float(v))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "knobs": self.knobs.as_dict(),
            "faults": self.faults,
            "consecutive_faults": self.consecutive_faults,
            "clamped": self.clamped,
            "frozen": self.frozen,
            "frozen_steps": self.frozen_steps,
            "frozen_last_step": self.frozen_last_step,
            "target": self.target.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.controller.load_state_dict(dict(state["controller"]))
        self.knobs = Knobs(**state["knobs"])
        self.faults = int(state.get("faults", 0))
        self.consecutive_faults = int(state.get("consecutive_faults", 0))
        self.clamped = int(state.get("clamped", 0))
        self.frozen = bool(state.get("frozen", False))
        self.frozen_steps = int(state.get("frozen_steps", 0))
        self.frozen_last_step = int(state.get("frozen_last_step", -(10**9)))
        self.target.load_state_dict(state.get("target", {}))
