"""The paper's evaluation: avg@k, pass@k, response diversity and calibration on held-out prompts.

For every held-out prompt the policy samples ``n`` responses (at the rollout temperature, seeded
per response); with c of them correct:

- avg@n   = c / n, averaged over prompts (the paper's avg@k);
- pass@k  = 1 - C(n - c, k) / C(n, k), the unbiased estimator of Chen et al. (2021), k <= n;
- distinct-d = |distinct d-grams| / |d-grams| over the n responses' tokens (Li et al. 2016),
  averaged over the prompts whose responses hold at least one d-gram (EOS left out);
- ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)| over ``bins`` equal-width bins of the
  confidence p(y | x) = exp(sum_t log pi(y_t | x, y_<t)), the sequence probability under the
  sampling distribution (temperature T), against correctness (Guo et al. 2017).

Every figure is a sum over prompts or bins, so ranks all-reduce plain sums (``all_sum``).
Enabled by ``train.eval_samples > 0`` (with ``train.eval_every``); logged as ``eval/avg@n``,
``eval/pass@k`` for each k in ``train.eval_pass_k``, ``eval/distinct_d`` and ``eval/ece``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k).

    Computed as 1 - prod_{i=n-c+1}^{n} (1 - k / i) (numerically stable, Chen et al. 2021).
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def distinct_n(responses: Sequence[Sequence[Any]], n: int = 1) -> float:
    """|distinct n-grams| / |n-grams| over all ``responses`` (token sequences); NaN if none."""
    grams = [tuple(r[i:i + n]) for r in responses for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else math.nan


def calibration_bins(confidence: Sequence[float], correct: Sequence[float], bins: int = 10
                     ) -> torch.Tensor:
    """Per-bin sums [3, bins]: counts, sum of confidences, sum of correctness.

    Bin b holds confidences in (b/bins, (b+1)/bins]; 0 falls into bin 0.
    """
    out = torch.zeros(3, bins, dtype=torch.float64)
    for p, y in zip(confidence, correct):
        b = min(max(math.ceil(float(p) * bins) - 1, 0), bins - 1)
        out[0, b] += 1.0
        out[1, b] += float(p)
        out[2, b] += float(y)
    return out


def ece_from_bins(sums: torch.Tensor) -> float:
    """ECE = sum_b |B_b| / N * |acc_b - conf_b| from ``calibration_bins`` sums (NaN if empty)."""
    count, conf, acc = sums[0], sums[1], sums[2]
    total = float(count.sum())
    if total == 0:
        return math.nan
    return float((conf - acc).abs().sum()) / total  # |B|/N * |acc - conf| = |sum acc - sum conf| / N


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[float],
                               bins: int = 10) -> float:
    """ECE of ``confidence`` against 0/1 ``correct`` with ``bins`` equal-width bins."""
    return ece_from_bins(calibration_bins(confidence, correct, bins))


def prompt_sums(correct: Sequence[Sequence[float]], tokens: Sequence[Sequence[Sequence[Any]]],
                confidence: Sequence[Sequence[float]], *, pass_k: Sequence[int], distinct: int,
                bins: int) -> torch.Tensor:
    """The summable vector of a set of prompts (n samples each):
    [prompts, sum avg@n, sum pass@k for each k, sum distinct-d, prompts with d-grams, bins...]."""
    head = torch.zeros(4 + len(pass_k), dtype=torch.float64)
    flat_p, flat_y = [], []
    for ys, toks, ps in zip(correct, tokens, confidence):
        n, c = len(ys), int(round(sum(ys)))
        head[0] += 1.0
        head[1] += c / n
        for j, k in enumerate(pass_k):
            head[2 + j] += pass_at_k(n, c, k)
        d = distinct_n(toks, distinct)
        if not math.isnan(d):
            head[2 + len(pass_k)] += d
            head[3 + len(pass_k)] += 1.0
        flat_p.extend(ps)
        flat_y.extend(ys)
    return torch.cat([head, calibration_bins(flat_p, flat_y, bins).flatten()])


def metrics_from_sums(sums: torch.Tensor, *, n: int, pass_k: Sequence[int], distinct: int,
                      bins: int) -> dict[str, float]:
    """``prompt_sums`` (all-reduced over ranks) -> the logged ``eval/*`` metrics."""
    k = len(pass_k)
    prompts = max(float(sums[0]), 1.0)
    with_grams = float(sums[3 + k])
    out = {f"eval/avg@{n}": float(sums[1]) / prompts}
    out.update({f"eval/pass@{kk}": float(sums[2 + j]) / prompts for j, kk in enumerate(pass_k)})
    out[f"eval/distinct_{distinct}"] = float(sums[2 + k]) / with_grams if with_grams else math.nan
    out["eval/ece"] = ece_from_bins(sums[4 + k:].view(3, bins))
    return out


@torch.no_grad()
def evaluate_sampled(run: Any, step: int) -> dict[str, float]:
    """Sample ``train.eval_samples`` responses per held-out prompt and score them (all ranks).

    Generation goes in chunks of the training rollout size; seeds are the training seeds of a
    negative step (-1 - step), so evaluation never reuses a training sample's noise.
    """
    from trainer.grpo import all_sum, response_logits, sampled_logprobs
    from trainer.plant import sample_seed

    cfg = run.cfg
    tr, ro = cfg.train, cfg.rollout
    n, pass_k = tr.eval_samples, tr.pass_k()
    mine = list(enumerate(run.eval_examples))[run.rank::run.world]
    chunk = max(1, ro.prompts // run.world)
    eos = set(getattr(run.backend, "eos", set()))
    correct, tokens, conf = [], [], []
    for start in range(0, len(mine), chunk):
        part = mine[start:start + chunk]
        group = [ex for _, ex in part for _ in range(n)]
        seeds = [sample_seed(tr.seed, -1 - step, gi, j) for gi, _ in part for j in range(n)]
        rollout = run.backend.generate([run.format_prompt(run.tokenizer, ex.prompt) for ex in group],
                                       seeds)
        res = run.reward_fn(rollout.responses, group)
        mask = rollout.response_mask
        lp = sampled_logprobs(response_logits(run.engine, rollout), rollout.response_ids,
                              ro.temperature)
        seq_p = (lp * mask).sum(-1).exp().cpu().tolist()  # p(y|x) at the sampling temperature
        ids = rollout.response_ids.cpu().tolist()
        lens = mask.sum(-1).long().cpu().tolist()
        for i in range(len(part)):
            rows = range(i * n, (i + 1) * n)
            correct.append([float(res.correct[r]) for r in rows])
            tokens.append([[t for t in ids[r][:lens[r]] if t not in eos] for r in rows])
            conf.append([seq_p[r] for r in rows])
    sums = prompt_sums(correct, tokens, conf, pass_k=pass_k, distinct=tr.eval_distinct_n,
                       bins=tr.eval_ece_bins)
    sums = all_sum(sums)
    return metrics_from_sums(sums, n=n, pass_k=pass_k, distinct=tr.eval_distinct_n,
                             bins=tr.eval_ece_bins)
