"""Tasks: where prompts and reference answers come from.

``make_task(spec, key="task")`` builds one from the ``task:`` config section. Kinds:

- generated (``trainer.tasks.generated``): ``max_digits`` (k), ``parity`` (k), ``sort_digits``
  (k), ``addition`` (digits, terms), ``countdown`` (n, max_number, max_target); common keys
  ``seed``, ``format`` (compact|natural), ``eval_fraction``, ``cot``.
- user files (``trainer.tasks.files``): ``jsonl`` and ``parquet`` with ``path`` (+ ``eval_path``,
  ``eval_fraction``, ``prompt_field``, ``answer_field``).

The interface (what the trainer relies on): ``Task.example(split, index) -> Example``,
deterministic given (split, index, task seed); ``Task.num_examples(split)`` (None when
unbounded; ``__len__`` is the train size and is None for generated tasks, so prefer
``num_examples``); ``Task.demonstration(ex, rng, error_rate=0.0)`` for warm-up;
``Task.alphabet`` (characters for the char tokenizer, None = any text); ``Task.describe()``.
Additions beyond the first interface: ``num_examples``, ``alphabet``, ``answer_rule``,
``describe``, and the ``error_rate`` / ``error_mode`` arguments of ``demonstration``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regulator.errors import ConfigError, unknown_name_error

from .base import SPLITS, Example, Task, spec_dict
from .generated import GENERATED, eval_countdown

FILE_KINDS = ("jsonl", "parquet")
KINDS = tuple(GENERATED) + FILE_KINDS

__all__ = ["Example", "Task", "make_task", "KINDS", "SPLITS", "eval_countdown"]


def make_task(spec: Mapping[str, Any] | str, key: str = "task") -> Task:
    """Build a task from its config mapping; a ConfigError names the offending key."""
    s = spec_dict(spec, key)
    kind = s.get("kind")
    if kind is None:
        raise ConfigError(f"{key}.kind", f"one of the task kinds: {', '.join(KINDS)}", None)
    if not isinstance(kind, str):
        raise unknown_name_error(f"{key}.kind", kind, KINDS, "task kinds")
    if kind in GENERATED:
        return GENERATED[kind](s, key)
    if kind in FILE_KINDS:
        from .files import FileTask

        return FileTask(s, key, kind)
    raise unknown_name_error(f"{key}.kind", kind, KINDS, "task kinds")
