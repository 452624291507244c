"""The task interface: an indexable, deterministic source of (prompt, answer) examples.

A task maps ``(split, index)`` to an :class:`Example`, deterministically given its seed, so a
prompt stream is resumable from a position alone. Generated tasks are unbounded (``len`` is None)
and split their instance space into disjoint train/eval parts by a seeded hash where the space
is large enough (see :class:`GeneratedTask`); file tasks hold a fixed list per split.
"""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass, field
from typing import Any

from regulator.errors import ConfigError
from regulator.kinds import KindSchema, schema_check
from regulator.registries import Registry

SPLITS = ("train", "eval")


@dataclass(frozen=True)
class Example:
    """One prompt with its reference answer.

    prompt: the raw question text (no chat template applied).
    answer: the reference answer (what the built-in rewards compare against).
    meta:   anything task-specific (kept small, JSON-able), e.g. countdown's numbers and target.
    """

    prompt: str
    answer: str
    meta: dict = field(default_factory=dict)


def check_split(split: str, key: str = "split") -> str:
    if split not in SPLITS:
        raise ConfigError(key, f"one of {', '.join(SPLITS)}", split)
    return split


def stable_unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from ``parts`` (crc32; stable across runs and machines)."""
    return zlib.crc32(":".join(map(str, parts)).encode()) / 2**32


class Task:
    """Base class. Subclasses set ``name`` and implement ``example``; see the module docstring.

    ``alphabet`` is the set of characters prompts and answers can contain (used to size the
    character-level tokenizer); None means "any text" (the tokenizer then uses printable ASCII).
    """

    name: str = "task"
    alphabet: str | None = None
    #: the answer-extraction rule the built-in rewards use by default for this task
    answer_rule: str = "auto"

    def example(self, split: str, index: int) -> Example:  # pragma: no cover - abstract
        raise NotImplementedError

    def num_examples(self, split: str) -> int | None:
        """How many examples the split holds; None for unbounded generated tasks."""
        return None

    def __len__(self) -> int | None:  # type: ignore[override]
        """Size of the train split; None for generated tasks (so use ``num_examples``:
        Python's ``len()`` raises TypeError on None)."""
        return self.num_examples("train")

    def demonstration(self, ex: Example, rng: random.Random, error_rate: float = 0.0,
                      error_mode: str = "feature") -> str:
        """A completion for supervised warm-up. With ``error_rate`` > 0 the demonstration is
        wrong on a fixed ``error_rate`` fraction of prompts in a task-specific systematic way
        (``error_mode``: "feature" = a learnable feature of the prompt picks them, "hash" = a
        hash of the prompt), so the warmed model is confident and imperfect. The base version
        (file tasks) always returns the reference answer."""
        return ex.answer

    def describe(self) -> dict[str, Any]:
        """The spec this task was built from, defaults filled in (JSON-able; used in cache keys
        and logs)."""
        spec = getattr(self, "spec", None)
        return spec.resolved() if isinstance(spec, KindSchema) else {"kind": self.name}


class TaskSpec(KindSchema):
    """Base of the task kinds' Schemas: the fields are the kind's keys, ``build`` the Task."""

    kind: str
    """The task, a name in the task registry (max_digits, parity, jsonl, ...)."""

    def build(self, key: str = "task") -> Task:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


TASKS: Registry[type[TaskSpec]] = Registry("task kinds", group="regulator.tasks",
                                           check=schema_check(TaskSpec))
