"""Config plumbing shared by ``regulator train``, ``regulator bench`` and the gym envs.

YAML loading, ``--set key.path=value`` overrides, key checking with did-you-mean, and the
``control:`` section (which builds a Regulator). Every problem is a ConfigError naming the key.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs, check_initial_in_bounds
from regulator.registry import get_controller_class, make_controller
from regulator.safety import MAX_CONSECUTIVE_FAULTS, Regulator
from regulator.targets import make_target


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2), not the string '1e-3', and
    refuses duplicate keys (plain YAML keeps the last one silently: two ``train:`` sections would
    run into the wrong folder)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key) if isinstance(key, str) else None
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats such as ``1e-6``."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; missing file, bad YAML or a non-mapping raise a ConfigError."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("CONFIG", "an existing YAML file", str(path))
    try:
        data = parse_yaml(p.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError("CONFIG", "a UTF-8 text file", str(path),
                          hint=f"byte {e.start} is not UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("CONFIG", f"valid YAML{where}", str(path),
                          hint=str(getattr(e, "problem", e))) from None
    if data is None:
        raise ConfigError("CONFIG", "a non-empty YAML mapping", f"{path} (empty file)")
    if not isinstance(data, dict):
        raise ConfigError("CONFIG", "a YAML mapping of sections", type(data).__name__)
    return data


def apply_overrides(cfg: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with each ``key.path=value`` set (value parsed as YAML)."""
    out = copy.deepcopy(dict(cfg))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError("--set", "key.path=value", item)
        try:
            value = parse_yaml(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(".".join(parts[: i + 1]), "a mapping to set a sub-key in", nxt)
            node = nxt
        node[parts[-1]] = value
    return out


def check_keys(section: Any, allowed: Sequence[str], key: str) -> dict[str, Any]:
    """Check that ``section`` is a mapping whose keys are all in ``allowed``; return it as a dict."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(key, "a mapping", section)
    for k in section:
        if k not in allowed:
            raise unknown_name_error(f"{key}.{k}" if key else str(k), k, allowed, "allowed keys")
    return dict(section)


def get_typed(section: Mapping[str, Any], name: str, kind: type | tuple[type, ...], key: str,
              default: Any = None, *, minimum: float | None = None,
              maximum: float | None = None) -> Any:
    """``section[name]`` checked against a type and optional numeric range."""
    v = section.get(name, default)
    full = f"{key}.{name}" if key else name
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if v is None and default is None and name not in section:
        return None
    names = " or ".join(k.__name__ for k in kinds)
    if isinstance(v, bool) and bool not in kinds or not isinstance(v, kinds):
        raise ConfigError(full, f"a value of type {names}", v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if isinstance(v, float) and math.isnan(v):
            raise ConfigError(full, "a number, not NaN", v)
        if minimum is not None and v < minimum:
            raise ConfigError(full, f"a value >= {minimum}", v)
        if maximum is not None and v > maximum:
            raise ConfigError(full, f"a value <= {maximum}", v)
    return v


CONTROL_KEYS = ("controller", "params", "target", "actuate", "initial", "bounds",
                "max_consecutive_faults")
#: the controller of a ``control:`` section that names none: it finds each knob's direction,
#: gain and authority itself (``controllers/auto.py``); with no ``control:`` section at all the
#: run is plain GRPO (``static``)
DEFAULT_CONTROLLER = "auto"


def controller_defaults(cls: type) -> tuple[list[str], dict[str, Any]]:
    """The knobs a controller class moves and the bounds it runs under when a config names
    none: its optional ``DEFAULT_ACTUATE`` / ``DEFAULT_BOUNDS`` class attributes ([w_pos], {})."""
    return list(getattr(cls, "DEFAULT_ACTUATE", ["w_pos"])), dict(getattr(cls, "DEFAULT_BOUNDS", {}))


@dataclass
class ControlConfig:
    """The ``control:`` section: which controller, its params, the target curve and the knobs."""

    controller: str = "static"
    params: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=lambda: {"kind": "constant", "value": 0.3})
    actuate: tuple[str, ...] = ("w_pos",)
    initial: Knobs = field(default_factory=Knobs)
    bounds: KnobBounds = field(default_factory=KnobBounds)
    #: stop the run after this many control faults in a row (0: never)
    max_consecutive_faults: int = MAX_CONSECUTIVE_FAULTS

    #: True when ``actuate`` was not given, so the trainer may add the clip bounds
    default_actuate: bool = False

    @classmethod
    def from_mapping(cls, section: Any, key: str = "control", *, updates_per_step: int = 1
                     ) -> ControlConfig:
        """Validate the section. The controller's own ``DEFAULT_ACTUATE`` / ``DEFAULT_BOUNDS``
        (class attributes, optional) fill ``actuate`` / ``bounds`` the section leaves out; the
        default controller also moves the clip bounds when ``updates_per_step`` > 1 (only then
        does the ratio leave 1 and the clip act)."""
        s = check_keys(section, CONTROL_KEYS, key)
        name = s.get("controller", "static" if section is None else DEFAULT_CONTROLLER)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}.controller", "a controller name or 'module:Class'", name)
        cls_ = get_controller_class(name, key=f"{key}.controller")
        params = s.get("params") or {}
        if not isinstance(params, Mapping):
            raise ConfigError(f"{key}.params", "a mapping of controller parameters", params)
        default_actuate, default_bounds = controller_defaults(cls_)
        if name == DEFAULT_CONTROLLER and updates_per_step > 1:
            default_actuate += ["eps_low", "eps_high"]
        actuate = s.get("actuate", default_actuate)
        if isinstance(actuate, str):
            actuate = [actuate]
        if not isinstance(actuate, (list, tuple)):
            raise ConfigError(f"{key}.actuate", "a list of knob names", actuate)
        for i, k in enumerate(actuate):
            if k not in KNOB_NAMES:
                raise unknown_name_error(f"{key}.actuate[{i}]", k, KNOB_NAMES, "knob names")
        if not actuate and name != "static":
            raise ConfigError(f"{key}.actuate", f"at least one knob for controller {name!r} to move "
                              "(only 'static' runs with none)", list(actuate))
        target = s.get("target", {"kind": "constant", "value": 0.3})
        make_target(target, key=f"{key}.target")  # validate now, build per run
        bounds = s.get("bounds")
        if default_bounds and (bounds is None or isinstance(bounds, Mapping)):
            bounds = {**default_bounds, **(bounds or {})}
        initial = Knobs.from_mapping(s.get("initial"), key=f"{key}.initial")
        bounds = KnobBounds.from_mapping(bounds, key=f"{key}.bounds")
        check_initial_in_bounds(initial, bounds, actuate, key=f"{key}.initial")
        return cls(
            controller=name,
            params=dict(params),
            target=target if isinstance(target, Mapping) else {"kind": "constant", "value": target},
            actuate=tuple(actuate),
            initial=initial,
            bounds=bounds,
            default_actuate="actuate" not in s,
            max_consecutive_faults=get_typed(s, "max_consecutive_faults", int, key,
                                             MAX_CONSECUTIVE_FAULTS, minimum=0),
        )

    def build(self, total_steps: int) -> Regulator:
        """A fresh controller wrapped in a Regulator for a run of ``total_steps`` steps."""
        controller = make_controller(self.controller, **self.params)
        return Regulator(controller, make_target(dict(self.target)), initial=self.initial,
                         bounds=self.bounds, actuate=self.actuate, total_steps=total_steps,
                         max_consecutive_faults=self.max_consecutive_faults)
