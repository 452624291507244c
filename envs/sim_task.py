"""The synthetic verifiable task of the simulated plant and its starting ("pretrained") policy.

A prompt p asks for a fixed answer string ``answer[p]`` of ``length`` tokens over a vocabulary of
``vocab`` tokens. The verifier is exact match: reward 1 iff every sampled token equals the answer
token at its position (so format tokens count in the reward, see docs/regimes.md §5: without that
the pushes on shared tokens cancel and nothing collapses).

Regimes (docs/regimes.md §1, §5):

- ``pretrained``: the first ``length - forks`` positions are *format* tokens, the same token for
  every prompt (right and wrong answers share them), sampled with probability ``format_p`` in
  [0.90, 0.98]. The last ``forks`` positions are *forking* tokens that decide correctness: on a
  fraction ``right_frac`` of the prompts the policy is confidently right (p(right) = ``right_p``);
  on the others it is systematically wrong (a wrong token has p = ``wrong_p``, the right one only
  ``right_low`` in [0.03, 0.12]).
- ``scratch``: uniform logits (every token 1 / vocab), answers drawn at random, short responses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class TaskInstance:
    """One plant's task: the canonical answers [prompts, length], the tokens the verifier
    accepts at each position [prompts, length, vocab] (bool) and the starting logits."""

    answers: torch.Tensor
    accepted: torch.Tensor
    logits0: torch.Tensor


def _logits_for(probs: torch.Tensor) -> torch.Tensor:
    return probs.clamp_min(1e-6).log()


def make_sim_task(
    regime: str,
    *,
    prompts: int,
    length: int,
    forks: int,
    vocab: int,
    generator: torch.Generator,
    format_p: tuple[float, float] = (0.90, 0.98),
    right_frac: float = 0.5,
    right_p: float = 0.9,
    wrong_p: float = 0.8,
    right_low: tuple[float, float] = (0.03, 0.12),
    alternates: int = 0,
    alt_share: float = 0.6,
) -> TaskInstance:
    """Draw one task instance (answers and starting logits) from ``generator``."""
    g = generator
    if regime == "scratch":
        answers = torch.randint(0, vocab, (prompts, length), generator=g)
        accepted = torch.nn.functional.one_hot(answers, vocab).bool()
        return TaskInstance(answers, accepted, torch.zeros(prompts, length, vocab))
    n_fmt = length - forks
    # Format tokens: one template shared by all prompts, confident but not certain.
    template = torch.randint(0, vocab, (n_fmt,), generator=g)
    answers = torch.empty(prompts, length, dtype=torch.long)
    answers[:, :n_fmt] = template
    answers[:, n_fmt:] = torch.randint(0, vocab, (prompts, forks), generator=g)
    probs = torch.empty(prompts, length, vocab)
    u = lambda *shape: torch.rand(*shape, generator=g)
    lo, hi = format_p
    p_fmt = lo + (hi - lo) * u(prompts, n_fmt)
    accepted = torch.nn.functional.one_hot(answers, vocab).bool()
    # Alternates: other format tokens the verifier also accepts (synonyms), rare at the start:
    # they share ``alt_share`` of the remaining mass. Positive samples then carry rare tokens
    # whose growth the upper clip bound limits (DAPO's Clip-Higher mechanism).
    n_alt = min(alternates, vocab - 1)
    offs = torch.stack([torch.randperm(vocab - 1, generator=g)[:n_alt] + 1 for _ in range(n_fmt)]
                       ) if n_fmt else torch.zeros(0, n_alt, dtype=torch.long)  # every token forks
    alt_tok = (template[:, None] + offs) % vocab  # [n_fmt, n_alt]
    alt = torch.zeros(n_fmt, vocab, dtype=torch.bool)
    alt.scatter_(-1, alt_tok, True)
    accepted[:, :n_fmt] |= alt
    share = alt_share if n_alt else 0.0
    rest = ((1 - p_fmt) * (1 - share) / (vocab - 1 - n_alt)).unsqueeze(-1)
    alt_p = ((1 - p_fmt) * share / max(n_alt, 1)).unsqueeze(-1)
    probs[:, :n_fmt] = torch.where(alt, alt_p, rest)
    probs[:, :n_fmt].scatter_(-1, answers[:, :n_fmt, None], p_fmt.unsqueeze(-1))
    # Forking tokens: right on the first right_frac of prompts, systematically wrong on the rest.
    n_right = int(round(right_frac * prompts))
    right = torch.zeros(prompts, dtype=torch.bool)
    right[torch.randperm(prompts, generator=g)[:n_right]] = True
    fa = answers[:, n_fmt:]
    wrong_tok = (fa + 1 + torch.randint(0, vocab - 1, fa.shape, generator=g)) % vocab  # != answer
    low = right_low[0] + (right_low[1] - right_low[0]) * u(*fa.shape)
    p_right = torch.where(right[:, None], torch.full(fa.shape, right_p), low)
    p_wrong = torch.where(right[:, None], torch.zeros(fa.shape), torch.full(fa.shape, wrong_p))
    rest = (1 - p_right - p_wrong) / (vocab - 2 + right[:, None].float())
    pf = rest.unsqueeze(-1).expand(prompts, forks, vocab).clone()
    pf.scatter_(-1, fa[..., None], p_right.unsqueeze(-1))
    wrong_mask = ~right[:, None].expand_as(fa)
    keep = pf.gather(-1, wrong_tok[..., None]).squeeze(-1)
    pf.scatter_(-1, wrong_tok[..., None], torch.where(wrong_mask, p_wrong, keep).unsqueeze(-1))
    probs[:, n_fmt:] = pf
    probs = probs / probs.sum(-1, keepdim=True)
    assert math.isclose(float(probs.sum(-1).mean()), 1.0, rel_tol=1e-5)
    return TaskInstance(answers, accepted, _logits_for(probs))
