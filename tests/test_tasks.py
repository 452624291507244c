"""Tasks and the prompt stream: determinism, disjoint splits, answers, files, config errors."""

import json
import random

import pytest

from regulator.errors import ConfigError
from trainer.data import PromptStream
from trainer.tasks import KINDS, Example, eval_countdown, make_task

GENERATED = ["max_digits", "parity", "sort_digits", "addition", "countdown"]


@pytest.mark.parametrize("kind", GENERATED)
def test_generated_tasks_are_deterministic_and_split_disjoint(kind):
    extra = {"k": 8} if kind == "parity" else {}  # 6 bits: too few instances to split
    a, b = make_task({"kind": kind, "seed": 3, **extra}), make_task({"kind": kind, "seed": 3, **extra})
    other = make_task({"kind": kind, "seed": 4, **extra})
    train = [a.example("train", i) for i in range(200)]
    assert train == [b.example("train", i) for i in range(200)]
    assert train != [other.example("train", i) for i in range(200)]
    evals = [a.example("eval", i) for i in range(200)]
    assert a.disjoint
    assert not {e.prompt for e in train} & {e.prompt for e in evals}
    assert a.num_examples("train") is None and len(train) == 200
    for ex in train[:50]:
        assert isinstance(ex, Example) and ex.prompt and ex.answer
        assert set(ex.prompt + ex.answer) <= set(a.alphabet)
        json.dumps(ex.meta)


def test_reference_answers_are_right():
    for ex in (make_task({"kind": "max_digits", "k": 5}).example("train", i) for i in range(30)):
        assert ex.answer == max(ex.prompt[:-1]) and ex.prompt.endswith("=") and len(ex.prompt) == 6
    for ex in (make_task({"kind": "parity", "k": 6}).example("train", i) for i in range(30)):
        assert ex.answer == str(ex.prompt[:-1].count("1") % 2)
    for ex in (make_task({"kind": "sort_digits", "k": 4}).example("train", i) for i in range(30)):
        assert ex.answer == "".join(sorted(ex.prompt[:-1]))
    add = make_task({"kind": "addition", "digits": 3, "terms": 3})
    for ex in (add.example("train", i) for i in range(30)):
        assert int(ex.answer) == sum(int(t) for t in ex.prompt[:-1].split("+"))
    for ex in (make_task({"kind": "countdown", "n": 4}).example("train", i) for i in range(30)):
        assert eval_countdown(ex.answer, ex.meta["numbers"]) == ex.meta["target"]
        assert ex.prompt == ",".join(map(str, ex.meta["numbers"])) + f">{ex.meta['target']}="


def test_cot_traces_end_with_the_answer():
    t = make_task({"kind": "addition", "cot": True})
    ex = t.render((34, 58))
    assert ex.answer == "4+8=12,3+5+1=9#92"
    assert make_task({"kind": "max_digits", "cot": True}).render("31415").answer == "33445#5"
    assert make_task({"kind": "parity", "cot": True, "k": 3}).render("110").answer == "100#0"


def test_small_spaces_are_not_split():
    t = make_task({"kind": "parity", "k": 4})
    assert not t.disjoint  # 16 instances x 0.1 < 16 eval instances
    prompts = {s: {t.example(s, i).prompt for i in range(200)} for s in ("train", "eval")}
    assert prompts["train"] == prompts["eval"]


def test_natural_format():
    ex = make_task({"kind": "addition", "format": "natural"}).example("train", 0)
    assert ex.prompt.startswith("What is ") and ex.prompt.endswith("Answer with the number only.")
    assert make_task({"kind": "addition", "format": "natural"}).alphabet is None


@pytest.mark.parametrize("kind", GENERATED)
def test_demonstrations_are_systematically_wrong_on_a_fixed_subset(kind):
    t = make_task({"kind": kind})
    exs = [t.example("train", i) for i in range(400)]
    rng = random.Random(0)
    assert all(t.demonstration(ex, rng) == ex.answer for ex in exs)
    wrong = [t.demonstration(ex, rng, error_rate=0.3) != ex.answer for ex in exs]
    again = [t.demonstration(ex, random.Random(9), error_rate=0.3) != ex.answer for ex in exs]
    assert wrong == again  # the subset depends on the prompt only
    assert 0.2 < sum(wrong) / len(exs) < 0.4
    hashed = [t.demonstration(ex, rng, 0.3, "hash") != ex.answer for ex in exs]
    assert 0.2 < sum(hashed) / len(exs) < 0.4 and hashed != wrong
    if kind == "countdown":
        for ex, w in zip(exs, wrong):
            if w:
                assert eval_countdown(t.demonstration(ex, rng, 0.3), ex.meta["numbers"]) != ex.meta["target"]


def test_eval_countdown_rejects_misuse():
    assert eval_countdown("(3+5)*2", [2, 3, 5]) == 16
    assert eval_countdown("3+5", [2, 3, 5]) is None  # 2 unused
    assert eval_countdown("3+3+5", [3, 5]) is None  # 3 used twice
    assert eval_countdown("__import__('os')", [1]) is None
    assert eval_countdown("2**5", [2, 5]) is None
    assert eval_countdown("6/(3-3)", [6, 3, 3]) is None


def test_jsonl_task_and_holdout(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"prompt": f"q{i}", "answer": i, "level": "easy"} for i in range(20)]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    t = make_task({"kind": "jsonl", "path": str(p)})
    assert t.num_examples("train") == 20 and len(t) == 20
    assert t.example("train", 3) == Example("q3", "3", {"level": "easy"})
    assert t.num_examples("eval") == 20
    h = make_task({"kind": "jsonl", "path": str(p), "eval_fraction": 0.25})
    tr = {h.example("train", i).prompt for i in range(15)}
    ev = {h.example("eval", i).prompt for i in range(5)}
    assert h.num_examples("eval") == 5 and not tr & ev and len(tr | ev) == 20


def test_jsonl_chat_prompt_and_dotted_answer(tmp_path):
    p = tmp_path / "dapo.jsonl"
    row = {"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "1+1?"}],
           "reward_model": {"ground_truth": "2", "style": "rule"}}
    p.write_text(json.dumps(row) + "\n")
    t = make_task({"kind": "jsonl", "path": str(p), "answer_field": "reward_model.ground_truth"})
    assert t.example("train", 0).prompt == "1+1?" and t.example("train", 0).answer == "2"


def test_parquet_task(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is optional")
    import pyarrow as pa

    p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"prompt": "a", "answer": "1"}]), p)
    assert make_task({"kind": "parquet", "path": str(p)}).example("train", 0).answer == "1"


@pytest.mark.parametrize("spec,key", [
    ({"kind": "maxdigits"}, "task.kind"),
    ({"kind": "max_digits", "kk": 3}, "task.kk"),
    ({"kind": "max_digits", "k": "five"}, "task.k"),
    ({"kind": "addition", "format": "latex"}, "task.format"),
    ({"kind": "sort_digits", "cot": True}, "task.cot"),
    ({"kind": "jsonl", "path": "/nonexistent/data.jsonl"}, "task.path"),
    ({"kind": "jsonl"}, "task.path"),
    ({}, "task.kind"),
    ({"kind": ["max_digits"]}, "task.kind"),
])
def test_bad_specs_name_the_key(spec, key):
    with pytest.raises(ConfigError) as e:
        make_task(spec)
    assert e.value.key == key


def test_bad_jsonl_rows(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"prompt": "q"}\n')
    with pytest.raises(ConfigError, match="answer"):
        make_task({"kind": "jsonl", "path": str(p)})
    p.write_text("not json\n")
    with pytest.raises(ConfigError, match="line 1"):
        make_task({"kind": "jsonl", "path": str(p)})


def test_kinds_listed():
    assert set(GENERATED) | {"jsonl", "parquet"} == set(KINDS)


def test_prompt_stream_resumes_and_differs_by_seed():
    t = make_task({"kind": "max_digits"})
    s = PromptStream(t, "train", seed=1, batch_size=4)
    first = [s.next_batch() for _ in range(3)]
    state = s.state_dict()
    more = [s.next_batch() for _ in range(2)]
    r = PromptStream(t, "train", seed=1, batch_size=4)
    r.load_state_dict(state)
    assert [r.next_batch() for _ in range(2)] == more
    fresh = PromptStream(t, "train", seed=1, batch_size=4)
    assert [fresh.next_batch() for _ in range(3)] == first
    assert PromptStream(t, "train", seed=2, batch_size=4).next_batch() != first[0]
    with pytest.raises(ValueError):
        PromptStream(t, "train", seed=2, batch_size=4).load_state_dict(state)


def test_prompt_stream_epochs_over_a_file(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps({"prompt": f"q{i}", "answer": "a"}) + "\n" for i in range(10)))
    s = PromptStream(make_task({"kind": "jsonl", "path": str(p)}), "train", seed=0, batch_size=5)
    e0 = [x.prompt for x in s.next_batch() + s.next_batch()]
    e1 = [x.prompt for x in s.next_batch() + s.next_batch()]
    assert sorted(e0) == sorted(e1) == sorted(f"q{i}" for i in range(10))
    assert e0 != e1 and s.epoch == 2


def test_parse_task_resolves_every_default_and_the_string_shorthand(tmp_path):
    from trainer.tasks import TASKS, TaskSpec, parse_task

    spec = parse_task("addition")
    assert isinstance(spec, TaskSpec)
    assert spec.resolved() == {"kind": "addition", "seed": 0, "format": "compact",
                               "eval_fraction": 0.1, "cot": False, "digits": 2, "terms": 2}
    assert make_task(spec.resolved()).describe() == make_task("addition").describe() == spec.resolved()
    p = tmp_path / "d.jsonl"
    p.write_text(json.dumps({"prompt": "q", "answer": "a"}) + "\n")
    assert parse_task({"kind": "jsonl", "path": str(p)}).resolved()["prompt_field"] == "prompt"
    assert set(KINDS) == set(TASKS.names())


@pytest.mark.parametrize("spec,key,fragment", [
    ({"kind": "addition", "k": 3}, "task.k", "digits"),  # another kind's key: this kind's keys listed
    ({"kind": "max_digits", "kk": 3}, "task.kk", "did you mean 'k'"),
    ({"kind": "parity", "eval_fraction": 0.7}, "task.eval_fraction", "0.7"),
    ({"kind": "jsonl", "path": "x", "k": 3}, "task.k", "answer_field"),
    (3, "task", "3"),
])
def test_unknown_and_out_of_range_task_keys(spec, key, fragment):
    with pytest.raises(ConfigError) as e:
        make_task(spec)
    assert e.value.key == key and fragment in str(e.value), str(e.value)
