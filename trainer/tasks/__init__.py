"""Tasks: where prompts and reference answers come from.

``make_task(spec, key="task")`` builds one from the ``task:`` config section (a string is a kind
with its defaults); ``parse_task(spec, key)`` returns the validated spec, whose ``resolved()`` fills
in every default. Each kind is a ``TaskSpec`` in the ``TASKS`` registry, looked up by name rather
than a closed tagged union so a plugin can publish a task kind (entry-point group
``regulator.tasks``). Built-in kinds:

- generated (``trainer.tasks.generated``): ``max_digits`` (k), ``parity`` (k), ``sort_digits``
  (k), ``addition`` (digits, terms), ``countdown`` (n, max_number, max_target); common keys
  ``seed``, ``format`` (compact|natural), ``eval_fraction``, ``cot``.
- user files (``trainer.tasks.files``): ``jsonl`` and ``parquet`` with ``path`` (+ ``eval_path``,
  ``eval_fraction``, ``prompt_field``, ``answer_field``).

The interface (what the trainer relies on): ``Task.example(split, index) -> Example``,
deterministic given (split, index, task seed); ``Task.num_examples(split)`` (None when
unbounded; ``__len__`` is the train size and is None for generated tasks, so prefer
``num_examples``); ``Task.demonstration(ex, rng, error_rate=0.0)`` for warm-up;
``Task.alphabet`` (characters for the char tokenizer, None = any text); ``Task.describe()``
(the resolved spec, for cache keys and logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from regulator.kinds import parse_kind

from .base import SPLITS, TASKS, Example, Task, TaskSpec
from .files import FileSpec, FileTask
from .generated import GENERATED, GeneratedSpec, eval_countdown

KINDS = tuple(TASKS.names())

__all__ = ["KINDS", "SPLITS", "TASKS", "Example", "FileSpec", "FileTask", "GeneratedSpec",
           "Task", "TaskSpec", "eval_countdown", "make_task", "parse_task", "GENERATED"]


def parse_task(spec: Mapping[str, Any] | str | TaskSpec, key: str = "task") -> TaskSpec:
    """The validated spec of a task (a bare string is a kind with its defaults); a ConfigError
    names the offending key."""
    if isinstance(spec, str):
        spec = {"kind": spec}
    return parse_kind(TASKS, spec, key)


def make_task(spec: Mapping[str, Any] | str | TaskSpec, key: str = "task") -> Task:
    """Build a task from its config mapping; a ConfigError names the offending key."""
    return parse_task(spec, key).build(key)
