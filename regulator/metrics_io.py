"""metrics.jsonl: one JSON row of named floats per training step, one writer and one reader.

Every run writes it this way (``regulator train``, the bench's sim and trainer runs): JSON has
no NaN or infinity, so those are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"``,
and ``read_metrics`` turns them back into floats.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from regulator.errors import ConfigError

log = logging.getLogger(__name__)

_NON_FINITE = ("nan", "inf", "-inf")


def json_value(v: Any) -> Any:
    """``v`` as JSON can hold it: a non-finite float becomes its string ("nan", "inf", "-inf")."""
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def metrics_line(row: Mapping[str, Any]) -> str:
    """One metrics.jsonl line (with its newline) for ``row``."""
    return json.dumps({k: json_value(v) for k, v in row.items()}) + "\n"


def write_metrics(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write ``rows`` as a whole metrics.jsonl (its folder is created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(metrics_line(r) for r in rows)


def metric_lines(path: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, row as stored) for every line of a metrics.jsonl. A torn last line (what a crash
    or power cut mid-write leaves) is dropped with a warning; a damaged line before it is a
    ConfigError naming the file and the line."""
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError("not a metrics row")
        except ValueError:
            if i == len(lines) - 1:
                log.warning("%s: the last line is torn (%d characters, not a whole row); ignored",
                            path, len(line))
                break
            raise ConfigError(str(path), "a metrics.jsonl of one JSON row per line",
                              f"line {i + 1}: {line[:60]!r}") from None
        out.append((line, row))
    return out


def _value(v: Any) -> Any:
    if v is None:  # files written before NaN had one spelling
        return math.nan
    return float(v) if isinstance(v, str) and v in _NON_FINITE else v


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl, NaN and infinities as floats."""
    return [{k: _value(v) for k, v in row.items()} for _, row in metric_lines(path)]
