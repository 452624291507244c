"""Shared prompt prefixes: each distinct prompt is computed once per forward, not once per response.

A GRPO batch repeats every prompt ``group_size`` times. The keys and values of a prompt's tokens
do not depend on the response that follows, so one forward over the distinct prompts, whose KV
cache is then gathered to every row (``Cache.reorder_cache``: an index_select, differentiable, so
the gradient of a shared prompt sums over its group), followed by a forward over the response
tokens against that cache, gives the same logits and the same gradient as one forward per full
sequence, up to float rounding. It saves (G - 1) / G of the prompt compute, in sampling and in the
training forwards both.

The split point is the last prompt column: the prefix forward covers columns [0, P - 1) and the
continuation starts at column P - 1, so the continuation's first logit is the one that predicts
the first response token and the prefix forward needs no logits at all. Prompts are left-padded,
so column P - 1 is a real token in every row.
"""

from __future__ import annotations

import torch


def prompt_groups(prompt_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, inverse): rows ``first`` hold the distinct prompts; row i repeats ``first[inverse[i]]``."""
    _, inverse = torch.unique(prompt_ids, dim=0, return_inverse=True)
    n = prompt_ids.shape[0]
    first = torch.full((int(inverse.max()) + 1,), n, dtype=torch.long, device=prompt_ids.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=prompt_ids.device), "amin")
    return first, inverse


def prefix_cache(model, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                 positions: torch.Tensor,
                 groups: tuple[torch.Tensor, torch.Tensor] | None = None):
    """The KV cache of columns [0, P - 1) of every row, computed once per distinct prompt.

    ``positions`` are the prompt's position ids [B, P]; ``groups`` is ``prompt_groups`` of the
    prompt ids when the caller has it already. Gradient flows through the cache when grad is
    enabled. Returns the model's cache object, gathered to all B rows.
    """
    first, inverse = groups if groups is not None else prompt_groups(prompt_ids)
    cut = prompt_ids.shape[1] - 1
    out = model(input_ids=prompt_ids[first, :cut], attention_mask=prompt_mask[first, :cut],
                position_ids=positions[first, :cut], use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.reorder_cache(inverse)
    return cache


def shared_prefix_logits(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                         position_ids: torch.Tensor, prompt_len: int,
                         groups: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits [B, T, V] predicting the T response tokens, the prompt computed once per group.

    The inputs are the rollout layout: left-padded prompt (``prompt_len`` columns) + response.
    Equal, up to float rounding, to a full forward's ``logits[:, P - 1:-1]``.
    """
    p = prompt_len
    cache = prefix_cache(model, input_ids[:, :p], attention_mask[:, :p], position_ids[:, :p], groups)
    out = model(input_ids=input_ids[:, p - 1:-1], attention_mask=attention_mask[:, :-1],
                position_ids=position_ids[:, p - 1:-1], past_key_values=cache, use_cache=True)
    return out.logits
