"""Generated tasks with verifiable answers: max of k digits, parity, sorting, addition, countdown.

Every task draws instance ``(split, index)`` from ``random.Random("<name>:<seed>:<split>:<index>")``
(string seeds are hashed with SHA-512 by ``random``: stable across runs and machines).

Splits: an instance belongs to the eval split when ``crc32(seed, name, instance) < eval_fraction``
and to train otherwise; each split rejects instances of the other, so train and eval are
disjoint. Where the instance space is too small for that (fewer than 16 eval instances, e.g.
parity of 4 bits), both splits draw from the whole space (``disjoint`` is then False).

Formats: ``compact`` (short prompts over a small alphabet, for the character-level model:
``"31415="`` -> ``"5"``) and ``natural`` (an English question, for instruct models). With
``cot: true`` (compact only) the answer carries a short worked trace ending in ``#`` before the
final answer (``"4+8=12,3+5+1=9#92"``); the answer rule ``auto`` reads what follows the last ``#``.

Systematic errors (``demonstration(..., error_rate, error_mode)``): on a fixed ``error_rate``
fraction of prompts the demonstration makes a task-typical mistake (max -> the second-largest
digit, parity -> flipped, sort -> first unequal neighbours swapped, addition -> carries
forgotten, countdown -> one operator changed). ``error_mode="feature"`` picks those prompts by a
learnable feature of the prompt (``error_unit``), so a warmed model is confidently wrong on a
recognisable subset; ``"hash"`` picks them by a hash of the prompt (unlearnable).

Each kind is a ``GeneratedSpec`` subclass registered in ``trainer.tasks.TASKS``.
"""

from __future__ import annotations

import ast
import operator
import random
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, model_validator

from regulator.errors import ConfigError

from .base import TASKS, Example, Task, TaskSpec, check_split, stable_unit

DIGITS = "0123456789"
MIN_EVAL_INSTANCES = 16


class GeneratedSpec(TaskSpec):
    """The keys every generated task has."""

    #: whether the kind has a ``cot: true`` form
    supports_cot: ClassVar[bool] = True

    seed: int = 0
    """seed of the instance stream and of the train/eval split"""
    format: Literal["compact", "natural"] = "compact"
    """``compact`` (short prompts for the character-level model) or ``natural`` (English
    questions for instruct models)"""
    eval_fraction: Annotated[float, Field(ge=0.0, le=0.5)] = 0.1
    """share of the instance space held out for the eval split"""
    cot: bool = False
    """answers carry a worked trace ending in ``#`` before the final answer (compact only)"""

    @model_validator(mode="after")
    def _cot(self) -> GeneratedSpec:
        if self.cot and (self.format != "compact" or not self.supports_cot):
            raise ConfigError("cot", f"false for {self.kind} in format {self.format!r}", True)
        return self


class GeneratedTask(Task):
    """Base for generated tasks: seeded sampling, hashed split, compact/natural rendering."""

    def __init__(self, spec: GeneratedSpec) -> None:
        self.spec = spec
        self.seed, self.format = spec.seed, spec.format
        self.eval_fraction, self.cot = spec.eval_fraction, spec.cot
        self.configure(spec)
        self.disjoint = self.space_size() * self.eval_fraction >= MIN_EVAL_INSTANCES
        self.alphabet = self.compact_alphabet() if self.format == "compact" else None

    # -- subclass hooks ---------------------------------------------------------------------
    def configure(self, spec: Any) -> None:
        """Read task-specific keys from the validated spec."""

    def space_size(self) -> int:
        raise NotImplementedError

    def sample(self, rng: random.Random) -> Any:
        raise NotImplementedError

    def instance_key(self, inst: Any) -> str:
        return repr(inst)

    def render(self, inst: Any) -> Example:
        raise NotImplementedError

    def wrong_answer(self, ex: Example) -> str:
        raise NotImplementedError

    def compact_alphabet(self) -> str:
        return DIGITS + "=#,+"

    def error_unit(self, ex: Example) -> float:
        """A learnable feature of the prompt in [0, 1): the first two digits as a fraction."""
        d = ex.meta["digits"]
        return int(d[:2]) / 10 ** len(d[:2])

    # -- the Task interface -----------------------------------------------------------------
    def in_eval(self, inst: Any) -> bool:
        return stable_unit(self.seed, self.name, self.instance_key(inst)) < self.eval_fraction

    def example(self, split: str, index: int) -> Example:
        check_split(split)
        rng = random.Random(f"{self.name}:{self.seed}:{split}:{index}")
        want_eval = split == "eval"
        for _ in range(10_000):
            inst = self.sample(rng)
            if not self.disjoint or self.in_eval(inst) == want_eval:
                return self.render(inst)
        raise RuntimeError(f"{self.name}: no {split} instance found (eval_fraction too extreme?)")

    def demonstration(self, ex: Example, rng: random.Random, error_rate: float = 0.0,
                      error_mode: str = "feature") -> str:
        if error_rate <= 0:
            return ex.answer
        if error_mode == "feature":
            u = self.error_unit(ex)
        elif error_mode == "hash":
            u = stable_unit("error", self.seed, ex.prompt)
        else:
            raise ValueError(f"error_mode: expected 'feature' or 'hash', got {error_mode!r}")
        return self.wrong_answer(ex) if u < error_rate else ex.answer



def _digits(rng: random.Random, k: int) -> str:
    return "".join(rng.choice(DIGITS) for _ in range(k))


def _spaced(s: str) -> str:
    return ", ".join(s)


class MaxDigits(GeneratedTask):
    """The largest of k random digits. ``"31415="`` -> ``"5"``; cot: running max ``"33445#5"``."""

    name = "max_digits"

    def configure(self, spec: MaxDigitsSpec) -> None:
        self.k = spec.k

    def space_size(self) -> int:
        return 10**self.k

    def sample(self, rng: random.Random) -> str:
        return _digits(rng, self.k)

    def _answer(self, d: str, final: str) -> str:
        if not self.cot:
            return final
        run, best = [], "0"
        for c in d:
            best = max(best, c)
            run.append(best)
        return "".join(run) + "#" + final

    def render(self, d: str) -> Example:
        if self.format == "compact":
            prompt = d + "="
        else:
            prompt = f"What is the largest digit among {_spaced(d)}? Answer with the digit only."
        return Example(prompt, self._answer(d, max(d)), {"digits": d})

    def wrong_answer(self, ex: Example) -> str:
        d = ex.meta["digits"]
        distinct = sorted(set(d))
        wrong = distinct[-2] if len(distinct) > 1 else str((int(distinct[0]) + 1) % 10)
        return self._answer(d, wrong)


class Parity(GeneratedTask):
    """Parity of k bits: ``"011010="`` -> ``"1"`` (odd number of ones); cot: running parity."""

    name = "parity"

    def configure(self, spec: ParitySpec) -> None:
        self.k = spec.k

    def space_size(self) -> int:
        return 2**self.k

    def sample(self, rng: random.Random) -> str:
        return "".join(rng.choice("01") for _ in range(self.k))

    def _answer(self, bits: str, flip: bool = False) -> str:
        p = bits.count("1") % 2 ^ int(flip)
        if not self.cot:
            return str(p)
        run, acc = [], 0
        for b in bits:
            acc ^= int(b)
            run.append(str(acc))
        run[-1] = str(p)
        return "".join(run) + "#" + str(p)

    def render(self, bits: str) -> Example:
        if self.format == "compact":
            prompt = bits + "="
        else:
            prompt = (f"Is the number of 1s in {_spaced(bits)} even or odd? "
                      "Answer 0 for even or 1 for odd.")
        return Example(prompt, self._answer(bits), {"bits": bits})

    def wrong_answer(self, ex: Example) -> str:
        return self._answer(ex.meta["bits"], flip=True)

    def error_unit(self, ex: Example) -> float:
        """The leading (up to 6) bits as a binary fraction."""
        b = ex.meta["bits"][:6]
        return int(b, 2) / 2 ** len(b)


class SortDigits(GeneratedTask):
    """Sort k digits ascending: ``"3141="`` -> ``"1134"``. No cot form."""

    name = "sort_digits"

    def configure(self, spec: SortDigitsSpec) -> None:
        self.k = spec.k

    def space_size(self) -> int:
        return 10**self.k

    def sample(self, rng: random.Random) -> str:
        return _digits(rng, self.k)

    def render(self, d: str) -> Example:
        if self.format == "compact":
            prompt = d + "="
        else:
            prompt = f"Sort the digits {_spaced(d)} in ascending order. Answer with the digits only."
        return Example(prompt, "".join(sorted(d)), {"digits": d})

    def wrong_answer(self, ex: Example) -> str:
        s = list(ex.answer)
        for i in range(len(s) - 1):
            if s[i] != s[i + 1]:
                s[i], s[i + 1] = s[i + 1], s[i]
                return "".join(s)
        s[0] = str((int(s[0]) + 1) % 10)
        return "".join(s)


class Addition(GeneratedTask):
    """Sum of ``terms`` numbers of ``digits`` digits: ``"34+58="`` -> ``"92"``.

    cot: column sums from the right with the carry, ``"4+8=12,3+5+1=9#92"``.
    """

    name = "addition"

    def configure(self, spec: AdditionSpec) -> None:
        self.digits, self.terms = spec.digits, spec.terms

    def space_size(self) -> int:
        return 10 ** (self.digits * self.terms)

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        lo = 10 ** (self.digits - 1) if self.digits > 1 else 0
        return tuple(rng.randint(lo, 10**self.digits - 1) for _ in range(self.terms))

    def _answer(self, nums: tuple[int, ...], carry_on: bool = True) -> str:
        """The sum written column by column; ``carry_on=False`` forgets every carry."""
        cols, carry, out = [], 0, []
        for i in range(self.digits):
            ds = [n // 10**i % 10 for n in nums]
            total = sum(ds) + carry
            terms = "+".join(map(str, ds)) + (f"+{carry}" if carry else "")
            cols.append(f"{terms}={total}")
            out.append(total % 10)
            carry = total // 10 if carry_on else 0
        final = (str(carry) if carry else "") + "".join(map(str, reversed(out)))
        final = str(int(final))
        return ",".join(cols) + "#" + final if self.cot else final

    def render(self, nums: tuple[int, ...]) -> Example:
        if self.format == "compact":
            prompt = "+".join(map(str, nums)) + "="
        else:
            prompt = f"What is {' + '.join(map(str, nums))}? Answer with the number only."
        return Example(prompt, self._answer(nums), {"terms": list(nums)})

    def error_unit(self, ex: Example) -> float:
        """The first term's leading two digits as a fraction."""
        first = str(ex.meta["terms"][0]).zfill(self.digits)[:2]
        return int(first) / 10 ** len(first)

    def wrong_answer(self, ex: Example) -> str:
        nums = tuple(ex.meta["terms"])
        wrong = self._answer(nums, carry_on=False)
        if wrong == ex.answer:  # no carry anywhere: be off by one in the units instead
            head, sep, final = wrong.rpartition("#")
            wrong = head + sep + str(int(final) + 1)
        return wrong


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv}


def eval_countdown(expr: str, numbers: list[int] | tuple[int, ...]) -> float | None:
    """Value of ``expr`` if it is + - * / over exactly the given numbers (each used once), else
    None. Parsed with ``ast`` (no ``eval``); division by zero gives None."""
    expr = expr.strip().replace("×", "*").replace("x", "*").rstrip(".")
    if not expr or len(expr) > 200:
        return None
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None
    used: list[int] = []

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            used.append(node.value)
            return node.value
        raise ValueError("not allowed")

    try:
        value = walk(tree)
    except (ValueError, ZeroDivisionError):
        return None
    return value if sorted(used) == sorted(numbers) else None


class Countdown(GeneratedTask):
    """Reach ``target`` with all of ``n`` numbers (each once) and + - *: ``"3,5,7>22="`` ->
    ``"3*5+7"``. Any correct expression counts: use the ``countdown`` reward (exact match would
    only accept the reference). No cot form."""

    name = "countdown"

    def configure(self, spec: CountdownSpec) -> None:
        self.n, self.max_number, self.max_target = spec.n, spec.max_number, spec.max_target

    def compact_alphabet(self) -> str:
        return DIGITS + "=#,+-*()>"

    def space_size(self) -> int:
        return self.max_number**self.n

    def sample(self, rng: random.Random) -> tuple[tuple[int, ...], str]:
        while True:
            nums = [rng.randint(1, self.max_number) for _ in range(self.n)]
            parts = [str(x) for x in nums]
            rng.shuffle(parts)
            expr = parts[0]
            for p in parts[1:]:
                op = rng.choice("+-*")
                # parenthesise the running expression before a product, so '*' binds as read
                expr = f"({expr}){op}{p}" if op == "*" and ("+" in expr or "-" in expr) else f"{expr}{op}{p}"
            value = eval_countdown(expr, nums)
            if value is not None and 1 <= value <= self.max_target:
                return tuple(nums), expr

    def instance_key(self, inst: tuple[tuple[int, ...], str]) -> str:
        nums, expr = inst
        return f"{sorted(nums)}>{int(eval_countdown(expr, nums))}"

    def render(self, inst: tuple[tuple[int, ...], str]) -> Example:
        nums, expr = inst
        target = int(eval_countdown(expr, nums))
        if self.format == "compact":
            prompt = ",".join(map(str, nums)) + f">{target}="
        else:
            prompt = (f"Using the numbers {', '.join(map(str, nums))}, each exactly once, and the "
                      f"operations + - * and parentheses, write an expression equal to {target}. "
                      "Answer with the expression only.")
        return Example(prompt, expr, {"numbers": list(nums), "target": target})

    def error_unit(self, ex: Example) -> float:
        """The first number's position in 1..max_number as a fraction."""
        return (ex.meta["numbers"][0] - 1) / self.max_number

    def wrong_answer(self, ex: Example) -> str:
        for i, c in enumerate(ex.answer):
            if c in "+-*":
                for alt in "+-*":
                    cand = ex.answer[:i] + alt + ex.answer[i + 1:]
                    if alt != c and eval_countdown(cand, ex.meta["numbers"]) != ex.meta["target"]:
                        return cand
        return ex.answer + "+1"


# ---------------------------------------------------------------------------------------------
# the kinds' keys


@TASKS.register("max_digits")
class MaxDigitsSpec(GeneratedSpec):
    """The largest of k random digits."""

    kind: Literal["max_digits"]
    k: Annotated[int, Field(ge=2, le=40)] = 5
    """how many digits"""

    def build(self, key: str = "task") -> Task:
        return MaxDigits(self)


@TASKS.register("parity")
class ParitySpec(GeneratedSpec):
    """Parity of k random bits."""

    kind: Literal["parity"]
    k: Annotated[int, Field(ge=1, le=64)] = 6
    """how many bits"""

    def build(self, key: str = "task") -> Task:
        return Parity(self)


@TASKS.register("sort_digits")
class SortDigitsSpec(GeneratedSpec):
    """k random digits sorted ascending."""

    supports_cot: ClassVar[bool] = False
    kind: Literal["sort_digits"]
    k: Annotated[int, Field(ge=2, le=40)] = 4
    """how many digits"""

    def build(self, key: str = "task") -> Task:
        return SortDigits(self)


@TASKS.register("addition")
class AdditionSpec(GeneratedSpec):
    """The sum of ``terms`` numbers of ``digits`` digits."""

    kind: Literal["addition"]
    digits: Annotated[int, Field(ge=1, le=18)] = 2
    """digits per number"""
    terms: Annotated[int, Field(ge=2, le=8)] = 2
    """how many numbers are added"""

    def build(self, key: str = "task") -> Task:
        return Addition(self)


@TASKS.register("countdown")
class CountdownSpec(GeneratedSpec):
    """Reach a target with all of ``n`` numbers, each once, and + - *."""

    supports_cot: ClassVar[bool] = False
    kind: Literal["countdown"]
    n: Annotated[int, Field(ge=2, le=6)] = 3
    """how many numbers"""
    max_number: Annotated[int, Field(ge=2, le=100)] = 10
    """numbers are drawn from 1..max_number"""
    max_target: Annotated[int, Field(ge=1)] = 100
    """targets are at most this (and at least 1)"""

    def build(self, key: str = "task") -> Task:
        return Countdown(self)


GENERATED = {cls.name: cls for cls in (MaxDigits, Parity, SortDigits, Addition, Countdown)}
