"""The keyword arguments of ``regulator/EntropySim-v0`` (the single and the vector env) and of
``regulator/EntropyTrain-v0``.

``gym.make(SIM_ID, horizon=100, plant={"lr": 0.02})``: every keyword is a field below; a mistake
is a ConfigError naming it (``plant.lrr: expected one of the allowed keys ... (did you mean
'lr'?)``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import PlainValidator, field_validator, model_validator

from envs.plant_config import PlantConfig, Regime
from regulator.errors import ConfigError
from regulator.knobs import (
    DEFAULT_ACTUATE,
    Actuate,
    BoundsField,
    KnobBounds,
    Knobs,
    KnobsField,
    check_initial_in_bounds,
)
from regulator.schema import Field, Schema
from regulator.targets import TargetField

#: the target of an env that names none
DEFAULT_TARGET: dict[str, Any] = {"kind": "constant", "value": 0.3}


class SimEnvArgs(Schema):
    """What one episode of the simulated plant runs: the target, the knobs the action moves and
    the plant."""

    target: TargetField = Field(default_factory=lambda: dict(DEFAULT_TARGET))
    """Entropy target curve: a target spec mapping (``regulator.make_target``) or a number (nats,
    constant)."""
    actuate: Actuate = DEFAULT_ACTUATE
    """Knob name(s) the action moves, one action dimension each (at least one)."""
    bounds: BoundsField = Field(default_factory=KnobBounds)
    """Knob ranges ``{knob: [lo, hi], max_delta: ...}``; the action [-1, 1] maps linearly onto
    an actuated knob's range, which must therefore be finite."""
    initial: KnobsField = Field(default_factory=Knobs)
    """Knobs at the start of an episode, and throughout for the knobs not actuated."""
    horizon: int = Field(300, ge=1)
    """Steps per episode (it is truncated after them)."""
    observation: Literal["absolute", "relative"] = "absolute"
    """``absolute``: entropy-valued observation fields in nats; ``relative``: in units of the
    episode's first entropy, so a policy carries over between entropy scales (``envs.spaces``)."""
    plant: PlantConfig = Field(default_factory=PlantConfig)
    """The simulated plant: PlantConfig fields (``regime``, ``lr``, ``mini_batches`` ...) or a
    PlantConfig."""
    regime: Regime | None = None
    """Shortcut for ``plant={"regime": ...}``, merged into ``plant``."""

    @model_validator(mode="before")
    @classmethod
    def _regime_into_plant(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("regime") is None:
            return data
        plant = data.get("plant")
        if plant is None or isinstance(plant, Mapping):
            plant = {**(plant or {}), "regime": data["regime"]}
        elif isinstance(plant, PlantConfig):
            plant = {**plant.resolved(), "regime": data["regime"]}
        return {**data, "plant": plant}

    @model_validator(mode="after")
    def _knobs(self) -> SimEnvArgs:
        if not self.actuate:
            raise ConfigError("actuate", "at least one knob name", list(self.actuate))
        for k in self.actuate:
            if not all(math.isfinite(x) for x in self.bounds.range(k)):
                raise ConfigError(f"bounds.{k}", "a finite [min, max] range for an actuated knob",
                                  list(self.bounds.range(k)))
        check_initial_in_bounds(self.initial, self.bounds, self.actuate)
        return self


def _config_source(v: Any) -> str | dict[str, Any] | None:
    if v is None or isinstance(v, Mapping):
        return None if v is None else dict(v)
    if isinstance(v, (str, os.PathLike)) and str(v):
        return os.fspath(v)
    raise ConfigError("", "a training config: the path of a YAML file or a mapping", v)


def _overrides(v: Any) -> list[str]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, (list, tuple)):
        raise ConfigError("", "a 'key.path=value' string or a list of them", v)
    for i, item in enumerate(items):
        if not (isinstance(item, str) and "=" in item.lstrip("=")):
            raise ConfigError("" if isinstance(v, str) else f"[{i}]", "a 'key.path=value' string", item)
    return list(items)


class TrainEnvArgs(Schema):
    """What one episode of the real trainer runs: a training config, and the knob settings that
    differ from it. A setting left out (None) is the training config's own (``control.target``,
    ``control.bounds``, ``control.initial``, ``train.steps``); ``actuate`` is the exception, [w_pos]
    unless given, as in EntropySim-v0 (the action's size does not follow the config)."""

    config: Annotated[str | dict[str, Any] | None, PlainValidator(_config_source)] = None
    """The training config (``regulator train``'s): a YAML path or a mapping; None:
    ``configs/default.yaml`` of the checkout."""
    overrides: Annotated[list[str], PlainValidator(_overrides)] = Field(default_factory=list)
    """``key.path=value`` settings applied to the config, as ``--set`` (one string or a list)."""
    target: TargetField = None
    """Entropy target curve (a target spec mapping or a number); None: the config's."""
    actuate: Actuate = DEFAULT_ACTUATE
    """Knob name(s) the action moves, one action dimension each (at least one); not the config's
    ``control.actuate``."""
    bounds: BoundsField | None = None
    """Knob ranges; None: the config's ``control.bounds``."""
    initial: KnobsField | None = None
    """Knobs at the start of an episode; None: the config's ``control.initial``."""
    horizon: int | None = Field(None, ge=1)
    """Steps per episode; None: the config's ``train.steps``."""
    observation: Literal["absolute", "relative"] = "absolute"
    """``absolute`` (nats) or ``relative`` (units of the episode's first entropy)."""

    @field_validator("actuate")
    @classmethod
    def _some_knob(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ConfigError("", "at least one knob name", list(v))
        return v
