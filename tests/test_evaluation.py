"""trainer/evaluation.py against hand-computed values, its config keys, and a short run that logs
eval/avg@n, eval/pass@k, eval/distinct_d and eval/ece."""

from __future__ import annotations

import math

import pytest
from _train_helpers import tiny_config, write_config

from regulator.errors import ConfigError
from trainer.config import RunConfig
from trainer.evaluation import (
    distinct_n,
    expected_calibration_error,
    metrics_from_sums,
    pass_at_k,
    prompt_sums,
)
from trainer.logging import read_metrics
from trainer.run import train_main


def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)          # c / n
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)   # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 3, 2) == 1.0                         # n - c < k: every k-subset has a hit
    assert pass_at_k(8, 1, 8) == 1.0


def test_pass_at_k_equals_the_binomial_formula():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                want = 1 - math.comb(n - c, k) / math.comb(n, k)
                assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12), (n, c, k)
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


def test_distinct_n_hand_values():
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 1) == pytest.approx(4 / 6)
    assert distinct_n([[1, 2, 3], [1, 2, 4]], 2) == pytest.approx(3 / 4)  # (1,2) twice
    assert distinct_n([[7], [7], [7], [7]], 1) == pytest.approx(1 / 4)     # collapsed answers
    assert math.isnan(distinct_n([[7], [8]], 2))                          # no bigram at all


def test_ece_hand_value():
    # bins of width 0.1: 0.95 -> bin 9 (|1 - .95|), 0.85 -> bin 8 (|0 - .85|),
    # 0.15 and 0.12 -> bin 1 (|1 - .27|); ECE = (.05 + .85 + .73) / 4
    ece = expected_calibration_error([0.95, 0.85, 0.15, 0.12], [1, 0, 0, 1], bins=10)
    assert ece == pytest.approx(1.63 / 4)
    assert expected_calibration_error([0.3, 0.7], [0, 1], bins=1) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == pytest.approx(0.0)
    assert math.isnan(expected_calibration_error([], []))


def _two_prompts():
    correct = [[1, 0, 0, 1], [0, 0, 0, 0]]
    tokens = [[[1], [2], [2], [1]], [[3], [3], [3], [3]]]
    conf = [[0.9, 0.1, 0.1, 0.9], [0.5, 0.5, 0.5, 0.5]]
    return correct, tokens, conf


def test_metrics_from_sums_hand_values():
    correct, tokens, conf = _two_prompts()
    kw = dict(pass_k=[1, 2, 4], distinct=1, bins=10)
    m = metrics_from_sums(prompt_sums(correct, tokens, conf, **kw), n=4, **kw)
    assert m["eval/avg@4"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["eval/pass@1"] == pytest.approx(m["eval/avg@4"])
    assert m["eval/pass@2"] == pytest.approx((1 - 1 / 6 + 0.0) / 2)  # 1 - C(2,2)/C(4,2)
    assert m["eval/pass@4"] == pytest.approx(0.5)
    assert m["eval/distinct_1"] == pytest.approx((2 / 4 + 1 / 4) / 2)
    # bins: 0.9 x2 correct (|2 - 1.8|), 0.1 x2 wrong (|0 - .2|), 0.5 x4 wrong (|0 - 2|)
    assert m["eval/ece"] == pytest.approx((0.2 + 0.2 + 2.0) / 8)


def test_sums_add_over_ranks():
    """Two ranks' sums, added, give the one-process metrics (what all_sum relies on)."""
    correct, tokens, conf = _two_prompts()
    kw = dict(pass_k=[1, 3], distinct=1, bins=5)
    whole = prompt_sums(correct, tokens, conf, **kw)
    split = (prompt_sums(correct[:1], tokens[:1], conf[:1], **kw)
             + prompt_sums(correct[1:], tokens[1:], conf[1:], **kw))
    assert metrics_from_sums(split, n=4, **kw) == pytest.approx(metrics_from_sums(whole, n=4, **kw))


def test_config_keys():
    rc = RunConfig.from_mapping({"eval_samples": 8})
    assert rc.pass_k() == [1, 8]
    assert RunConfig.from_mapping({"eval_samples": 8, "eval_pass_k": [4, 1]}).pass_k() == [1, 4]
    for bad in ({"eval_samples": 4, "eval_pass_k": [8]}, {"eval_pass_k": [1]},
                {"eval_samples": 4, "eval_pass_k": "4"}, {"eval_samples": -1},
                {"eval_samples": 4, "eval_distinct_n": 0}):
        with pytest.raises(ConfigError) as e:
            RunConfig.from_mapping(bad)
        assert e.value.key.startswith("train.eval_")


def test_a_run_logs_the_sampled_evaluation(tmp_path):
    cfg = tiny_config(tmp_path, train={"steps": 3, "eval_every": 2, "eval_prompts": 6,
                                       "eval_samples": 4, "eval_pass_k": [1, 2, 4], "save_every": 0})
    assert train_main(str(write_config(tmp_path, cfg))) == 0
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    evals = [r for r in rows if "eval/ece" in r]
    assert [r["step"] for r in evals] == [0, 2]
    for r in evals:
        assert 0.0 <= r["eval/avg@4"] <= 1.0
        assert r["eval/pass@1"] == pytest.approx(r["eval/avg@4"])   # unbiased pass@1 = c / n
        assert r["eval/pass@1"] <= r["eval/pass@2"] <= r["eval/pass@4"] <= 1.0
        assert 0.0 < r["eval/distinct_1"] <= 1.0
        assert 0.0 <= r["eval/ece"] <= 1.0
    # an untrained tiny model answers at random: its samples differ and are not all right
    assert evals[0]["eval/distinct_1"] > 0.25 and evals[0]["eval/avg@4"] < 1.0
