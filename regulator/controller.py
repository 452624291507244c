"""The controller interface every built-in and plugin controller implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from regulator.errors import unknown_name_error
from regulator.knobs import DEFAULT_ACTUATE, KNOB_NAMES, KnobBounds, Knobs
from regulator.observation import Observation
from regulator.schema import Schema, parse


class Controller(ABC):
    """Maps an Observation to the Knobs for the next step.

    Lifecycle: ``reset(initial, bounds, actuate)`` once before a run, then ``act(obs)`` every
    step. A controller moves only the knobs named in ``actuate`` and leaves the others at
    ``initial``. ``state_dict`` must be JSON-serialisable so that runs resume exactly.

    Subclasses get ``self.initial``, ``self.bounds`` and ``self.actuate`` from the base
    ``reset``; call ``super().reset(...)`` when overriding it.

    Parameters: a subclass declares them as a ``Params`` model (a ``regulator.schema.Schema``,
    one docstring per field); the base ``__init__`` validates its keyword arguments against it
    into ``self.params``, and ``make_controller`` reports a mistake as ``control.params.<key>``.
    A controller without ``Params`` takes whatever its own ``__init__`` accepts.
    """

    #: the registry name (built-ins set it; ``@register_controller`` sets it for the others)
    name: ClassVar[str] = ""
    #: the parameter model, or None when the constructor's signature is the parameter list
    Params: ClassVar[type[Schema] | None] = None
    #: False when the knobs never depend on the target or the measurements (fixed knobs,
    #: schedules): ``regulator bench`` then trains one run per plant and seed for all targets
    uses_target: ClassVar[bool] = True
    #: how many future targets ``Observation.preview`` should hold (a target curve is known in
    #: advance, so a controller may act before it changes: preview control)
    preview_steps: int = 0

    params: Schema
    initial: Knobs
    bounds: KnobBounds
    actuate: tuple[str, ...]

    def __init__(self, **params: Any) -> None:
        """Validate ``params`` against ``Params`` into ``self.params`` (a ConfigError keyed by
        the parameter's name otherwise)."""
        if self.Params is not None:
            self.params = parse(self.Params, params, "")
        elif params:
            raise TypeError(f"{type(self).__name__} takes no parameters, got {sorted(params)}")

    def reset(
        self,
        initial: Knobs,
        bounds: KnobBounds,
        actuate: tuple[str, ...] = DEFAULT_ACTUATE,
    ) -> None:
        """Start a new run from `initial` knobs, inside `bounds`, moving only `actuate`."""
        unknown = [k for k in actuate if k not in KNOB_NAMES]
        if unknown:
            raise unknown_name_error("actuate", unknown[0], KNOB_NAMES, "knob names")
        self.initial = initial
        self.bounds = bounds
        self.actuate = tuple(actuate)

    @abstractmethod
    def act(self, obs: Observation) -> Knobs:
        """The knobs to apply at step ``obs.step``."""

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable internal state (default: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Restore what ``state_dict`` returned."""

    def metrics(self) -> dict[str, float]:
        """Numbers worth logging each step, e.g. ``control/gain_est/<knob>`` (default: none).

        The Regulator merges them into its own metrics, so the trainer and the bench log them.
        """
        return {}

    def with_actuated(self, values: dict[str, float]) -> Knobs:
        """``initial`` with the actuated knobs set to ``values`` clamped into their bounds.

        Knobs not in ``actuate`` stay at ``initial``; NaN stays NaN (the Regulator holds).
        """
        changes = {}
        for k, v in values.items():
            if k in self.actuate:
                lo, hi = self.bounds.range(k)
                changes[k] = min(max(float(v), lo), hi)
        return self.initial.replace(**changes)
