"""The ``regulator bench`` config: a grid of controllers x targets x regimes x seeds on a plant.

```yaml
out_dir: bench_out                 # OUT
plant: sim                         # sim (simulated plant) | trainer (the real trainer)
horizon: 300                       # steps per run
seeds: 5                           # n (seeds 0..n-1) or a list
regimes: [pretrained]              # sim only: plant regimes (a grid axis; trainer runs show
                                   # the regime `trainer`)
plant_params: {lr: 0.02}           # sim only: PlantConfig fields
trainer_config: configs/default.yaml   # trainer only: the base training config, or a mapping
                                   # name -> config (each name is a grid regime)
burn_in: 50                        # steps left out of RMSE / MAE
ema_alpha: 0.6                     # EMA weight of the past for rmse_ema and settling
workers: 2                         # worker processes (1 = in-process)
band: true                         # measure the reachable band and score against it (envs.band)
control:                           # defaults for every controller entry
  actuate: [w_pos]
  initial: {w_pos: 1.0}
  bounds: {w_pos: [0.0, 1.0]}
targets:                           # name -> target spec (regulator.make_target), or
  constant: {kind: constant, value: 0.3}   # regime -> {name -> spec} for per-regime targets
controllers:                       # each: label (default: controller name), controller
                                   # (default: the product's default, ``auto``),
  - {label: grpo, controller: static, params: {preset: grpo}}   # params, and optionally
                                   # actuate / initial / bounds overriding `control`
```
Every mistake is a ConfigError naming the key (the CLI exits 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from envs.plant_config import REGIMES, PlantConfig
from regulator.config import DEFAULT_CONTROLLER, check_keys, controller_defaults, get_typed
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs, check_initial_in_bounds
from regulator.registry import get_controller_class, make_controller
from regulator.safety import Regulator
from regulator.targets import make_target

PLANTS = ("sim", "trainer")
TOP_KEYS = ("out_dir", "plant", "horizon", "seeds", "regimes", "plant_params", "trainer_config",
            "burn_in", "ema_alpha", "workers", "band", "control", "targets", "controllers")
ENTRY_KEYS = ("label", "controller", "params", "actuate", "initial", "bounds")


@dataclass(frozen=True)
class ControllerEntry:
    """One controller of the grid, with the knob settings it runs under."""

    label: str
    controller: str
    params: dict[str, Any]
    actuate: tuple[str, ...]
    initial: Knobs
    bounds: KnobBounds

    def regulator(self, target: Mapping[str, Any], total_steps: int) -> Regulator:
        return Regulator(make_controller(self.controller, **self.params), make_target(dict(target)),
                         initial=self.initial, bounds=self.bounds, actuate=self.actuate,
                         total_steps=total_steps)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "controller": self.controller, "params": self.params,
                "actuate": list(self.actuate), "initial": self.initial.as_dict(),
                "bounds": {k: list(self.bounds.range(k)) for k in KNOB_NAMES}}


@dataclass
class BenchConfig:
    out_dir: str
    plant: str = "sim"
    horizon: int = 300
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    regimes: list[str] = field(default_factory=lambda: ["pretrained"])
    plant_params: dict[str, Any] = field(default_factory=dict)
    trainer_config: str | None = None
    trainer_configs: dict[str, str] = field(default_factory=dict)  # regime name -> config path
    burn_in: int = 50
    ema_alpha: float = 0.6
    workers: int = 2
    band: bool = True
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    regime_targets: dict[str, list[str]] = field(default_factory=dict)  # regime -> its target names
    controllers: list[ControllerEntry] = field(default_factory=list)
    resume: bool = False  # `regulator bench --resume`: reuse the finished trainer runs in out_dir

    def plant_config(self, regime: str) -> PlantConfig:
        return PlantConfig.from_mapping({**self.plant_params, "regime": regime}, key="plant_params")

    @property
    def runs(self) -> list[tuple[str, str, int, int]]:
        """Every (regime, target name, controller index, seed) of the grid."""
        return [(r, t, i, s) for r in self.regimes for t in self.targets_of(r)
                for i in range(len(self.controllers)) for s in self.seeds]

    def trainer_config_of(self, regime: str) -> str | None:
        """The training config of a trainer-plant regime."""
        return self.trainer_configs.get(regime, self.trainer_config)

    def targets_of(self, regime: str) -> list[str]:
        return self.regime_targets.get(regime, list(self.targets))


def _nonempty_list(v: Any, key: str, what: str) -> list[Any]:
    if not isinstance(v, list) or not v:
        raise ConfigError(key, f"a non-empty list of {what}", v)
    return v


def _entry(raw: Any, i: int, defaults: Mapping[str, Any], horizon: int) -> ControllerEntry:
    key = f"controllers[{i}]"
    if isinstance(raw, str):
        raw = {"controller": raw}
    s = check_keys(raw, ENTRY_KEYS, key)
    name = s.get("controller", DEFAULT_CONTROLLER)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{key}.controller", "a controller name or 'module:Class'", name)
    params = s.get("params") or {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{key}.params", "a mapping of controller parameters", params)
    own_actuate, own_bounds = controller_defaults(get_controller_class(name, key=f"{key}.controller"))
    actuate = s.get("actuate", defaults.get("actuate", own_actuate))
    if isinstance(actuate, str):
        actuate = [actuate]
    if not isinstance(actuate, list):
        raise ConfigError(f"{key}.actuate", "a list of knob names", actuate)
    for j, k in enumerate(actuate):
        if k not in KNOB_NAMES:
            raise unknown_name_error(f"{key}.actuate[{j}]", k, KNOB_NAMES, "knob names")
    initial = {**(defaults.get("initial") or {}), **(s.get("initial") or {})}
    bounds = {**own_bounds, **(defaults.get("bounds") or {}), **(s.get("bounds") or {})}
    label = s.get("label", name)
    if not _plain_name(label):
        raise ConfigError(f"{key}.label", PLAIN_NAME, label)
    entry = ControllerEntry(label, name, dict(params), tuple(actuate),
                            Knobs.from_mapping(initial, key=f"{key}.initial"),
                            KnobBounds.from_mapping(bounds, key=f"{key}.bounds"))
    check_initial_in_bounds(entry.initial, entry.bounds, entry.actuate, key=f"{key}.initial")
    try:  # build once now, so bad params fail before any run starts
        entry.regulator({"kind": "constant", "value": 0.3}, horizon)
    except ConfigError as e:
        k = e.key.replace("control.params", f"{key}.params").replace("control.", f"{key}.")
        raise e.with_key(k) from None
    return entry


#: labels and target names become folder names under out_dir
PLAIN_NAME = "a folder name of letters, digits and _ . + - (not '.' or '..')"
_NAME = re.compile(r"[A-Za-z0-9_+.-]+")


def _plain_name(v: Any) -> bool:
    return isinstance(v, str) and bool(_NAME.fullmatch(v)) and v not in (".", "..")


def _targets(targets: Mapping[str, Any], regimes: list[str]
             ) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """Target specs by name, and per regime the names it runs (all of them unless the mapping
    is keyed by regime: ``{pretrained: {name: spec}, scratch: {...}}``)."""
    per_regime = all(k in regimes and isinstance(v, Mapping) and "kind" not in v
                     for k, v in targets.items())
    groups = dict(targets) if per_regime else {None: targets}
    flat: dict[str, dict[str, Any]] = {}
    names: dict[str, list[str]] = {}
    for regime, specs in groups.items():
        key = "targets" if regime is None else f"targets.{regime}"
        if not isinstance(specs, Mapping) or not specs:
            raise ConfigError(key, "a non-empty mapping name -> target spec", specs)
        for name, spec in specs.items():
            if not _plain_name(name):
                raise ConfigError(key, f"target names that are {PLAIN_NAME}", name)
            make_target(spec, key=f"{key}.{name}")
            spec = dict(spec) if isinstance(spec, Mapping) else {"kind": "constant", "value": spec}
            if name in flat and flat[name] != spec:
                raise ConfigError(f"{key}.{name}", "one spec per target name across regimes", spec)
            flat[name] = spec
            if regime is not None:
                names.setdefault(regime, []).append(name)
    return flat, names


def parse_bench_config(cfg: Mapping[str, Any]) -> BenchConfig:
    """Validate a bench config mapping; every error names its key."""
    s = check_keys(cfg, TOP_KEYS, "")
    out_dir = s.get("out_dir")
    if not isinstance(out_dir, str) or not out_dir:
        raise ConfigError("out_dir", "an output directory path", out_dir)
    plant = s.get("plant", "sim")
    if plant not in PLANTS:
        raise unknown_name_error("plant", plant, PLANTS, "plants")
    horizon = get_typed(s, "horizon", int, "", 300, minimum=2)
    seeds = s.get("seeds", 5)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if seeds < 1:
            raise ConfigError("seeds", "a number of seeds >= 1 or a non-empty list", seeds)
        seeds = list(range(seeds))
    seeds = _nonempty_list(seeds, "seeds", "integer seeds")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in seeds):
        raise ConfigError("seeds", "a list of integers", seeds)
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", "distinct seeds (a repeated seed repeats a run)", seeds)
    if plant == "trainer":
        for k in ("regimes", "plant_params"):
            if k in s:
                raise ConfigError(k, "no value with plant: trainer (set the trainer_config instead)", s[k])
    trainer_config = s.get("trainer_config")
    trainer_configs: dict[str, str] = {}
    if plant == "trainer" and isinstance(trainer_config, Mapping):
        for name, path in trainer_config.items():
            if not (isinstance(name, str) and name and "/" not in name and name != ".."
                    and isinstance(path, str)):
                raise ConfigError("trainer_config", "a mapping name -> config path (names without '/')",
                                  {name: path})
        trainer_configs = {str(k): str(v) for k, v in trainer_config.items()}
        trainer_config = None
    regimes = s.get("regimes", ["pretrained"] if plant == "sim" else (list(trainer_configs) or ["trainer"]))
    if isinstance(regimes, str):
        regimes = [regimes]
    regimes = _nonempty_list(regimes, "regimes", "plant regimes")
    for i, r in enumerate(regimes):
        if r not in REGIMES and plant == "sim":
            raise unknown_name_error(f"regimes[{i}]", r, REGIMES, "plant regimes")
    plant_params = s.get("plant_params") or {}
    if not isinstance(plant_params, Mapping) or "regime" in plant_params:
        raise ConfigError("plant_params", "a mapping of plant fields (the regime goes in `regimes`)",
                          plant_params)
    for i, r in enumerate(regimes):
        if trainer_configs and r not in trainer_configs:
            raise unknown_name_error(f"regimes[{i}]", r, list(trainer_configs), "trainer_config names")
    if plant == "trainer" and not trainer_configs and not isinstance(trainer_config, str):
        raise ConfigError("trainer_config", "the path of a training config (plant: trainer)", trainer_config)
    control = check_keys(s.get("control"), ("actuate", "initial", "bounds"), "control")
    # the shared defaults are checked under their own key (the entries below merge them in)
    actuate = control.get("actuate", [])
    if not isinstance(actuate, (list, str)):
        raise ConfigError("control.actuate", "a list of knob names", actuate)
    for j, k in enumerate([actuate] if isinstance(actuate, str) else actuate):
        if k not in KNOB_NAMES:
            raise unknown_name_error(f"control.actuate[{j}]", k, KNOB_NAMES, "knob names")
    Knobs.from_mapping(control.get("initial"), key="control.initial")
    KnobBounds.from_mapping(control.get("bounds"), key="control.bounds")
    targets = s.get("targets")
    if not isinstance(targets, Mapping) or not targets:
        raise ConfigError("targets", "a non-empty mapping name -> target spec", targets)
    flat, regime_targets = _targets(targets, regimes)
    raw = _nonempty_list(s.get("controllers"), "controllers", "controller entries")
    entries = [_entry(e, i, control, horizon) for i, e in enumerate(raw)]
    labels = [e.label for e in entries]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise ConfigError("controllers", "distinct labels (set `label` on repeated controllers)", dup[0])
    bc = BenchConfig(
        out_dir=out_dir, plant=plant, horizon=horizon, seeds=[int(x) for x in seeds],
        regimes=list(regimes), plant_params=dict(plant_params), trainer_config=trainer_config,
        burn_in=get_typed(s, "burn_in", int, "", 50, minimum=0),
        ema_alpha=get_typed(s, "ema_alpha", float, "", 0.6, minimum=0.0, maximum=0.999),
        workers=get_typed(s, "workers", int, "", 2, minimum=1),
        band=get_typed(s, "band", bool, "", True),
        targets=flat, regime_targets=regime_targets, trainer_configs=trainer_configs,
        controllers=entries,
    )
    if plant == "sim":
        for r in bc.regimes:
            bc.plant_config(r)  # validate plant_params
    return bc
