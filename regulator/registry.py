"""The controller registry: a ``regulator.registries.Registry`` of Controller classes.

Names resolve in this order: registered names (``@register_controller``), then the entry-point
group ``regulator.controllers`` (the built-ins are published there by this project's own
pyproject, plugins by theirs), then ``package.module:ClassName``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from regulator.controller import Controller
from regulator.errors import ConfigError, unknown_name_error
from regulator.registries import Registry
from regulator.schema import parse

ENTRY_POINT_GROUP = "regulator.controllers"

C = TypeVar("C", bound=type[Controller])


def _is_controller(obj: Any) -> str:
    return "" if inspect.isclass(obj) and issubclass(obj, Controller) else \
        "a subclass of regulator.Controller"


#: every controller class by name
CONTROLLERS: Registry[type[Controller]] = Registry(
    "registered controllers", group=ENTRY_POINT_GROUP, paths=True, check=_is_controller)

_OTHER_CONTROLLER = ("control.params are the controller's own; after changing control.controller, "
                     "replace them too, e.g. --set 'control.params={}'")


def register_controller(name: str) -> Callable[[C], C]:
    """Class decorator: make a Controller subclass available as ``name`` in configs."""

    def deco(cls: C) -> C:
        CONTROLLERS.register(name)(cls)
        cls.name = name
        return cls

    return deco


def get_controller_class(name: str, key: str = "control.controller") -> type[Controller]:
    """Resolve a registry name, entry-point name or ``module:Class`` to a Controller class."""
    return CONTROLLERS.get(name, key)


def parameter_names(cls: type[Controller]) -> list[str] | None:
    """The parameters ``cls`` accepts (its ``Params`` fields, else its constructor's keyword
    names); None when it accepts any."""
    if cls.Params is not None:
        return list(cls.Params.model_fields)
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return [p for p in sig.parameters if p != "self"]


def _check_names(cls: type[Controller], name: str, params: Mapping[str, Any], key: str) -> None:
    """Every key of ``params`` is one of ``cls``'s parameters (did-you-mean, or the hint that
    params written for another controller were left behind)."""
    accepted = parameter_names(cls)
    for k in params if accepted is not None else ():
        if k not in accepted:
            err = unknown_name_error(f"{key}.{k}", k, accepted, f"parameters of controller {name!r}")
            if not err.hint:  # most likely params written for another controller
                err = ConfigError(err.key, err.expected, k, hint=_OTHER_CONTROLLER)
            raise err


def resolve_params(name: str, params: Mapping[str, Any], key: str = "control.params") -> dict[str, Any]:
    """``params`` checked against controller ``name`` and, when it declares ``Params``, with
    every default filled in (what a run's config.yaml records); a ConfigError under ``key``."""
    cls = get_controller_class(name)
    _check_names(cls, name, params, key)
    if cls.Params is None:
        return dict(params)
    return parse(cls.Params, params, key).resolved()


def make_controller(name: str, /, **params: Any) -> Controller:
    """Instantiate a controller by name with its parameters (``control.params`` in a config);
    the constructor validates them (``Controller.__init__`` parses ``Params``)."""
    cls = get_controller_class(name)
    _check_names(cls, name, params, "control.params")
    try:
        return cls(**params)
    except ConfigError as e:
        if e.key.startswith("control."):
            raise
        raise e.with_key(f"control.params.{e.key}" if e.key else "control.params") from None
    except (ValueError, TypeError) as e:  # a plugin's own check of its parameters
        raise ConfigError("control.params", f"parameters controller {name!r} accepts", params,
                          hint=f"its constructor raised {type(e).__name__}: {e}") from None


def list_controllers() -> list[str]:
    """Names of every registered, built-in and plugin controller, sorted."""
    return CONTROLLERS.names()


def controller_origins() -> dict[str, str]:
    """name -> where it comes from (module for the project's own, distribution for plugins)."""
    return CONTROLLERS.origins()
