"""User data from local JSONL or Parquet files with a prompt and an answer per row.

Spec: ``{kind: jsonl|parquet, path: FILE, eval_path: FILE?, eval_fraction: 0.0, seed: 0,
prompt_field: prompt, answer_field: answer}``. Field names may be dotted paths into nested
records (``reward_model.ground_truth``); a prompt given as a list of chat messages
(``[{role, content}, ...]``) uses the content of the last user message. That makes the paper's
DAPO-Math-17K Parquet file usable as is::

    task: {kind: parquet, path: data/dapo-math-17k.parquet, answer_field: reward_model.ground_truth}

Eval split: ``eval_path`` if given; else, with ``eval_fraction`` > 0, a seeded held-out part of
``path`` (disjoint from train); else the train rows themselves. Parquet needs ``pyarrow``
(not a dependency of this package): a clear ConfigError says so when it is missing.
Other scalar fields of a row are kept in ``Example.meta`` (long strings dropped).
Both kinds share one Schema, ``FileSpec``, registered in ``trainer.tasks.TASKS``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field

from regulator.errors import ConfigError

from .base import TASKS, Example, Task, TaskSpec, check_split

MAX_ALPHABET = 200
MAX_META_STR = 200


def _field(row: Mapping[str, Any], dotted: str) -> Any:
    node: Any = row
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _prompt_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(m, Mapping) for m in value):
        users = [m for m in value if m.get("role") == "user"] or list(value)
        content = users[-1].get("content")
        return content if isinstance(content, str) else None
    return None


def _answer_text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, (list, tuple)) and len(value) == 1:
        return _answer_text(value[0])
    return None


def _read_jsonl(path: Path, key: str) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(key, "a JSONL file (one JSON object per line)",
                                  f"{path}: line {n}: {e.msg}") from None
            if not isinstance(row, dict):
                raise ConfigError(key, "a JSON object on every line", f"{path}: line {n}")
            rows.append(row)
    return rows


def _read_parquet(path: Path, key: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(key, "pyarrow installed to read Parquet files", str(path),
                          hint="pip install pyarrow, or convert the file to JSONL") from None
    return pq.read_table(path).to_pylist()


@TASKS.register("jsonl")
@TASKS.register("parquet")
class FileSpec(TaskSpec):
    """Examples from a local JSONL or Parquet file, one per row."""

    kind: Literal["jsonl", "parquet"]
    path: str
    """the local file of the train split"""
    eval_path: str | None = None
    """a local file of the eval split (default: held out of ``path`` by ``eval_fraction``)"""
    eval_fraction: Annotated[float, Field(ge=0.0, le=0.9)] = 0.0
    """share of ``path``'s rows held out for eval when there is no ``eval_path`` (0: eval on the
    train rows)"""
    seed: int = 0
    """seed of the held-out draw"""
    prompt_field: str = "prompt"
    """the row's prompt: a field name or dotted path (a list of chat messages uses the last user
    message)"""
    answer_field: str = "answer"
    """the row's reference answer: a field name or dotted path"""

    def build(self, key: str = "task") -> Task:
        return FileTask(self, key)


class FileTask(Task):
    """Examples read once from a local file (see the module docstring)."""

    def __init__(self, spec: FileSpec, key: str = "task") -> None:
        kind = spec.kind
        self.name, self.spec, self.seed = kind, spec, spec.seed
        self.prompt_field, self.answer_field = spec.prompt_field, spec.answer_field
        frac = spec.eval_fraction
        train = self._load(spec.path, f"{key}.path")
        if spec.eval_path is not None:
            evals = self._load(spec.eval_path, f"{key}.eval_path")
        elif frac > 0:
            order = list(range(len(train)))
            random.Random(f"{kind}:{self.seed}:holdout").shuffle(order)
            n_eval = max(1, round(frac * len(train)))
            if n_eval >= len(train):
                raise ConfigError(f"{key}.eval_fraction", "a fraction leaving train examples", frac)
            held = set(order[:n_eval])
            evals = [train[i] for i in sorted(held)]
            train = [ex for i, ex in enumerate(train) if i not in held]
        else:
            evals = train
        self._rows = {"train": train, "eval": evals}
        chars = {c for ex in train + evals for c in ex.prompt + ex.answer}
        self.alphabet = "".join(sorted(chars)) if len(chars) <= MAX_ALPHABET else None

    def _load(self, path: str, key: str) -> list[Example]:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(key, f"an existing local .{self.name} file", str(path))
        rows = _read_jsonl(p, key) if self.name == "jsonl" else _read_parquet(p, key)
        out = []
        for n, row in enumerate(rows, 1):
            prompt = _prompt_text(_field(row, self.prompt_field))
            answer = _answer_text(_field(row, self.answer_field))
            if prompt is None or answer is None:
                missing = self.prompt_field if prompt is None else self.answer_field
                raise ConfigError(key, f"a text field {missing!r} in every row", f"{p}: row {n}")
            meta = {k: v for k, v in row.items()
                    if k not in (self.prompt_field, self.answer_field)
                    and (isinstance(v, (int, float, bool)) or isinstance(v, str) and len(v) <= MAX_META_STR)}
            out.append(Example(prompt, answer, meta))
        if not out:
            raise ConfigError(key, "a file with at least one example", str(p))
        return out

    def num_examples(self, split: str) -> int:
        return len(self._rows[check_split(split)])

    def example(self, split: str, index: int) -> Example:
        rows = self._rows[check_split(split)]
        if not 0 <= index < len(rows):
            raise IndexError(f"{self.name}: {split} index {index} out of range 0..{len(rows) - 1}")
        return rows[index]
