"""One registry pattern for every pluggable family (controllers, targets, tasks, rewards, models,
rollout backends, CLI commands).

A ``Registry`` maps names to objects. Names resolve in this order: registered names
(``@registry.register("name")``), then the registry's entry-point group (installed packages,
built-ins included, so the core never imports a family's package by name), then a
``package.module:attribute`` path when the registry allows one. Unknown names get a one-line
ConfigError with a did-you-mean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from importlib import metadata
from typing import Any, Generic, TypeVar

from regulator.errors import ConfigError, unknown_name_error
from regulator.schema import resolve

T = TypeVar("T")
Obj = TypeVar("Obj")


class Registry(Generic[T]):
    """Named objects of one family.

    ``what`` names the family in errors ("controllers", "target kinds"); ``group`` is the
    entry-point group plugins (and the project's own built-ins) are published under;
    ``check(obj) -> str`` returns "" for an acceptable object or what was expected instead;
    ``paths`` allows ``package.module:attribute`` names.
    """

    def __init__(self, what: str, *, group: str | None = None, paths: bool = False,
                 check: Callable[[Any], str] | None = None) -> None:
        self.what = what
        self.group = group
        self.paths = paths
        self._check = check or (lambda obj: "")
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._scanned: tuple[tuple[str, ...], dict[str, metadata.EntryPoint]] | None = None

    def register(self, name: str) -> Callable[[Obj], Obj]:
        """Decorator: make ``obj`` available under ``name`` (a second object under the same
        name is an error, the same one again is not)."""

        def deco(obj: Obj) -> Obj:
            problem = self._check(obj)
            if problem:
                raise TypeError(f"registering {name!r} as one of the {self.what} needs {problem}, "
                                f"got {obj!r}")
            existing = self._items.get(name)
            if existing is not None and existing is not obj:
                raise ValueError(f"{self.what}: name {name!r} is already registered by "
                                 f"{_where(existing)}")
            self._items[name] = obj  # type: ignore[assignment]
            self._origins[name] = getattr(obj, "__module__", "") or ""
            return obj

        return deco

    def entry_points(self) -> dict[str, metadata.EntryPoint]:
        """The installed entry points of this family (name -> entry point), read once per
        ``sys.path`` (a scan of every distribution costs milliseconds, and a bench resolves a
        name per run)."""
        if self.group is None:
            return {}
        path = tuple(sys.path)
        if self._scanned is None or self._scanned[0] != path:
            self._scanned = (path, {ep.name: ep for ep in metadata.entry_points(group=self.group)})
        return dict(self._scanned[1])

    def get(self, name: Any, key: str) -> T:
        """The object registered, published or importable as ``name``; a ConfigError naming
        ``key`` otherwise."""
        if not isinstance(name, str) or not name:
            raise ConfigError(key, f"a name of one of the {self.what}", name)
        if name in self._items:
            return self._items[name]
        eps = self.entry_points()
        if name in eps:
            try:
                obj = eps[name].load()
            except Exception as e:  # a broken plugin must not look like a typo
                raise ConfigError(key, f"a loadable plugin (entry point {eps[name].value})", name,
                                  hint=f"{type(e).__name__}: {e}") from None
            problem = self._check(obj)
            if problem:
                raise ConfigError(key, f"an entry point that names {problem}", name)
            return obj
        if self.paths and ":" in name:
            obj = resolve(name, key)
            problem = self._check(obj)
            if problem:
                raise ConfigError(key, problem, name)
            return obj
        raise unknown_name_error(key, name, self.names(), self.what)

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self.entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def names(self) -> list[str]:
        """Every registered and published name, sorted."""
        return sorted(set(self._items) | set(self.entry_points()))

    def load_all(self) -> dict[str, T]:
        """name -> object for every name (loads every entry point)."""
        return {name: self.get(name, self.what) for name in self.names()}

    def origins(self) -> dict[str, str]:
        """name -> where it comes from: a module for the project's own, ``plugin (dist: value)``
        for another distribution's."""
        out = dict(self._origins)
        for name, ep in self.entry_points().items():
            if name in self._items:
                continue
            dist = ep.dist.name if ep.dist is not None else "unknown distribution"
            out[name] = ep.value.partition(":")[0] if dist == "entropy-regulator" else \
                f"plugin ({dist}: {ep.value})"
        return dict(sorted(out.items()))


def _where(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
