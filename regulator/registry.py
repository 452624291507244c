"""Controller registry: built-ins by name, ``module:Class`` paths, and entry-point plugins.

Names resolve in this order: registered names (``@register_controller``), then the entry-point
group ``regulator.controllers`` (third-party packages), then ``package.module:ClassName``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

from regulator.controller import Controller
from regulator.errors import ConfigError, unknown_name_error

ENTRY_POINT_GROUP = "regulator.controllers"

_REGISTRY: dict[str, type[Controller]] = {}
_ORIGINS: dict[str, str] = {}
_BUILTINS_LOADED = False

C = TypeVar("C", bound=type[Controller])


def register_controller(name: str) -> Callable[[C], C]:
    """Class decorator: make a Controller subclass available as ``name`` in configs."""

    def deco(cls: C) -> C:
        if not (inspect.isclass(cls) and issubclass(cls, Controller)):
            raise TypeError(f"@register_controller({name!r}) needs a Controller subclass, got {cls!r}")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(
                f"controller name {name!r} is already registered by "
                f"{existing.__module__}.{existing.__qualname__}"
            )
        cls.name = name
        _REGISTRY[name] = cls
        _ORIGINS[name] = cls.__module__
        return cls

    return deco


def _load_builtins() -> None:
    """Import the built-in controllers package once (it registers itself)."""
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    try:
        importlib.import_module("controllers")
    except ModuleNotFoundError as e:  # regulator used on its own
        if e.name != "controllers":
            raise


def _entry_points() -> dict[str, metadata.EntryPoint]:
    return {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _load_path(path: str, key: str) -> type[Controller]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(key, "an importable 'package.module:ClassName'", path, hint=str(e)) from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(key, f"a class named {attr!r} in module {module_name!r}", path)
    if not (inspect.isclass(obj) and issubclass(obj, Controller)):
        raise ConfigError(key, "a subclass of regulator.Controller", path)
    return obj


def get_controller_class(name: str, key: str = "control.controller") -> type[Controller]:
    """Resolve a registry name, entry-point name or ``module:Class`` to a Controller class."""
    if not isinstance(name, str) or not name:
        raise ConfigError(key, "a controller name or 'package.module:ClassName'", name)
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_points()
    if name in eps:
        try:
            obj = eps[name].load()
        except Exception as e:  # a broken plugin must not look like a typo
            raise ConfigError(key, f"a loadable plugin (entry point {eps[name].value})", name,
                              hint=f"{type(e).__name__}: {e}") from None
        if not (inspect.isclass(obj) and issubclass(obj, Controller)):
            raise ConfigError(key, "an entry point that names a regulator.Controller subclass", name)
        _ORIGINS.setdefault(name, f"plugin {eps[name].dist.name if eps[name].dist else ''}".strip())
        return obj
    if ":" in name:
        return _load_path(name, key)
    raise unknown_name_error(key, name, list_controllers(), "registered controllers")


def make_controller(name: str, /, **params: Any) -> Controller:
    """Instantiate a controller by name with its parameters (``control.params`` in a config)."""
    cls = get_controller_class(name)
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        sig = None
    if sig is not None and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()
    ):
        accepted = [p for p in sig.parameters if p != "self"]
        for k in params:
            if k not in accepted:
                err = unknown_name_error(
                    f"control.params.{k}", k, accepted, f"parameters of controller {name!r}"
                )
                if not err.hint:  # most likely params written for another controller
                    err = ConfigError(err.key, err.expected, k, hint=(
                        "control.params are the controller's own; after changing "
                        "control.controller, replace them too, e.g. --set 'control.params={}'"))
                raise err
    try:
        return cls(**params)
    except ConfigError as e:
        if e.key.startswith("control."):
            raise
        raise e.with_key(f"control.params.{e.key}") from None
    except (ValueError, TypeError) as e:  # a plugin's own check of its parameters
        raise ConfigError("control.params", f"parameters controller {name!r} accepts", params,
                          hint=f"its constructor raised {type(e).__name__}: {e}") from None


def list_controllers() -> list[str]:
    """Names of every registered, built-in and plugin controller, sorted."""
    _load_builtins()
    return sorted(set(_REGISTRY) | set(_entry_points()))


def controller_origins() -> dict[str, str]:
    """name -> where it comes from (module for registered ones, distribution for plugins)."""
    _load_builtins()
    out = dict(_ORIGINS)
    for name, ep in _entry_points().items():
        if name not in _REGISTRY:
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            own = dist == "entropy-regulator"
            out[name] = ep.value.partition(":")[0] if own else f"plugin ({dist}: {ep.value})"
    return dict(sorted(out.items()))
