"""Verifiable rewards: exact match, numeric, math-verify, countdown, prefix, and user functions.

``make_reward(spec, key="reward")`` builds a :class:`RewardFn` from the ``reward:`` section
(a bare string is a kind; no kind means ``exact``); ``parse_reward`` returns the validated spec,
whose ``resolved()`` fills in every default::

    reward: {kind: exact}                        # extracted answer == reference
    reward: {kind: numeric, tolerance: 1e-6}     # |x - ref| <= tolerance + rel_tolerance*|ref|
    reward: {kind: math_verify}                  # math-verify equivalence (the `math` extra)
    reward: {kind: countdown}                    # expression over meta.numbers equals meta.target
    reward: {kind: prefix}                       # the completion starts with the answer
    reward: {kind: my_pkg.scoring:score, timeout: 5, params: {...}, isolation: thread}

Built-in kinds are ``RewardSpec`` subclasses in the ``REWARDS`` registry, looked up by name rather
than a closed tagged union so a plugin can publish a reward kind (entry-point group
``regulator.rewards``); a ``module:function`` kind is a user function (``UserRewardSpec``).

Answer extraction (``parse``; see :func:`extract_answer`) turns a completion (the decoded
response, which ends at EOS) into the answer text. Built-in rewards are 1.0 when correct, else 0.

User functions are called as ``fn(completion, example, **params)`` (or, ``batched``, once per
step as ``fn(completions, examples, **params)`` returning one number per completion) and return
a number or a bool. Python cannot stop a thread, so ``isolation`` chooses the containment:
``thread`` runs the calls on one persistent daemon thread and abandons a call past its timeout;
``process`` runs them in a persistent spawned worker (``trainer.reward_worker``) that is killed
and restarted on a timeout, and passes a plain object with ``prompt``, ``answer`` and ``meta``
instead of an ``Example``; ``none`` calls the function directly, without a timeout. A function
that raises, times out or returns a non-finite or non-number gets reward 0 and is counted in
``RewardResult.failures`` (logged as ``reward/failures``); the run goes on.
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from regulator.errors import ConfigError
from regulator.kinds import KindSchema, parse_kind, schema_check
from regulator.registries import Registry
from regulator.schema import parse, resolve
from trainer.reward_worker import serve
from trainer.tasks import Example, eval_countdown

log = logging.getLogger(__name__)

#: answer-extraction rules (see ``extract_answer``)
Rule = Literal["auto", "full", "boxed", "hash", "answer", "last_number"]


@dataclass
class RewardResult:
    """rewards: one float per completion (0/1 for the built-ins; 0 where the function failed).
    correct: whether each completion counts as correct (accuracy).
    failures: how many calls raised, timed out or returned garbage (``reward/failures``).
    errors: the first few failure messages, for the log."""

    rewards: list[float]
    correct: list[bool]
    failures: int = 0
    errors: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# answer extraction

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:/\d+)?")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (braces matched), or None."""
    start = text.rfind("\\boxed")
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0:
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j].strip()
    return None


def extract_answer(text: str, rule: str = "auto") -> str | None:
    """The answer part of a completion.

    full: the whole text, stripped. boxed: the last ``\\boxed{}``. hash: after the last ``#``
    (the generated tasks' trace marker, also GSM8K's ``####``). answer: the line after the last
    ``answer:`` (case-insensitive). last_number: the last number (commas in numbers removed).
    auto: boxed if there is one, else hash if there is a ``#``, else answer if there is an
    ``answer:``, else full. Returns None when the rule finds nothing.
    """
    if rule == "full":
        return text.strip()
    if rule == "boxed":
        return last_boxed(text)
    if rule == "hash":
        return text.rpartition("#")[2].strip() if "#" in text else None
    if rule == "answer":
        m = list(re.finditer(r"answer\s*(?:is)?\s*[:=]?", text, flags=re.IGNORECASE))
        return text[m[-1].end():].strip().split("\n")[0].strip().rstrip(".") if m else None
    if rule == "last_number":
        nums = _NUMBER.findall(re.sub(r"(?<=\d),(?=\d{3})", "", text))
        return nums[-1] if nums else None
    if rule == "auto":
        for r, present in (("boxed", "\\boxed" in text), ("hash", "#" in text),
                           ("answer", re.search("answer", text, re.IGNORECASE) is not None)):
            if present:
                got = extract_answer(text, r)
                if got:
                    return got
        return text.strip()
    raise ValueError(f"unknown answer rule {rule!r}")


def to_number(text: str | None) -> float | None:
    """A float from '12', '-3.5', '1/2', '1,234' or '$12.$'; None when it is not a number."""
    if text is None:
        return None
    t = text.strip().strip("$").rstrip(".").replace(",", "").strip()
    try:
        if "/" in t:
            a, b = t.split("/", 1)
            return float(a) / float(b)
        return float(t)
    except (ValueError, ZeroDivisionError):
        return None


# ---------------------------------------------------------------------------------------------
# timeouts


#: Python cannot stop a thread. A timed-out call under ``isolation: thread`` keeps running; one
#: that waits costs nothing, one that spins takes the CPU from training. The run stops (with
#: advice to use ``isolation: process``) once abandoned calls have burned this much CPU after
#: their timeout, or this many of them are alive at once.
MAX_ABANDONED_CPU_S = 2.0
MAX_ABANDONED_THREADS = 256
_abandoned: list[tuple[threading.Thread, float]] = []  # (thread, its CPU time when abandoned)


class RewardAbort(RuntimeError):
    """A reward function cannot be contained by its isolation: the run stops with this message."""


def _thread_cpu_s(t: threading.Thread) -> float:
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    except (OSError, AttributeError, TypeError):  # ended meanwhile, or no per-thread clock here
        return 0.0


def _check_abandoned() -> None:
    _abandoned[:] = [(t, c) for t, c in _abandoned if t.is_alive()]
    burned = sum(max(_thread_cpu_s(t) - c, 0.0) for t, c in _abandoned)
    if burned > MAX_ABANDONED_CPU_S or len(_abandoned) >= MAX_ABANDONED_THREADS:
        raise RewardAbort(f"{len(_abandoned)} reward calls are still running past their timeout "
                          f"({burned:.1f} CPU s since) and a thread cannot be stopped; use "
                          "reward.isolation: process, which kills a call that overruns")


class _Batch:
    """Calls handed to a reward thread at once, and what came back (values or exceptions)."""

    def __init__(self, calls: list[tuple]) -> None:
        self.calls, self.results = calls, []  # results[i] belongs to calls[i]
        self.started_at, self.started_index = 0.0, -1  # when calls[started_index] began
        self.cancelled = False
        self.cond = threading.Condition()


class ThreadRunner:
    """A user function on one persistent daemon thread; a whole batch of calls per hand-off.

    Every call keeps its own timeout: the caller waits for call i at most ``timeout`` seconds
    after it started. A call that overruns is abandoned with its thread (Python cannot stop a
    thread), counted for ``RewardAbort``, and a fresh thread takes the rest of the batch.
    ``sys.exit`` or ``KeyboardInterrupt`` raised by the function is its failure, never the
    run's end. Costs one hand-off per batch instead of a thread per call.
    """

    def __init__(self, fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.fn, self.kwargs = fn, kwargs
        self._inbox: queue.SimpleQueue[_Batch] | None = None
        self._thread: threading.Thread | None = None

    def _serve(self, inbox: queue.SimpleQueue[_Batch]) -> None:
        while True:
            batch = inbox.get()
            for i, args in enumerate(batch.calls):
                with batch.cond:
                    if batch.cancelled:
                        return  # abandoned: this thread takes no more work
                    batch.started_at, batch.started_index = time.monotonic(), i
                try:
                    value: Any = self.fn(*args, **self.kwargs)
                except (SystemExit, KeyboardInterrupt) as e:
                    value = RuntimeError(f"the reward function raised {type(e).__name__}({e})")
                except BaseException as e:  # handed back to the caller
                    value = e
                with batch.cond:
                    if batch.cancelled:
                        return
                    batch.results.append(value)
                    batch.cond.notify()

    def _ensure_thread(self) -> queue.SimpleQueue[_Batch]:
        if self._thread is None:
            self._inbox = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._serve, args=(self._inbox,), daemon=True,
                                            name="reward-calls")
            self._thread.start()
        return self._inbox

    def map(self, calls: list[tuple], timeout: float) -> list[Any]:
        """One result per call: its value, or the exception it raised (TimeoutError on overrun)."""
        out: list[Any] = []
        while len(out) < len(calls):
            _check_abandoned()
            batch = _Batch(calls[len(out):])
            self._ensure_thread().put(batch)
            with batch.cond:
                while len(batch.results) < len(batch.calls):
                    i = len(batch.results)
                    left = (batch.started_at + timeout - time.monotonic()
                            if batch.started_index == i else timeout)  # not begun yet: wait again
                    if left <= 0:
                        batch.cancelled = True
                        break
                    batch.cond.wait(left)
                out.extend(batch.results)
            if batch.cancelled:
                _abandoned.append((self._thread, _thread_cpu_s(self._thread)))
                self._thread = self._inbox = None
                out.append(TimeoutError(f"reward function ran past its {timeout:g} s timeout"))
        return out


class ProcessRunner:
    """One persistent spawned worker calling a user function; killed and restarted on timeout."""

    START_TIMEOUT = 120.0

    def __init__(self, target: str, params: dict[str, Any]) -> None:
        self.target, self.params = target, params
        self.proc: Any = None
        self.conn: Any = None

    def _start(self) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, self.target, self.params), daemon=True)
        self.proc.start()
        child.close()
        if not self.conn.poll(self.START_TIMEOUT):
            self.close()
            raise TimeoutError("reward worker did not start")
        self.conn.recv()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(5)
        self.proc = self.conn = None

    def __call__(self, completion: str, ex: Example, timeout: float) -> Any:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((completion, ex.prompt, ex.answer, ex.meta))
        if not self.conn.poll(timeout):
            self.close()
            raise TimeoutError(f"reward function ran past its {timeout:g} s timeout")
        try:
            status, value = self.conn.recv()
        except EOFError:
            self.close()
            raise RuntimeError("reward worker died") from None
        if status != "ok":
            raise RuntimeError(value)
        return value

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def load_function(target: str, key: str) -> Callable[..., Any]:
    """Import ``module:function``; a ConfigError naming ``key`` when that fails."""
    obj = resolve(target, key, what="an importable 'module:function'")
    if not callable(obj):
        raise ConfigError(key, "a callable 'module:function'", target)
    return obj


# ---------------------------------------------------------------------------------------------
# reward functions

MAX_ERRORS_KEPT = 3


class RewardFn:
    """Scores a batch of completions against their examples; never raises on a bad completion."""

    name = "reward"

    def __init__(self, rule: str, timeout: float, correct_at: float = 1.0) -> None:
        self.rule, self.timeout, self.correct_at = rule, timeout, correct_at

    def score(self, completion: str, ex: Example) -> float:
        raise NotImplementedError

    def raw_scores(self, completions: list[str], examples: list[Example]) -> list[Any]:
        """One value per completion, or the exception its scoring raised."""
        out: list[Any] = []
        for c, ex in zip(completions, examples):
            try:
                out.append(self.score(c, ex))
            except RewardAbort:
                raise
            except Exception as e:  # counted as a failure by __call__
                out.append(e)
        return out

    def __call__(self, completions: list[str], examples: list[Example]) -> RewardResult:
        if len(completions) != len(examples):
            raise ValueError(f"{len(completions)} completions for {len(examples)} examples")
        res = RewardResult([], [])
        for r in self.raw_scores(completions, examples):
            try:
                if isinstance(r, BaseException):
                    raise r
                if isinstance(r, bool):
                    r = float(r)
                if not isinstance(r, (int, float)) or not math.isfinite(r):
                    raise TypeError(f"returned {r!r}, expected a finite number or a bool")
                r = float(r)
            except RewardAbort:
                raise
            except Exception as e:  # a failing reward must not stop training
                r = 0.0
                res.failures += 1
                if len(res.errors) < MAX_ERRORS_KEPT:
                    res.errors.append(f"{self.name}: {type(e).__name__}: {e}")
            res.rewards.append(r)
            res.correct.append(r >= self.correct_at)
        if res.failures:
            log.warning("%d reward call(s) failed (reward 0): %s", res.failures, "; ".join(res.errors))
        return res


class PrefixReward(RewardFn):
    """1.0 when the completion starts with the reference answer, exactly as generated (no
    extraction): with one-character answers, TRL examples' "first character is the answer"."""

    name = "prefix"

    def score(self, completion: str, ex: Example) -> float:
        ref = ex.answer.strip()
        return float(bool(ref) and completion.startswith(ref))


class ExactReward(RewardFn):
    name = "exact"

    def score(self, completion: str, ex: Example) -> float:
        got = extract_answer(completion, self.rule)
        ref = extract_answer(ex.answer, self.rule) or ex.answer.strip()
        return float(got is not None and got == ref)


class NumericReward(RewardFn):
    name = "numeric"

    def __init__(self, rule: str, timeout: float, tolerance: float, rel_tolerance: float) -> None:
        super().__init__(rule, timeout)
        self.tolerance, self.rel_tolerance = tolerance, rel_tolerance

    def score(self, completion: str, ex: Example) -> float:
        ref = to_number(extract_answer(ex.answer, "auto"))
        if ref is None:
            ref = to_number(extract_answer(ex.answer, "last_number"))
        if ref is None:
            raise ValueError(f"reference answer {ex.answer!r} is not a number")
        got = to_number(extract_answer(completion, self.rule))
        if got is None:
            got = to_number(extract_answer(extract_answer(completion, self.rule) or "", "last_number"))
        return float(got is not None and abs(got - ref) <= self.tolerance + self.rel_tolerance * abs(ref))


class CountdownReward(RewardFn):
    name = "countdown"

    def score(self, completion: str, ex: Example) -> float:
        if "numbers" not in ex.meta or "target" not in ex.meta:
            raise ValueError("countdown reward needs meta.numbers and meta.target (a countdown task)")
        expr = extract_answer(completion, self.rule)
        value = eval_countdown(expr.split("=")[0], ex.meta["numbers"]) if expr else None
        return float(value is not None and abs(value - ex.meta["target"]) < 1e-9)


class MathVerifyReward(RewardFn):
    """math-verify: the gold answer and the completion are parsed to sympy and compared.

    The completion is parsed whole (math-verify finds the last boxed/latex/expression itself)
    unless ``parse`` names another rule than auto."""

    name = "math_verify"

    def __init__(self, rule: str, timeout: float, key: str = "reward") -> None:
        super().__init__(rule, timeout)
        try:
            import math_verify
        except ImportError:
            raise ConfigError(f"{key}.kind", "the math-verify package for kind math_verify", "math_verify",
                              hint="pip install 'entropy-regulator[math]'") from None
        self._mv = math_verify
        self._gold: dict[str, Any] = {}

    def _parse(self, text: str, seconds: int | None) -> Any:
        return self._mv.parse(text, parsing_timeout=seconds, raise_on_error=True)

    def score(self, completion: str, ex: Example) -> float:
        main = threading.current_thread() is threading.main_thread()
        seconds = max(1, math.ceil(self.timeout)) if main else None  # signal alarms: main thread only
        text = completion if self.rule == "auto" else (extract_answer(completion, self.rule) or "")
        if ex.answer not in self._gold:
            gold = ex.answer if "$" in ex.answer or "\\" in ex.answer else f"${ex.answer}$"
            self._gold[ex.answer] = self._parse(gold, seconds)
        pred = self._parse(text, seconds)
        return float(self._mv.verify(self._gold[ex.answer], pred, timeout_seconds=seconds,
                                     raise_on_error=True))


class UserReward(RewardFn):
    """A user's ``module:function`` under a timeout (see the module docstring)."""

    def __init__(self, target: str, key: str, timeout: float, isolation: str, params: dict[str, Any],
                 correct_at: float, batched: bool = False) -> None:
        super().__init__("full", timeout, correct_at)
        self.name = target
        self.fn = load_function(target, f"{key}.kind")  # checked here even in process mode
        self.params = params
        self.isolation, self.batched = isolation, batched
        self.runner = ProcessRunner(target, params) if isolation == "process" else None
        self.threads = ThreadRunner(self.fn, self.params)

    def _call(self, args: tuple) -> Any:
        if self.isolation == "none":  # in-process: the function's own exit or interrupt is its failure
            try:
                return self.fn(*args, **self.params)
            except (SystemExit, KeyboardInterrupt) as e:
                raise RuntimeError(f"the reward function raised {type(e).__name__}({e})") from None
        value = self.threads.map([args], self.timeout)[0]
        if isinstance(value, BaseException):
            raise value
        return value

    def score(self, completion: str, ex: Example) -> float:
        if self.runner is not None:
            return self.runner(completion, ex, self.timeout)
        return self._call((completion, ex))

    def raw_scores(self, completions: list[str], examples: list[Example]) -> list[Any]:
        if not self.batched and self.isolation == "thread":  # the whole batch in one hand-off
            return self.threads.map(list(zip(completions, examples)), self.timeout)
        if not self.batched:
            return super().raw_scores(completions, examples)
        try:  # one call for the whole batch: fn(completions, examples, **params) -> a list
            values = self._call((list(completions), list(examples)))
            if not isinstance(values, (list, tuple)) or len(values) != len(completions):
                raise TypeError(f"a batched reward returned {type(values).__name__} of length "
                                f"{len(values) if hasattr(values, '__len__') else '?'}, expected a "
                                f"list of {len(completions)} numbers")
            return list(values)
        except RewardAbort:
            raise
        except Exception as e:  # the whole batch failed: every completion counts
            return [e] * len(completions)


# ---------------------------------------------------------------------------------------------
# the kinds' keys


class RewardSpec(KindSchema):
    """Base of the reward kinds' Schemas: the fields are the kind's keys, ``build`` the RewardFn."""

    kind: str
    """How a response is scored, a name in the reward registry (exact, numeric, ...)."""
    timeout: Annotated[float, Field(ge=0.001, le=86400.0)] = 10.0
    """seconds one call may take (math-verify's parse and verify, a user function's call)"""

    def build(self, key: str = "reward") -> RewardFn:  # pragma: no cover - every kind overrides it
        raise NotImplementedError


REWARDS: Registry[type[RewardSpec]] = Registry("reward kinds (or 'module:function')",
                                               group="regulator.rewards",
                                               check=schema_check(RewardSpec))


class _Extracting(RewardSpec):
    parse: Rule = "auto"
    """how the answer is read from the completion: auto (boxed, else after the last ``#``, else
    after ``answer:``, else all), full, boxed, hash, answer or last_number"""


@REWARDS.register("exact")
class ExactSpec(_Extracting):
    """1 when the extracted answer equals the (extracted) reference."""

    kind: Literal["exact"]

    def build(self, key: str = "reward") -> RewardFn:
        return ExactReward(self.parse, self.timeout)


@REWARDS.register("numeric")
class NumericSpec(_Extracting):
    """1 when the extracted number is within tolerance of the reference."""

    kind: Literal["numeric"]
    tolerance: Annotated[float, Field(ge=0.0)] = 1e-6
    """absolute tolerance"""
    rel_tolerance: Annotated[float, Field(ge=0.0)] = 0.0
    """tolerance relative to |reference|, added to ``tolerance``"""

    def build(self, key: str = "reward") -> RewardFn:
        return NumericReward(self.parse, self.timeout, self.tolerance, self.rel_tolerance)


@REWARDS.register("countdown")
class CountdownSpec(_Extracting):
    """1 when the expression uses meta.numbers once each and equals meta.target."""

    kind: Literal["countdown"]

    def build(self, key: str = "reward") -> RewardFn:
        return CountdownReward(self.parse, self.timeout)


@REWARDS.register("math_verify")
class MathVerifySpec(_Extracting):
    """1 when math-verify finds the completion equivalent to the reference (the ``math`` extra)."""

    kind: Literal["math_verify"]

    def build(self, key: str = "reward") -> RewardFn:
        return MathVerifyReward(self.parse, self.timeout, key)


@REWARDS.register("prefix")
class PrefixSpec(RewardSpec):
    """1 when the completion itself starts with the reference answer (no answer extraction)."""

    kind: Literal["prefix"]

    def build(self, key: str = "reward") -> RewardFn:
        return PrefixReward("full", self.timeout)


class UserRewardSpec(RewardSpec):
    """A user function, ``kind: package.module:function``."""

    kind: str
    """the function, ``package.module:function``"""
    isolation: Literal["thread", "process", "none"] = "thread"
    """thread: a daemon thread, a call past its timeout is abandoned; process: a worker process,
    killed and restarted on a timeout (contains spinning or crashing code); none: called directly,
    no timeout (for functions known to return)"""
    batched: bool = False
    """call once per step with all completions and examples, returning a list of numbers"""
    params: dict[str, Any] = Field(default_factory=dict)
    """keyword arguments passed to every call"""
    correct_at: float = 1.0
    """a completion counts as correct (accuracy) when its reward is at least this"""

    @field_validator("kind")
    @classmethod
    def _importable(cls, v: str) -> str:
        load_function(v, "")
        return v

    @model_validator(mode="after")
    def _batched(self) -> UserRewardSpec:
        if self.batched and self.isolation == "process":
            raise ConfigError("batched", "false with isolation: process (batched functions run "
                              "in-process or in a thread)", True)
        return self

    def build(self, key: str = "reward") -> RewardFn:
        return UserReward(self.kind, key, self.timeout, self.isolation, dict(self.params),
                          self.correct_at, self.batched)


def parse_reward(spec: Mapping[str, Any] | str | RewardSpec | None, key: str = "reward") -> RewardSpec:
    """The validated spec of a reward (a bare string is a kind, no kind means ``exact``,
    ``module:function`` a user function); a ConfigError names the offending key."""
    if spec is None:
        spec = {}
    if isinstance(spec, str):
        spec = {"kind": spec}
    if isinstance(spec, Mapping) and isinstance(spec.get("kind"), str) and ":" in spec["kind"]:
        return parse(UserRewardSpec, spec, key)
    try:
        return parse_kind(REWARDS, spec, key, default="exact")
    except ConfigError as e:  # a user function's key on a built-in: say so, not "did you mean"
        name = e.key.removeprefix(f"{key}.")
        if e._given == name and name in _USER_ONLY:
            raise ConfigError(e.key, e.expected, name, hint="a key of user functions only, "
                              "kind: package.module:function") from None
        raise


_USER_ONLY = set(UserRewardSpec.model_fields) - set(RewardSpec.model_fields)


def make_reward(spec: Mapping[str, Any] | str | RewardSpec | None, key: str = "reward") -> RewardFn:
    """Build a reward from its config mapping (or a bare kind string); ConfigError names the key."""
    return parse_reward(spec, key).build(key)
