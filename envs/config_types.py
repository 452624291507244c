"""Field types shared by the envs' config models (bench, tune): partial knob settings merged over
defaults, seed lists and output folders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, TypeAdapter, ValidationError

from regulator.errors import ConfigError
from regulator.knobs import Actuate, KnobBounds, Knobs
from regulator.schema import validation_error

_ACTUATE: TypeAdapter[tuple[str, ...]] = TypeAdapter(Actuate)


def _maybe_actuate(v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    try:
        return _ACTUATE.validate_python(v)
    except ValidationError as e:
        raise validation_error(e, "") from None


def _knob_values(v: Any) -> dict[str, float]:
    Knobs.from_mapping(v, key="")
    return dict(v or {})


def _bound_values(v: Any) -> dict[str, Any]:
    KnobBounds.from_mapping(v, key="")
    return dict(v or {})


#: ``actuate:`` that may be left to a default: null, a knob name or a list of them
MaybeActuate = Annotated[tuple[str, ...] | None, PlainValidator(_maybe_actuate),
                         PlainSerializer(lambda v: None if v is None else list(v))]
#: some knobs' values, merged over defaults later; checked as ``Knobs`` (knob names, ranges)
KnobValues = Annotated[dict[str, float], PlainValidator(_knob_values)]
#: some knobs' [min, max] (and ``max_delta``), merged over defaults later; checked as ``KnobBounds``
BoundValues = Annotated[dict[str, Any], PlainValidator(_bound_values)]


def _seeds(minimum: int, why: str) -> Callable[[Any], list[int]]:
    expected = f"an integer >= {minimum} or a list of at least {minimum} distinct integer seeds >= 0"

    def check(v: Any) -> list[int]:
        if isinstance(v, int) and not isinstance(v, bool):
            if v < minimum:
                raise ConfigError("", f"at least {minimum} seed{'s' * (minimum > 1)}{why}", v)
            return list(range(v))
        if not (isinstance(v, list) and len(v) >= minimum
                and all(isinstance(s, int) and not isinstance(s, bool) for s in v)):
            raise ConfigError("", expected, v)
        for i, s in enumerate(v):
            if s < 0:  # a training run's train.seed is >= 0
                raise ConfigError(f"[{i}]", "a seed >= 0", s)
        if len(set(v)) != len(v):
            raise ConfigError("", "distinct seeds (a repeated seed repeats a run)", v)
        return list(v)
    return check


#: ``seeds:`` of a bench: a number n (seeds 0..n-1) or a list of distinct seeds
BenchSeeds = Annotated[list[int], PlainValidator(_seeds(1, ""))]
#: ``seeds:`` of tune: at least 2, as the gain's error bar is their spread
TuneSeeds = Annotated[list[int], PlainValidator(_seeds(2, " (the gain's error bar is their spread)"))]


def check_out_dir(path: str) -> str:
    """An output folder ``path`` that can be made: neither it nor a folder above it is an existing
    file (relative key ``""``: the field)."""
    p = Path(path)
    for q in (p, *p.parents):
        if q.exists() and not q.is_dir():
            what = "an existing file has that name" if q == p else f"{str(q)!r} is an existing file"
            raise ConfigError("", f"a directory path ({what})", path)
    return path
