"""Documentation of Schema models: readable (key, type, default, description) entries and
Markdown tables, for the generated config references and ``regulator config --explain``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import yaml

from regulator.schema import Schema, field_docs

#: (key, type, default, description) of one documented key
Entry = tuple[str, str, Any, str]

#: readable names for the types field_docs reports
_TYPES = {
    "dict[str, Any]": "mapping", "dict[str, Any] | None": "mapping", "list[Any]": "list",
    "list[int]": "list of int", "tuple[float, float]": "[float, float]",
    "tuple[str, ...]": "knob name or list of knob names", "Knobs": "mapping knob -> value",
    "KnobBounds": "mapping knob -> [min, max]",
}


def entries(model: type[Schema], prefix: str = "") -> Iterator[Entry]:
    """Every key of ``model`` with its readable type, default and one-line description."""
    for key, kind, default, doc in field_docs(model, prefix):
        yield key, _TYPES.get(kind, kind), default, " ".join(doc.split())


def show(v: Any) -> str:
    """A default as it would be written in YAML (flow style, one line)."""
    if v == "(required)":
        return v
    text = yaml.safe_dump(v, default_flow_style=True, sort_keys=False, width=10**6)
    return text.strip().removesuffix("\n...")


def table(rows: list[Entry], strip: str = "") -> str:
    """A Markdown table of entries (``strip``: a key prefix left out of the first column)."""
    def cell(s: str) -> str:
        return s.replace("|", "\\|")

    out = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, kind, default, doc in rows:
        shown = default if default in ("(required)", "(below)") else f"`{cell(show(default))}`"
        out.append(f"| `{key.removeprefix(strip)}` | {cell(kind)} | {shown} | {cell(doc)} |")
    return "\n".join(out)


def model_section(title: str, model: type[Schema], intro: str = "") -> str:
    """``## title``, the model's docstring (or ``intro``) and the table of its keys."""
    about = intro or " ".join((model.__doc__ or "").split())
    return "\n\n".join([f"## {title}", about, table(list(entries(model)))])


def markdown_main(argv: Sequence[str] | None, *, prog: str, description: str | None, page: str,
                  markdown: Callable[[], str]) -> int:
    """``python -m PROG --markdown``: print a generated reference page (``page`` names it)."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--markdown", action="store_true", help=f"print {page}")
    if not p.parse_args(argv).markdown:
        p.print_help()
        return 2
    sys.stdout.write(markdown())
    return 0
