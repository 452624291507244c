"""Config plumbing shared by ``regulator train``, ``regulator bench`` and the gym envs.

YAML loading, ``--set key.path=value`` overrides, key checking with did-you-mean, and the
``control:`` section (which builds a Regulator). Every problem is a ConfigError naming the key.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationInfo, field_validator, model_validator

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
from regulator.registry import get_controller_class, make_controller, resolve_params
from regulator.safety import MAX_CONSECUTIVE_FAULTS, Regulator
from regulator.schema import Field, Schema, parse
from regulator.targets import make_target, parse_target


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
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass


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


#: the controller of a ``control:`` section that names none: it finds each knob's direction,
#: gain and authority itself (``controllers/auto.py``)
DEFAULT_CONTROLLER = "auto"
#: the controller of a config with no ``control:`` section: fixed knobs, i.e. plain GRPO
NO_CONTROL = "static"


def controller_defaults(cls: type) -> tuple[list[str], dict[str, Any]]:
    """The knobs a controller class moves and the bounds it runs under when a config names
    none: its optional ``DEFAULT_ACTUATE`` / ``DEFAULT_BOUNDS`` class attributes ([w_pos], {})."""
    return (list(getattr(cls, "DEFAULT_ACTUATE", DEFAULT_ACTUATE)),
            dict(getattr(cls, "DEFAULT_BOUNDS", {})))


class ControlConfig(Schema):
    """The ``control:`` section: which controller, its params, the target curve and the knobs.

    A section that names no controller runs ``auto``; a config with no ``control:`` section runs
    ``static`` (plain GRPO). ``actuate`` and ``bounds`` left out come from the controller class
    (its optional ``DEFAULT_ACTUATE`` / ``DEFAULT_BOUNDS``)."""

    controller: str = NO_CONTROL
    """Controller name (``regulator controllers`` lists them), an entry point or ``module:Class``.
    Left out of a ``control:`` section: ``auto`` (the default controller); with no ``control:``
    section at all: ``static`` (plain GRPO). ``actuate`` and ``bounds`` then default to that
    controller's own."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments of the controller (``regulator config --explain control.params``)."""
    target: dict[str, Any] = Field(default_factory=lambda: {"kind": "constant", "value": 0.3})
    """Target entropy curve (nats per token): a mapping with a ``kind``, or a number for a
    constant target."""
    actuate: Actuate = DEFAULT_ACTUATE
    """Knobs the controller moves; the others stay at ``initial``. Default: the controller's own
    (``auto`` also moves eps_low / eps_high when optim makes more than one update per step)."""
    initial: KnobsField = Field(default_factory=Knobs)
    """Knob values at step 0 (w_pos, w_neg, eps_low, eps_high); knobs not given keep GRPO's."""
    bounds: BoundsField = Field(default_factory=KnobBounds)
    """Per-knob ``[min, max]`` and an optional ``max_delta`` (largest change per step, one number
    or per knob). Default: the controller's own, else w_pos [0, 1], w_neg [0, 2], eps [0, 0.5]."""
    max_consecutive_faults: int = Field(MAX_CONSECUTIVE_FAULTS, ge=0)
    """Stop the run after this many control faults in a row (0: never)."""

    @model_validator(mode="before")
    @classmethod
    def _controller_defaults(cls, data: Any, info: ValidationInfo) -> Any:
        """Fill ``controller``, ``actuate`` and ``bounds`` from the controller class;
        ``updates_per_step`` (validation context) > 1 lets ``auto`` move the clip bounds too
        (only then does the ratio leave 1 and the clip act)."""
        if not isinstance(data, Mapping):
            return data
        s = dict(data)
        name = s.setdefault("controller", DEFAULT_CONTROLLER)
        if not isinstance(name, str) or not name:
            raise ConfigError("controller", "a controller name or 'module:Class'", name)
        own_actuate, own_bounds = controller_defaults(get_controller_class(name, key="controller"))
        if name == DEFAULT_CONTROLLER and (info.context or {}).get("updates_per_step", 1) > 1:
            own_actuate += ["eps_low", "eps_high"]
        s.setdefault("actuate", own_actuate)
        if own_bounds and (s.get("bounds") is None or isinstance(s["bounds"], Mapping)):
            s["bounds"] = {**own_bounds, **(s.get("bounds") or {})}
        if s.get("params", {}) is None:
            s["params"] = {}
        return s

    @field_validator("target", mode="before")
    @classmethod
    def _target(cls, v: Any) -> Any:
        return parse_target(v, key="").resolved()  # every default filled in; built per run

    @model_validator(mode="after")
    def _params(self) -> ControlConfig:
        """The controller's parameters, checked by it and saved with every default."""
        self.params = resolve_params(self.controller, self.params, key="params")
        return self

    @model_validator(mode="after")
    def _knobs_agree(self) -> ControlConfig:
        if not self.actuate and self.controller != NO_CONTROL:
            raise ConfigError("actuate", f"at least one knob for controller {self.controller!r} "
                              f"to move (only {NO_CONTROL!r} runs with none)", list(self.actuate))
        check_initial_in_bounds(self.initial, self.bounds, self.actuate, key="initial")
        return self

    @classmethod
    def from_mapping(cls, section: Any, key: str = "control", *, updates_per_step: int = 1
                     ) -> ControlConfig:
        """Validate a ``control:`` section (``None``: no section, i.e. ``static``)."""
        if section is None:
            section = {"controller": NO_CONTROL}
        if not isinstance(section, Mapping):
            raise ConfigError(key, "a mapping", section)
        return parse(cls, section, key, context={"updates_per_step": updates_per_step})

    def build(self, total_steps: int) -> Regulator:
        """A fresh controller wrapped in a Regulator for a run of ``total_steps`` steps."""
        controller = make_controller(self.controller, **self.params)
        return Regulator(controller, make_target(dict(self.target)), initial=self.initial,
                         bounds=self.bounds, actuate=self.actuate, total_steps=total_steps,
                         max_consecutive_faults=self.max_consecutive_faults)
