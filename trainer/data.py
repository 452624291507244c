"""PromptStream: the ordered, resumable sequence of prompt batches a run consumes.

Position ``p`` of a stream with seed ``s`` maps to a task index without any hidden state, so the
stream's whole state is its position (``state_dict() == {"position": p, ...}``):

- unbounded (generated) tasks: index = s * 2**32 + p, so different run seeds see different
  prompts and the same seed sees the same ones;
- finite (file) tasks: epoch e = p // N visits the rows in the permutation drawn from
  ``Random("<seed>:<epoch>")``; every row is seen once per epoch.

For evaluation use a fixed seed (e.g. 0) so every run scores the same eval prompts.
"""

from __future__ import annotations

import random
from typing import Any

from trainer.tasks import Example, Task
from trainer.tasks.base import check_split


class PromptStream:
    """Yields ``batch_size`` examples per call, in a deterministic order; resumable."""

    def __init__(self, task: Task, split: str, seed: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.task = task
        self.split = check_split(split)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.position = 0
        self._size = task.num_examples(split)
        self._perm: tuple[int, list[int]] | None = None  # (epoch, permutation) cache

    def _index(self, p: int) -> int:
        if self._size is None:
            return self.seed * 2**32 + p
        epoch, offset = divmod(p, self._size)
        if self._perm is None or self._perm[0] != epoch:
            order = list(range(self._size))
            random.Random(f"{self.seed}:{epoch}").shuffle(order)
            self._perm = (epoch, order)
        return self._perm[1][offset]

    def next_batch(self) -> list[Example]:
        out = [self.task.example(self.split, self._index(self.position + i))
               for i in range(self.batch_size)]
        self.position += self.batch_size
        return out

    @property
    def epoch(self) -> int:
        return 0 if self._size is None else self.position // self._size

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position, "seed": self.seed, "split": self.split,
                "batch_size": self.batch_size}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        if d.get("seed", self.seed) != self.seed or d.get("split", self.split) != self.split:
            raise ValueError(f"PromptStream state for seed {d.get('seed')} split {d.get('split')!r} "
                             f"loaded into seed {self.seed} split {self.split!r}")
        self.position = int(d["position"])
