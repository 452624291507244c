"""``kind:`` families: one Schema per kind, looked up in the family's Registry, then validated.

Targets, tasks, rewards and models each keep a ``Registry`` of ``KindSchema`` subclasses (one per
kind: its fields are that kind's keys, its ``build`` makes the object). ``parse_kind`` reads the
tag (``kind`` or ``name``), finds that kind's Schema (registered, an installed plugin's entry
point, or a ``module:Class`` path where the family allows one) and validates the spec against it,
so every family reports an unknown kind, a missing field and an unknown field the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from regulator.errors import ConfigError
from regulator.registries import Registry
from regulator.schema import Schema, parse

__all__ = ["KindSchema", "parse_kind", "schema_check"]

K = TypeVar("K", bound="KindSchema")


class KindSchema(Schema):
    """Base of one kind's Schema: the fields are the kind's keys, ``build`` makes the object."""

    def build(self, key: str) -> Any:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


def schema_check(base: type[KindSchema]) -> Callable[[Any], str]:
    """A Registry ``check``: the registered object must be a subclass of ``base``."""

    def check(obj: Any) -> str:
        return "" if isinstance(obj, type) and issubclass(obj, base) else f"a {base.__name__} subclass"

    return check


def parse_kind(registry: Registry[type[K]], spec: Any, key: str, *, tag: str = "kind",
               default: str | None = None) -> K:
    """The validated Schema of ``spec`` (a mapping whose ``tag`` names a kind of ``registry``;
    ``default`` when the tag is left out); a ConfigError naming the key otherwise."""
    if isinstance(spec, KindSchema):
        return spec  # type: ignore[return-value]
    if not isinstance(spec, Mapping):
        raise ConfigError(key, f"a mapping with a '{tag}'", spec)
    name = spec.get(tag, default)
    if name is None:
        raise ConfigError(f"{key}.{tag}", f"one of the {registry.what}: {', '.join(registry.names())}")
    schema = registry.get(name, f"{key}.{tag}")
    return parse(schema, {**spec, tag: name}, key)
