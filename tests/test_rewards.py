"""Rewards: answer extraction, built-ins, user functions that raise or hang, config errors."""

import sys
import textwrap
import time

import pytest

from regulator.errors import ConfigError
from trainer.rewards import extract_answer, make_reward, to_number
from trainer.tasks import Example, make_task

EX = Example("34+58=", "92")


def test_extract_answer_rules():
    assert extract_answer("  92 ", "full") == "92"
    assert extract_answer("so \\boxed{\\frac{1}{2}} and \\boxed{3}", "boxed") == "3"
    assert extract_answer("a \\boxed{\\frac{1}{2}}", "auto") == "\\frac{1}{2}"
    assert extract_answer("4+8=12,3+5+1=9#92", "auto") == "92"
    assert extract_answer("reasoning\n#### 72", "auto") == "72"
    assert extract_answer("The answer is: 17.\nmore", "auto") == "17"
    assert extract_answer("I got 1,234 then 5", "last_number") == "5"
    assert extract_answer("total 1,234", "last_number") == "1234"
    assert extract_answer("no marker", "hash") is None
    assert to_number("1/2") == 0.5 and to_number("$12.$") == 12 and to_number("x") is None


def test_exact_reward():
    r = make_reward({"kind": "exact"})
    res = r(["92", " 92\n", "93", "", "4+8=12,3+5+1=9#92"], [EX] * 5)
    assert res.rewards == [1.0, 1.0, 0.0, 0.0, 1.0] and res.correct == [True, True, False, False, True]
    assert res.failures == 0
    full = make_reward({"kind": "exact", "parse": "full"})
    cot = Example("34+58=", "4+8=12,3+5+1=9#92")
    assert full(["4+8=12,3+5+1=9#92", "4+8=12,3+5=8#92"], [cot, cot]).rewards == [1.0, 0.0]
    assert make_reward("exact")(["92"], [EX]).rewards == [1.0]


def test_numeric_reward():
    r = make_reward({"kind": "numeric", "tolerance": 0.01})
    res = r(["92.005", "The answer is 92", "91.9", "ninety-two", "\\boxed{92}"], [EX] * 5)
    assert res.rewards == [1.0, 1.0, 0.0, 0.0, 1.0]
    bad_ref = r(["1"], [Example("q", "not a number")])
    assert bad_ref.rewards == [0.0] and bad_ref.failures == 1


def test_countdown_reward():
    t = make_task({"kind": "countdown"})
    ex = t.example("train", 0)
    r = make_reward({"kind": "countdown"})
    res = r([ex.answer, ex.answer + "+1", "garbage", f"{ex.answer}={ex.meta['target']}"], [ex] * 4)
    assert res.rewards == [1.0, 0.0, 0.0, 1.0]
    assert r(["1"], [EX]).failures == 1  # not a countdown example


def test_math_verify_reward():
    pytest.importorskip("math_verify", reason="the math extra is not installed")
    r = make_reward({"kind": "math_verify"})
    half = Example("q", "\\frac{1}{2}")
    res = r(["so \\boxed{0.5}", "it is 1/3", "$\\frac{2}{4}$"], [half] * 3)
    assert res.rewards == [1.0, 0.0, 1.0] and res.failures == 0
    assert r(["The sum is 92."], [EX]).rewards == [1.0]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        import time
        def length(completion, example, scale=1.0):
            return scale * len(completion)
        def boom(completion, example):
            if completion == "boom":
                raise RuntimeError("kaboom")
            return completion == example.answer
        def hang(completion, example):
            if completion == "hang":
                time.sleep(30)
            return 1.0
        def nan(completion, example):
            return float("nan")
        import threading
        THREADS = []
        def where(completion, example):
            THREADS.append(threading.get_ident())
            if completion == "slow":
                time.sleep(0.15)
            return 1.0
        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    sys.modules.pop("my_rewards", None)


def test_user_function_with_params(user_module):
    r = make_reward({"kind": "my_rewards:length", "params": {"scale": 0.5}, "correct_at": 1.0})
    res = r(["ab", "a"], [EX, EX])
    assert res.rewards == [1.0, 0.5] and res.correct == [True, False]


def test_raising_and_garbage_user_functions_give_zero_and_count(user_module):
    r = make_reward({"kind": "my_rewards:boom"})
    res = r(["92", "boom", "x", "boom"], [EX] * 4)
    assert res.rewards == [1.0, 0.0, 0.0, 0.0] and res.failures == 2
    assert "kaboom" in res.errors[0]
    assert make_reward({"kind": "my_rewards:nan"})(["a"], [EX]).failures == 1


def test_hanging_user_function_times_out_in_thread(user_module):
    r = make_reward({"kind": "my_rewards:hang", "timeout": 0.2})
    t0 = time.perf_counter()
    res = r(["ok", "hang", "ok"], [EX] * 3)
    assert time.perf_counter() - t0 < 5
    assert res.rewards == [1.0, 0.0, 1.0] and res.failures == 1 and "timeout" in res.errors[0]


def test_thread_isolation_runs_a_batch_on_one_thread_with_a_timeout_per_call(user_module):
    import threading

    mod = __import__(user_module)
    r = make_reward({"kind": "my_rewards:where", "timeout": 0.4})
    before = threading.active_count()
    assert r(["a"] * 128, [EX] * 128).rewards == [1.0] * 128
    assert r(["b"] * 128, [EX] * 128).failures == 0
    assert len(set(mod.THREADS)) == 1 and mod.THREADS[0] != threading.get_ident()
    assert threading.active_count() <= before + 1
    # five calls of 0.15 s each take longer than the timeout together, never one by one
    assert r(["slow"] * 5, [EX] * 5).failures == 0


def test_hanging_calls_in_one_batch_each_time_out_and_the_rest_still_run(user_module):
    r = make_reward({"kind": "my_rewards:hang", "timeout": 0.2})
    t0 = time.perf_counter()
    res = r(["ok", "hang", "ok", "hang", "ok"], [EX] * 5)
    assert time.perf_counter() - t0 < 5
    assert res.rewards == [1.0, 0.0, 1.0, 0.0, 1.0] and res.failures == 2


def test_hanging_user_function_times_out_in_process(user_module):
    r = make_reward({"kind": "my_rewards:hang", "timeout": 0.5, "isolation": "process"})
    try:
        res = r(["ok", "hang", "ok"], [EX] * 3)  # the worker is killed and restarted after "hang"
        assert res.rewards == [1.0, 0.0, 1.0] and res.failures == 1
        boom = make_reward({"kind": "my_rewards:boom", "isolation": "process"})
        assert boom(["boom", "92"], [EX, EX]).rewards == [0.0, 1.0]
    finally:
        r.runner.close()


@pytest.mark.parametrize("spec,key", [
    ({"kind": "exactt"}, "reward.kind"),
    ({"kind": "exact", "parse": "lastnum"}, "reward.parse"),
    ({"kind": "exact", "timout": 3}, "reward.timout"),
    ({"kind": "numeric", "tolerance": "small"}, "reward.tolerance"),
    ({"kind": "exact", "params": {"a": 1}}, "reward.params"),
    ({"kind": "no_such_module_xyz:f"}, "reward.kind"),
    ({"kind": "json:no_such_function"}, "reward.kind"),
    ({"kind": "my_rewards:NOT_CALLABLE"}, "reward.kind"),
    ({"kind": "my_rewards:length", "isolation": "fork"}, "reward.isolation"),
])
def test_bad_reward_specs_name_the_key(spec, key, user_module):
    with pytest.raises(ConfigError) as e:
        make_reward(spec)
    assert e.value.key == key


def test_parse_reward_resolves_defaults_and_shorthands(user_module):
    from trainer.rewards import REWARDS, RewardSpec, parse_reward

    assert parse_reward(None).resolved() == {"kind": "exact", "timeout": 10.0, "parse": "auto"}
    assert parse_reward({}).resolved() == parse_reward("exact").resolved()
    num = parse_reward({"kind": "numeric", "tolerance": 0.5})
    assert isinstance(num, RewardSpec) and num.resolved()["rel_tolerance"] == 0.0
    user = parse_reward({"kind": "my_rewards:length", "params": {"scale": 2}}).resolved()
    assert user == {"kind": "my_rewards:length", "timeout": 10.0, "isolation": "thread",
                    "batched": False, "params": {"scale": 2}, "correct_at": 1.0}
    assert make_reward(user)(["ab"], [EX]).rewards == [4.0]  # the resolved spec builds the same
    assert set(REWARDS.names()) == {"exact", "numeric", "math_verify", "countdown", "prefix"}


@pytest.mark.parametrize("spec,key,fragment", [
    ({"kind": "exact", "tolerance": 0.1}, "reward.tolerance", "'tolerance'"),  # numeric's key
    ({"kind": "prefix", "parse": "full"}, "reward.parse", "'parse'"),  # prefix extracts nothing
    ({"kind": "exact", "batched": True}, "reward.batched", "user functions only"),
    ({"kind": "exact", "timeout": float("inf")}, "reward.timeout", "inf"),
    ({"kind": "my_rewards:length", "batched": True, "isolation": "process"}, "reward.batched",
     "True"),
    ({"kind": "my_rewards:length", "params": [1]}, "reward.params", "[1]"),
    ({"kind": 3}, "reward.kind", "3"),
])
def test_each_reward_kind_takes_only_its_keys(spec, key, fragment, user_module):
    with pytest.raises(ConfigError) as e:
        make_reward(spec)
    assert e.value.key == key and fragment in str(e.value), str(e.value)
