"""The ``regulator bench`` config: a grid of controllers x targets x regimes x seeds on a plant.

```yaml
out_dir: bench_out
plant: sim                         # sim | trainer
horizon: 300
seeds: 5                           # n (seeds 0..n-1) or a list
regimes: [pretrained]              # sim: plant regimes
plant_params: {lr: 0.02}           # sim: PlantConfig fields
trainer_config: configs/default.yaml   # trainer: a training config, or a mapping name -> config
control:                           # defaults of every controller entry
  actuate: [w_pos]
  initial: {w_pos: 1.0}
  bounds: {w_pos: [0.0, 1.0]}
targets:                           # name -> target spec, or regime -> {name -> spec}
  constant: {kind: constant, value: 0.3}
controllers:
  - {label: grpo, controller: static, params: {preset: grpo}}
```
Every field is documented on ``BenchConfig`` and ``ControllerEntry``; every mistake is a
ConfigError naming the key (the CLI exits 2). ``BenchConfig.resolved()`` is the config with every
default filled in (``OUT/bench_config.yaml``), and parses back to the same config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import PlainValidator, PrivateAttr, field_validator, model_validator

from envs.config_types import BenchSeeds, BoundValues, KnobValues, MaybeActuate, check_out_dir
from envs.plant_config import REGIMES, PlantConfig
from regulator.config import DEFAULT_CONTROLLER, controller_defaults
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import (
    DEFAULT_ACTUATE,
    Actuate,
    BoundsField,
    KnobBounds,
    Knobs,
    KnobsField,
    check_initial_in_bounds,
)
from regulator.registry import get_controller_class, make_controller
from regulator.safety import Regulator
from regulator.schema import Field, Schema, parse
from regulator.targets import make_target

#: labels and target names become folder names under out_dir
PLAIN_NAME = "a folder name of letters, digits and _ . + - (not '.' or '..')"
_NAME = re.compile(r"[A-Za-z0-9_+.-]+")


def _plain_name(v: Any) -> bool:
    return isinstance(v, str) and bool(_NAME.fullmatch(v)) and v not in (".", "..")


def default_label(controller: str) -> str:
    """A controller entry's label when it names none: its controller as a folder name (the class
    of ``package.module:Class``; any other unsafe character becomes ``_``)."""
    label = re.sub(r"[^A-Za-z0-9_+.-]", "_", controller.rsplit(":", 1)[-1])
    return label if _plain_name(label) else "controller"


# --- field types ----------------------------------------------------------------------------------
def _regimes(v: Any) -> list[str] | None:
    if v is None:
        return None
    v = [v] if isinstance(v, str) else v
    if not (isinstance(v, list) and v and all(isinstance(r, str) for r in v)):
        raise ConfigError("", "a non-empty list of plant regimes", v)
    return list(v)


def _trainer_config(v: Any) -> str | dict[str, str] | None:
    if v is None or (isinstance(v, str) and v):
        return v
    if isinstance(v, Mapping) and v:
        for name, path in v.items():
            if not (isinstance(name, str) and name and "/" not in name and name != ".."
                    and isinstance(path, str) and path):
                raise ConfigError("", "a mapping name -> config path (names without '/')",
                                  {name: path})
        return dict(v)
    raise ConfigError("", "the path of a training config or a mapping name -> config path", v)


#: a plant regime or a list of them
Regimes = Annotated[list[str] | None, PlainValidator(_regimes)]
#: a training config path, or a mapping name -> path (each name a grid regime)
TrainerConfig = Annotated[str | dict[str, str] | None, PlainValidator(_trainer_config)]


class ControlDefaults(Schema):
    """``control:``: settings every controller entry starts from; an entry's own keys win."""

    actuate: MaybeActuate = None
    """Knobs every entry moves unless it says otherwise; null = each controller's own default
    (``DEFAULT_ACTUATE`` on its class, else w_pos)."""
    initial: KnobValues = Field(default_factory=dict)
    """Start values of some knobs (the others: ``Knobs`` defaults)."""
    bounds: BoundValues = Field(default_factory=dict)
    """[min, max] of some knobs and ``max_delta``, over the controller's ``DEFAULT_BOUNDS``."""


class ControllerEntry(Schema):
    """One controller of the grid, with the knob settings it runs under (``control:`` merged in)."""

    label: str = ""
    """Its name in the leaderboard and run folders; default: the controller name (the class name
    of ``package.module:Class``)."""
    controller: str = DEFAULT_CONTROLLER
    """A registered controller name, an entry point or ``package.module:Class``."""
    params: dict[str, Any] = Field(default_factory=dict)
    """The controller's parameters (checked by the controller)."""
    actuate: Actuate = DEFAULT_ACTUATE
    """Knobs it moves; default: ``control.actuate``, else the controller's own default."""
    initial: KnobsField = Field(default_factory=Knobs)
    """Knobs at the start; default: ``control.initial`` over the ``Knobs`` defaults."""
    bounds: BoundsField = Field(default_factory=KnobBounds)
    """Knob ranges; default: ``control.bounds`` over the controller's ``DEFAULT_BOUNDS``."""

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if isinstance(data, str):
            data = {"controller": data}
        if not isinstance(data, Mapping):
            return data
        data = {k: v for k, v in data.items() if not (k in ("params", "initial", "bounds") and v is None)}
        name = data.setdefault("controller", DEFAULT_CONTROLLER)
        own_actuate, own_bounds = controller_defaults(get_controller_class(name, key="controller"))
        data.setdefault("label", default_label(name))
        data.setdefault("actuate", own_actuate)
        if own_bounds and isinstance(data.get("bounds", {}), Mapping):
            data["bounds"] = {**own_bounds, **data.get("bounds", {})}
        return data

    @field_validator("label")
    @classmethod
    def _label(cls, v: str) -> str:
        if not _plain_name(v):
            raise ConfigError("", PLAIN_NAME, v)
        return v

    @model_validator(mode="after")
    def _starts_in_bounds(self) -> ControllerEntry:
        check_initial_in_bounds(self.initial, self.bounds, self.actuate)
        return self

    def regulator(self, target: Mapping[str, Any], total_steps: int) -> Regulator:
        return Regulator(make_controller(self.controller, **self.params), make_target(dict(target)),
                         initial=self.initial, bounds=self.bounds, actuate=self.actuate,
                         total_steps=total_steps)

    def as_dict(self) -> dict[str, Any]:
        return self.resolved()


def _merge_control(data: Any) -> Any:
    """Each raw controller entry with the ``control:`` defaults under its own keys."""
    if not isinstance(data, Mapping):
        return data
    data = dict(data)
    for k in ("control", "plant_params"):
        if k in data and data[k] is None:
            del data[k]
    control, entries = data.get("control", {}), data.get("controllers")
    if not (isinstance(control, Mapping) and isinstance(entries, list)):
        return data
    merged = []
    for e in entries:
        e = {"controller": e} if isinstance(e, str) else e
        if isinstance(e, Mapping):
            e = dict(e)
            if control.get("actuate") is not None:
                e.setdefault("actuate", control["actuate"])
            for k in ("initial", "bounds"):
                base, own = control.get(k) or {}, e.get(k) or {}
                if isinstance(base, Mapping) and isinstance(own, Mapping) and (base or own):
                    e[k] = {**base, **own}
        merged.append(e)
    data["controllers"] = merged
    return data


class BenchConfig(Schema):
    """``regulator bench CONFIG``: which plant, which grid, how runs are scored, where results go."""

    out_dir: str = Field(min_length=1)
    """Output folder: leaderboards, figures, ``bench_config.yaml`` and every run's metrics."""
    plant: Literal["sim", "trainer"] = "sim"
    """``sim``: the simulated plant (``envs.plant``); ``trainer``: real ``regulator train`` runs."""
    horizon: int = Field(300, ge=2)
    """Steps per run."""
    seeds: BenchSeeds = Field(default_factory=lambda: list(range(5)))
    """A number of seeds n (seeds 0..n-1) or a list of distinct seeds >= 0; one run per seed."""
    regimes: Regimes = None
    """Grid axis of plants. sim: plant regimes (default [pretrained]); trainer: names of the
    ``trainer_config`` mapping (default: all of them; with one config path: [trainer])."""
    plant_params: dict[str, Any] = Field(default_factory=dict)
    """sim: PlantConfig fields shared by every regime (the regime itself goes in ``regimes``)."""
    trainer_config: TrainerConfig = None
    """trainer: the base training config path, or a mapping regime name -> config path."""
    burn_in: int | None = Field(None, ge=0)
    """Steps left out of RMSE and MAE (the controllers' start-up), fewer than ``horizon``;
    default: min(50, horizon // 6)."""
    ema_alpha: float = Field(0.6, ge=0.0, le=0.999)
    """EMA weight of the past for ``rmse_ema`` and settling (smooths the step-to-step noise)."""
    workers: int = Field(2, ge=1)
    """Worker processes (1 = in-process)."""
    band: bool = True
    """Measure the reachable band (open-loop runs at the corners of the knob box, plus climbs
    from lower levels on the simulated plant) and score each run against the feasible
    reference: its target projected into the band, moving no faster than the plant did
    (``envs.band``, ``regulator.tracking.feasible_tracking``)."""
    control: ControlDefaults = Field(default_factory=ControlDefaults)
    """Defaults of every controller entry."""
    targets: dict[str, Any]
    """Target name -> target spec (``regulator.make_target``; a number is a constant), or
    regime -> {name -> spec} for targets per regime. Names become folder names."""
    controllers: list[ControllerEntry]
    """The controllers of the grid (a name or a mapping each); labels must be distinct."""

    _specs: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _names: dict[str, list[str]] = PrivateAttr(default_factory=dict)
    _resume: bool = PrivateAttr(False)

    @model_validator(mode="before")
    @classmethod
    def _control_under_entries(cls, data: Any) -> Any:
        return _merge_control(data)

    @field_validator("out_dir")
    @classmethod
    def _out_dir(cls, v: str) -> str:
        return check_out_dir(v)

    @field_validator("plant_params")
    @classmethod
    def _plant_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        if "regime" in v:
            raise ConfigError("", "a mapping of plant fields (the regime goes in `regimes`)", v)
        return v

    @field_validator("targets")
    @classmethod
    def _some_targets(cls, v: dict[str, Any]) -> dict[str, Any]:
        if not v:
            raise ConfigError("", "a non-empty mapping name -> target spec", v)
        return v

    @field_validator("controllers")
    @classmethod
    def _some_controllers(cls, v: list[ControllerEntry]) -> list[ControllerEntry]:
        if not v:
            raise ConfigError("", "a non-empty list of controller entries", v)
        labels = [e.label for e in v]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ConfigError("", "distinct labels (set `label` on repeated controllers)", dup[0])
        return v

    @model_validator(mode="after")
    def _grid(self) -> BenchConfig:
        if self.burn_in is None:
            self.burn_in = min(50, self.horizon // 6)
        if self.burn_in >= self.horizon:
            raise ConfigError("burn_in", f"fewer steps than horizon ({self.horizon})", self.burn_in,
                              hint="the steps left out of RMSE and MAE")
        self._check_plant()
        self._check_targets()
        for i, e in enumerate(self.controllers):
            try:  # build once now, so bad params fail before any run starts
                e.regulator({"kind": "constant", "value": 0.3}, self.horizon)
            except ConfigError as err:
                k = err.key.replace("control.params", f"controllers[{i}].params")
                raise err.with_key(k.replace("control.", f"controllers[{i}].")) from None
        return self

    def _check_plant(self) -> None:
        """Fill in ``regimes`` and check it against the plant: sim regimes, or the names of a
        ``trainer_config`` mapping (``[trainer]`` for one config path)."""
        if self.plant == "sim":
            if self.trainer_config is not None:
                raise ConfigError("trainer_config", "no value with plant: sim (set plant_params "
                                  "instead, or plant: trainer)", self.trainer_config)
            self.regimes = self.regimes or ["pretrained"]
            for i, r in enumerate(self.regimes):
                if r not in REGIMES:
                    raise unknown_name_error(f"regimes[{i}]", r, REGIMES, "plant regimes")
                self.plant_config(r)
        else:
            self._check_trainer_regimes()

    def _check_trainer_regimes(self) -> None:
        if self.plant_params:
            raise ConfigError("plant_params", "no value with plant: trainer (set the trainer_config "
                              "instead)", self.plant_params)
        tc = self.trainer_config
        if tc is None:
            raise ConfigError("trainer_config", "the path of a training config (plant: trainer)", tc)
        if isinstance(tc, str):
            if self.regimes not in (None, ["trainer"]):
                raise ConfigError("regimes", "no value (or [trainer]) with plant: trainer and one "
                                  "trainer_config path (a mapping trainer_config names the regimes)",
                                  self.regimes)
            self.regimes = ["trainer"]
            return
        self.regimes = self.regimes or list(tc)
        for i, r in enumerate(self.regimes):
            if r not in tc:
                raise unknown_name_error(f"regimes[{i}]", r, list(tc), "trainer_config names")

    def _check_targets(self) -> None:
        """Target specs by name, and per regime the names it runs (all of them unless the mapping
        is keyed by regime: ``{pretrained: {name: spec}, scratch: {...}}``)."""
        regimes = self.regimes or []
        per_regime = all(k in regimes and isinstance(v, Mapping) and "kind" not in v
                         for k, v in self.targets.items())
        groups = dict(self.targets) if per_regime else {None: self.targets}
        for r in regimes if per_regime else []:
            if r not in groups:  # it would run no target, or another regime's
                raise ConfigError(f"targets.{r}", "a mapping name -> target spec for every listed "
                                  f"regime (targets are given per regime: {', '.join(groups)})")
        specs: dict[str, dict[str, Any]] = {}
        names: dict[str, list[str]] = {}
        normal: dict[Any, dict[str, Any]] = {}
        for regime, group in groups.items():
            key = "targets" if regime is None else f"targets.{regime}"
            if not isinstance(group, Mapping) or not group:
                raise ConfigError(key, "a non-empty mapping name -> target spec", group)
            for name, spec in group.items():
                if not _plain_name(name):
                    raise ConfigError(key, f"target names that are {PLAIN_NAME}", name)
                make_target(spec, key=f"{key}.{name}")
                spec = dict(spec) if isinstance(spec, Mapping) else {"kind": "constant", "value": spec}
                if name in specs and specs[name] != spec:
                    raise ConfigError(f"{key}.{name}", "one spec per target name across regimes", spec)
                specs[name] = spec
                normal.setdefault(regime, {})[name] = spec
                if regime is not None:
                    names.setdefault(regime, []).append(name)
        self.targets = normal if per_regime else normal[None]
        self._specs, self._names = specs, names

    # --- the grid ---------------------------------------------------------------------------------
    @property
    def resume(self) -> bool:
        """``regulator bench --resume``: finished trainer runs in out_dir are read back."""
        return self._resume

    @resume.setter
    def resume(self, on: bool) -> None:
        self._resume = on

    @property
    def target_specs(self) -> dict[str, dict[str, Any]]:
        """Every target name -> its spec (a mapping), over all regimes."""
        return self._specs

    def targets_of(self, regime: str) -> list[str]:
        """The target names a regime runs."""
        return self._names.get(regime, list(self._specs))

    def plant_config(self, regime: str) -> PlantConfig:
        return PlantConfig.from_mapping({**self.plant_params, "regime": regime}, key="plant_params")

    def trainer_config_of(self, regime: str) -> str | None:
        """The training config of a trainer-plant regime."""
        tc = self.trainer_config
        return tc.get(regime) if isinstance(tc, dict) else tc

    @property
    def runs(self) -> list[tuple[str, str, int, int]]:
        """Every (regime, target name, controller index, seed) of the grid."""
        return [(r, t, i, s) for r in self.regimes or [] for t in self.targets_of(r)
                for i in range(len(self.controllers)) for s in self.seeds]


def parse_bench_config(cfg: Any) -> BenchConfig:
    """Validate a bench config mapping; every error names its key."""
    return parse(BenchConfig, cfg, "")
