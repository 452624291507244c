"""The declarative config layer: typed models with one docstring per field, and one error format.

Every config section, controller parameter set and ``kind:`` variant is a ``Schema`` (a pydantic
v2 model: pydantic is already installed for every user through DeepSpeed, it validates nested
mappings with the exact location of a mistake, and it reads each field's docstring as its
description, which ``docs/config.md`` and ``regulator config --explain`` print). ``parse``
turns pydantic's first error into our one-line ``ConfigError`` (key, expected, given, did-you-
mean), so users never see a pydantic traceback.

A validator that needs a check pydantic cannot express raises ``ConfigError`` itself; its key is
relative to the field being validated (``""`` for the field itself).
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictFloat, ValidationError
from pydantic.fields import FieldInfo

from regulator.errors import ConfigError, unknown_name_error

__all__ = ["Field", "Pair", "Schema", "field_docs", "parse", "resolve", "validation_error"]

S = TypeVar("S", bound="Schema")

#: a pair of numbers written as a YAML list ``[lo, hi]`` (strict models refuse lists for tuples)
Pair = Annotated[tuple[StrictFloat, StrictFloat], Strict(False)]


class Schema(BaseModel):
    """Base of every config model: unknown keys are errors, types are strict (no ``"10"`` for
    10, no ``true`` for 1, no 1.5 for an integer; an integer is a valid float), NaN and inf are
    refused unless a field allows them, and each field's docstring is its documentation."""

    model_config = ConfigDict(extra="forbid", strict=True, use_attribute_docstrings=True,
                              allow_inf_nan=False, validate_default=False, frozen=False)

    def resolved(self) -> dict[str, Any]:
        """Every field with its value, defaults included, as plain YAML-ready data."""
        return _plain(self.model_dump(mode="python"))


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def parse(model: type[S], data: Any, key: str = "", *, context: dict[str, Any] | None = None) -> S:
    """Validate ``data`` (``None`` = all defaults) against ``model``; a mistake is a ConfigError
    whose key is ``key`` followed by the path inside ``data``. ``context`` reaches validators as
    ``info.context`` (settings from outside the section, e.g. control's ``updates_per_step``)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(key, "a mapping", data)  # key "" inside a validator: the field itself
    try:
        return model.model_validate(dict(data), context=context)
    except ValidationError as e:
        raise validation_error(e, key, model) from None


def _join(key: str, loc: Sequence[Any]) -> str:
    out = key
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _model_at(model: type[BaseModel] | None, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model class that holds the last key of ``loc`` (for an unknown key's did-you-mean):
    steps through model fields and into the items of lists, tuples and mappings
    (``controllers[0]`` of a ``list[Entry]`` field is an ``Entry``)."""
    annotation: Any = model
    for part in loc:
        annotation = _step(annotation, part)
        if annotation is None:
            return None
    found = _unwrap(annotation)
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``X | None``."""
    while True:
        origin, args = get_origin(annotation), get_args(annotation)
        if origin is Annotated:
            annotation = args[0]
        elif origin in (Union, types.UnionType) and len(set(args) - {type(None)}) == 1:
            annotation = next(a for a in args if a is not type(None))
        else:
            return annotation


def _step(annotation: Any, part: Any) -> Any:
    """The type of item ``part`` (a field name, list index or mapping key) of ``annotation``;
    None when it has no such item."""
    annotation = _unwrap(annotation)
    origin, args = get_origin(annotation), get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(part) if isinstance(part, str) else None
        return field.annotation if field is not None else None
    if origin in (Union, types.UnionType):  # the first member that has the item
        return next((t for t in (_step(a, part) for a in args) if t is not None), None)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if not isinstance(part, int) or not args:
        return None
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0]
        return args[part] if 0 <= part < len(args) else None
    if origin in (list, Sequence, set, frozenset):
        return args[0]
    return None


def _schema_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _schema_of(arg)
        if found is not None:
            return found
    return None


_EXPECTED = {
    "int_type": "an integer", "int_from_float": "an integer", "int_parsing": "an integer",
    "float_type": "a number", "float_parsing": "a number", "finite_number": "a finite number",
    "bool_type": "true or false", "bool_parsing": "true or false",
    "string_type": "a string", "dict_type": "a mapping", "model_type": "a mapping",
    "model_attributes_type": "a mapping", "list_type": "a list", "tuple_type": "a list",
}


def validation_error(e: ValidationError, key: str, model: type[BaseModel] | None = None
                     ) -> ConfigError:
    """Our one-line ConfigError for the first error pydantic found."""
    err = e.errors(include_url=False)[0]
    kind, loc, ctx = err["type"], list(err["loc"]), err.get("ctx") or {}
    # pydantic names the member of a tagged union it tried (loc: ("target", "linear", "start")):
    # drop that tag, users wrote no such key
    if kind != "union_tag_invalid":
        loc = [p for p in loc if not (isinstance(p, str) and p.startswith("__tag__"))]
    full = _join(key, loc)
    inner = ctx.get("error")
    if isinstance(inner, ConfigError):  # a validator's own check: its key is relative to the field
        sub = inner.key
        where = full if not sub else (f"{full}{sub}" if sub[0] in "[." else _join(full, [sub]))
        return ConfigError(where.lstrip("."), inner.expected, inner._given, hint=inner.hint)
    if kind == "missing" and loc and isinstance(loc[-1], int):  # a fixed-length list too short
        return ConfigError(_join(key, loc[:-1]), "a list with more items", err.get("input"))
    return _name_error(kind, full, loc, ctx, err.get("input"), model) or \
        _value_error(kind, full, ctx, err.get("input"), err["msg"])


def _name_error(kind: str, full: str, loc: list[Any], ctx: dict[str, Any], given: Any,
                model: type[BaseModel] | None) -> ConfigError | None:
    """An unknown key, tag or choice (with a did-you-mean), or None for other errors."""
    if kind == "extra_forbidden":
        holder = _model_at(model, loc[:-1])
        allowed = list(holder.model_fields) if holder is not None else []
        return unknown_name_error(full, loc[-1], allowed, "allowed keys")
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        field = str(ctx.get("discriminator", "kind")).strip("'")
        return unknown_name_error(_join(full, [field]), ctx.get("tag"), tags, f"{field} values")
    if kind == "union_tag_not_found":
        return ConfigError(_join(full, [str(ctx.get("discriminator", "kind")).strip("'")]),
                           "a value (required)")
    if kind == "literal_error":
        choices = [c.strip(" '") for c in str(ctx.get("expected", "")).replace(" or ", ",").split(",")]
        return unknown_name_error(full, given, [c for c in choices if c], "allowed values")
    return None


_BOUNDS = {"greater_than_equal": (">=", "ge"), "less_than_equal": ("<=", "le"),
           "greater_than": (">", "gt"), "less_than": ("<", "lt")}


def _value_error(kind: str, full: str, ctx: dict[str, Any], given: Any, msg: str) -> ConfigError:
    """A value of the wrong type, out of range or of the wrong length."""
    if kind == "missing":
        return ConfigError(full, "a value (required)")
    if kind == "string_too_short":
        return ConfigError(full, "a non-empty string", given)
    if kind in _BOUNDS:
        op, name = _BOUNDS[kind]
        return ConfigError(full, f"a value {op} {ctx.get(name)}", given)
    if kind in ("too_short", "too_long"):
        lo, hi = ctx.get("min_length"), ctx.get("max_length")
        what = f"exactly {lo}" if lo == hi else (f"at least {lo}" if kind == "too_short" else f"at most {hi}")
        return ConfigError(full, f"a list of {what} items", given)
    if kind in _EXPECTED:
        return ConfigError(full, _EXPECTED[kind], given)
    return ConfigError(full, msg.removeprefix("Value error, ").lower(), given)


def field_docs(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, Any, str]]:
    """``(key, type, default, description)`` for every field of ``model`` and its sub-models,
    depth first, for ``docs/config.md`` and ``regulator config --explain``."""
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        yield key, _type_name(info.annotation), _default(info), (info.description or "").strip()
        sub = _schema_of(info.annotation)
        if sub is not None and get_origin(info.annotation) is None:
            yield from field_docs(sub, key)


def _default(info: FieldInfo) -> Any:
    if info.is_required():
        return "(required)"
    if info.default_factory is not None:
        v = info.default_factory()  # type: ignore[call-arg]
    else:
        v = info.default
    if isinstance(v, BaseModel):
        return _plain(v.model_dump())
    for as_data in ("as_config", "as_dict"):  # Knobs, KnobBounds: show them as a config writes them
        if hasattr(v, as_data):
            return _plain(getattr(v, as_data)())
    return _plain(v)


def _type_name(annotation: Any) -> str:
    """A readable name of a field's type: constraints and validators (``Annotated``) left out."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if annotation is type(None) or annotation is Ellipsis:
        return "None" if annotation is not Ellipsis else "..."
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(annotation, type):
        return "mapping" if issubclass(annotation, BaseModel) else annotation.__name__
    return repr(annotation).replace("typing.", "")


def resolve(path: str, key: str, *, what: str = "an importable 'package.module:attribute'") -> Any:
    """Import ``package.module:attribute`` (or ``package.module.attribute``); a ConfigError
    naming ``key`` when it cannot be found."""
    import pkgutil

    try:
        return pkgutil.resolve_name(path)
    except (ImportError, AttributeError, ValueError) as e:
        raise ConfigError(key, what, path, hint=str(e)) from None

