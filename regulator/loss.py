"""The regulated GRPO/PPO policy loss and masked reductions."""

from __future__ import annotations

import torch

from regulator.knobs import Knobs


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 where the mask is empty)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def regulated_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    knobs: Knobs,
    num_tokens: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Token-level clipped policy loss with advantage-sign weights (shapes [sequences, tokens]).

    Per token, with ratio r = exp(log pi - log pi_old) and advantage A:
        s = min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)
        w = w_pos if A > 0, w_neg if A < 0
        loss = -sum(w s mask) / N,   N = sum(mask) (or ``num_tokens``)
    Pass ``num_tokens`` = the token count of the whole batch when the batch is split into
    micro-batches, so the accumulated gradient equals the full batch's.

    ``advantages`` may be [sequences, 1] (one per sequence, broadcast). Returns the loss and
    detached stats: ``clip_frac_low`` (A < 0 and r < 1 - eps_low: clipped, no gradient),
    ``clip_frac_high`` (A > 0 and r > 1 + eps_high), ``pos_token_frac``, ``neg_token_frac``
    (fractions of this call's unmasked tokens), and ``tokens`` (their count).
    """
    mask = mask.to(logprobs.dtype)
    adv = advantages.to(logprobs.dtype).expand_as(logprobs)
    ratio = torch.exp(logprobs - old_logprobs)
    lo, hi = 1.0 - knobs.eps_low, 1.0 + knobs.eps_high
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, lo, hi) * adv)
    pos, neg = adv > 0, adv < 0
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    weight = torch.where(pos, zero + knobs.w_pos, zero) + torch.where(neg, zero + knobs.w_neg, zero)
    denom = mask.sum().clamp(min=1) if num_tokens is None else num_tokens
    loss = -(weight * surrogate * mask).sum() / denom
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        stats = {
            "clip_frac_low": ((neg & (ratio < lo)) * mask).sum() / n,
            "clip_frac_high": ((pos & (ratio > hi)) * mask).sum() / n,
            "pos_token_frac": (pos * mask).sum() / n,
            "neg_token_frac": (neg * mask).sum() / n,
            "tokens": mask.sum(),
        }
    return loss, stats


def predicted_entropy_change(
    dh_coef: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor
) -> dict[str, float]:
    """First-order entropy change the A>0 and the A<0 tokens would each cause at unit weight.

    dh_pos = sum_{A>0} A c mask / sum(mask), dh_neg likewise over A<0, with c the per-token
    coefficient of ``token_stats``. Units: nats per unit logit step size. Their signs are the
    cheapest per-step evidence of which way w_pos and w_neg move entropy in this regime.
    """
    mask = mask.to(dh_coef.dtype)
    adv = advantages.to(dh_coef.dtype).expand_as(dh_coef)
    n = mask.sum().clamp(min=1)
    per = adv * dh_coef * mask
    return {
        "dh_pos": float((per * (adv > 0)).sum() / n),
        "dh_neg": float((per * (adv < 0)).sum() / n),
    }
