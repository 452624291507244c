"""``regulator config``: the resolved config, and every key's type, default and documentation.

``regulator config CONFIG [--set ...]`` prints CONFIG with every default filled in (what the run
would save as RUN_DIR/config.yaml); ``regulator config --explain KEY`` documents a key or a whole
section, ``control.params`` from the controller's ``Params`` schema. ``python -m
trainer.config_docs --markdown`` writes docs/config.md from the same field docstrings.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from regulator.config import DEFAULT_CONTROLLER, apply_overrides, load_yaml
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import KNOB_NAMES
from regulator.registry import get_controller_class, list_controllers
from regulator.schema import Schema
from regulator.schema_docs import Entry, markdown_main, show, table
from regulator.schema_docs import entries as schema_entries
from trainer.config import TrainConfig

INTRO = """\
# Config reference

Every key of a `regulator train` config, generated from the field docstrings of the config
models (`trainer/config.py`, `regulator/config.py`) by `python -m trainer.config_docs --markdown`
(a test checks this file is up to date). Unknown keys, wrong types and out-of-range values are
errors that name the key. `regulator config CONFIG` prints a config with every default filled in
(what a run saves as `RUN_DIR/config.yaml`); `regulator config --explain KEY` prints one key or
section, e.g. `optim.lr`, `optim` or `control.params.kp` (the parameters of the controller that
`CONFIG` names, `auto` without one), `task.k` (the keys of the task kind `CONFIG` names).
`model`, `task` and `reward` are described in [models_tasks.md](models_tasks.md); `control` in
[controllers.md](controllers.md).
"""

def entries(model: type[Schema] = TrainConfig, prefix: str = "") -> Iterator[Entry]:
    """Every key of ``model`` (the train config by default) with its type, default and doc."""
    return schema_entries(model, prefix)


def _children(table: dict[str, Entry], key: str) -> list[Entry]:
    return [e for k, e in table.items() if k.startswith(f"{key}.")]


# --- --explain ------------------------------------------------------------------------------

def explain_key(key: str, controller: str = DEFAULT_CONTROLLER,
                config: Mapping[str, Any] | None = None) -> str:
    """The documentation of ``key`` ("" = every key; a section = all its keys); ``controller``
    picks the parameters ``control.params`` documents, ``config`` (a raw config) the kinds whose
    keys ``task.*``, ``reward.*``, ``model.*`` and ``control.target.*`` document."""
    if key == "control.params" or key.startswith("control.params."):
        return _explain_params(key, controller)
    for title, family, registry in _families():
        if key.startswith(f"{family}."):
            return _explain_kind(key, title, family, registry, config or {})
    table = {e[0]: e for e in entries()}
    if key == "":
        return "\n".join(_text(e, section=bool(_children(table, k))) for k, e in table.items())
    if key in table:
        return _block(table, key)
    parts = key.split(".")
    for i in range(1, len(parts)):  # a key inside a plain mapping (model.name, control.target.kind)
        head = ".".join(parts[:i])
        if head in table and not _children(table, head):
            if "mapping" not in table[head][1]:
                raise ConfigError(key, f"a documented key ({head} has no sub-keys)", parts[i])
            names = _KNOB_KEYS.get(head)  # mappings keyed by knob name take only those
            if names is not None and (len(parts) > i + 1 or parts[i] not in names):
                raise unknown_name_error(key, parts[i], names, f"keys of {head}")
            return _text(table[head]) + f"\n  ({key} is a key inside {head}; see above)"
    parent = ".".join(parts[:-1])
    if parent and parent not in table:
        return explain_key(parent)  # raises for the first unknown part
    siblings = [k.rpartition(".")[2] for k in table if k.rpartition(".")[0] == parent]
    raise unknown_name_error(key, parts[-1], siblings, f"keys of {parent}" if parent else "sections")


def _explain_params(key: str, controller: str) -> str:
    cls = get_controller_class(controller, key="control.controller")
    where = f"controller {controller!r} ({cls.__module__}.{cls.__qualname__})"
    params = getattr(cls, "Params", None)
    if not (isinstance(params, type) and issubclass(params, Schema)):
        doc = textwrap.indent(inspect.cleandoc(cls.__doc__ or "(no docstring)"), "  ")
        return f"control.params of {where}: documented in its docstring\n{doc}"
    table = {e[0]: e for e in entries(params, "control.params")}
    if key == "control.params":
        return "\n".join([f"control.params of {where}:", *(_text(e) for e in table.values())])
    if key in table:
        return _block(table, key)
    name = key.removeprefix("control.params.")
    raise unknown_name_error(key, name, list(params.model_fields),
                             f"parameters of controller {controller!r}")


#: mappings keyed by knob name, and the keys they take
_KNOB_KEYS = {"control.initial": list(KNOB_NAMES), "control.bounds": [*KNOB_NAMES, "max_delta"]}

#: the kind a family takes when the config names none
_DEFAULT_KIND = {"reward": "exact", "control.target": "constant"}


def _explain_kind(key: str, title: str, family: str, registry: Any, config: Mapping[str, Any]) -> str:
    spec: Any = config
    for part in family.split("."):
        spec = spec.get(part) if isinstance(spec, Mapping) else None
    name = spec if isinstance(spec, str) else (spec or {}).get(title) if isinstance(spec, Mapping) \
        else None
    name = name or _DEFAULT_KIND.get(family)
    if family == "model" and isinstance(spec, Mapping) and "path" in spec:
        name, schema = "path", _pretrained()
    elif name is None:
        raise ConfigError(f"{family}.{title}", f"a {title} to document the keys of (give CONFIG or "
                          f"--set {family}.{title}=...; the {title}s: {', '.join(registry.names())})"
                          + (", or model.path" if family == "model" else ""))
    else:
        schema = registry.get(name, f"{family}.{title}")
    table = {e[0]: e for e in _with_warmup(entries(schema, family), schema, family)}
    if key in table:
        which = "a model given by path" if name == "path" else f"{family} {title} {name!r}"
        return f"{_text(table[key])}\n  ({which})"
    field = key.removeprefix(f"{family}.")
    raise unknown_name_error(key, field, list(schema.model_fields), f"keys of {family} {title} {name!r}")


def _text(e: Entry, section: bool = False) -> str:
    key, kind, default, doc = e
    what = "section" if section else (
        f"{kind}, required" if default == "(required)" else f"{kind}, default {show(default)}")
    body = textwrap.fill(doc, 96, initial_indent="  ", subsequent_indent="  ") if doc else ""
    return f"{key} ({what})" + (f"\n{body}" if body else "")


def _block(table: dict[str, Entry], key: str) -> str:
    """``key`` and, for a section, every key under it."""
    below = _children(table, key)
    return "\n".join([_text(table[key], section=bool(below)), *(_text(e) for e in below)])


# --- docs/config.md ---------------------------------------------------------------------------

def markdown() -> str:
    """docs/config.md: one table per section (key, type, default, description)."""
    top = list(entries())
    sections = {k.partition(".")[0] for k, *_ in top if "." in k}
    rows = [(k, "section", "(below)", d) if k in sections else (k, t, v, d)
            for k, t, v, d in top if "." not in k]
    blocks = [INTRO, "## Sections", table(rows)]
    for key, *_ in top:
        if key in sections:
            inner = [e for e in top if e[0].rpartition(".")[0] == key]
            about = " ".join((TrainConfig.model_fields[key].annotation.__doc__ or "").split())
            blocks += [f"## `{key}`", about, table(inner, strip=f"{key}.")]
    for title, key, registry in _families():
        blocks += [f"## `{key}` by {title}",
                   f"The keys of each {title} of `{key}` (a wrong key for the {title} named is an error)."]
        kinds = dict(_own(registry))
        if key == "model":
            kinds["path: ..."] = _pretrained()  # any Hugging Face model, by path
        for name, schema in kinds.items():
            rows = [e for e in _with_warmup(entries(schema), schema) if e[0] not in ("kind", "name")]
            blocks += [f"### `{name}`", " ".join((schema.__doc__ or "").split()), table(rows)]
    blocks += ["## `control.params` by controller",
               "Each controller's own keyword arguments (`regulator config CONFIG --explain "
               "control.params` for the controller CONFIG names)."]
    for name in _builtin_controllers():
        cls = get_controller_class(name)
        params = getattr(cls, "Params", None)
        blocks.append(f"### `{name}`")
        if isinstance(params, type) and issubclass(params, Schema):
            blocks.append(table(list(entries(params))))
        else:
            blocks.append(f"Documented in the docstring of `{cls.__module__}.{cls.__qualname__}`.")
    return "\n\n".join(b.strip("\n") for b in blocks) + "\n"


def _families() -> list[tuple[str, str, Any]]:
    """(what a variant is called, the config key, its registry) for every ``kind:`` family."""
    from regulator.targets import TARGETS
    from trainer.models import MODELS
    from trainer.rewards import REWARDS
    from trainer.tasks import TASKS

    return [("name", "model", MODELS), ("kind", "task", TASKS), ("kind", "reward", REWARDS),
            ("kind", "control.target", TARGETS)]


def _pretrained() -> type[Schema]:
    from trainer.models import PretrainedSpec

    return PretrainedSpec


def _with_warmup(rows: Iterator[Entry], schema: type[Schema], prefix: str = "") -> list[Entry]:
    """A model's keys with ``warmup``'s own keys after it (``model.warmup.steps`` ...)."""
    from trainer.warmup import WarmupSpec

    out = list(rows)
    if "warmup" in schema.model_fields:
        out += list(entries(WarmupSpec, f"{prefix}.warmup" if prefix else "warmup"))
    return out


def _own(registry: Any) -> dict[str, type[Schema]]:
    """The kinds this project ships, by name (plugins installed here would make the docs drift)."""
    return {n: c for n, c in registry.load_all().items()
            if c.__module__.split(".")[0] in ("regulator", "trainer")}


def _builtin_controllers() -> list[str]:
    """The controllers this project ships (plugins installed here would make the docs drift)."""
    return [n for n in list_controllers()
            if get_controller_class(n).__module__.split(".")[0] in ("controllers", "envs")]


# --- the command ----------------------------------------------------------------------------

def config_main(config: str | None, overrides: Sequence[str] = (), explain: str | None = None
                ) -> int:
    """``regulator config``: print the resolved CONFIG, or document ``explain`` (a key, a
    section, or "" for every key)."""
    if explain and config is None and Path(explain).is_file():  # `--explain CONFIG`: every key
        config, explain = explain, ""
    if explain is not None:
        raw = apply_overrides(load_yaml(config) if config is not None else {}, list(overrides))
        # whose params --explain documents: only the name is read, so a control section still
        # being written (a target without its fields, params in progress) does not block it
        control = raw.get("control")
        controller = control.get("controller") if isinstance(control, Mapping) else None
        controller = controller if isinstance(controller, str) and controller else DEFAULT_CONTROLLER
        print(explain_key(explain.strip(), controller, raw))
        return 0
    if config is None:
        raise ConfigError("CONFIG", "a config to resolve (or --explain KEY)")
    cfg = TrainConfig.from_mapping(apply_overrides(load_yaml(config), list(overrides)))
    print(yaml.safe_dump(cfg.resolved(), sort_keys=False), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return markdown_main(
        argv, prog="python -m trainer.config_docs",
        description=__doc__, page="docs/config.md", markdown=markdown)


if __name__ == "__main__":
    raise SystemExit(main())
