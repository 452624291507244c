"""GRPO pieces: group-normalised advantages, the measuring forward, and the regulated update.

The training step itself (``trainer.run.train_step``) reads top to bottom:
rollout -> rewards -> advantages -> entropy (before the update) -> Regulator.step -> knobs ->
``update``. This module holds the two halves that touch the model:

- ``measure``: one forward over the rollout batch; token entropy H, log pi_old(a) and the
  first-order entropy-change coefficients at the sampling temperature, summed over ranks.
  When the step makes a single optimizer update from a single micro-batch, this forward keeps
  its graph and also serves the loss (ratio = 1, as verl's on-policy path).
- ``update``: regulated_policy_loss over mini-batches x epochs, each mini-batch normalised by
  its global token count (all ranks), so the gradient does not depend on the rank split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from regulator import Knobs, predicted_entropy_change, regulated_policy_loss, token_stats
from trainer.prefix import prompt_groups, shared_prefix_logits
from trainer.rollout import Rollout


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def comm_device() -> torch.device:
    """Where collectives need their tensors: the GPU under NCCL, else the CPU (gloo)."""
    if world_size() > 1 and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(values: list[float] | torch.Tensor) -> torch.Tensor:
    """Sum a small float64 vector over ranks (identity in a single process); returned on CPU."""
    t = torch.as_tensor(values, dtype=torch.float64).clone()
    if world_size() > 1:
        t = t.to(comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu()


def group_advantages(rewards: torch.Tensor, std_norm: bool = True, eps: float = 1e-6
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO advantages for rewards shaped [prompts, group]: A_ij = (r_ij - mean_i) / (std_i + eps).

    ``std_norm=False`` gives A_ij = r_ij - mean_i (Dr. GRPO). Returns (A, zero_var) with
    zero_var[i] True when every response of prompt i got the same reward (A = 0 there).
    """
    mean = rewards.mean(-1, keepdim=True)
    centred = rewards - mean
    std = rewards.std(-1, keepdim=True, unbiased=True) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
    adv = centred / (std + eps) if std_norm else centred
    zero_var = (rewards.amax(-1) - rewards.amin(-1)) == 0
    return adv.masked_fill(zero_var[:, None], 0.0), zero_var


def response_logits(engine, rollout: Rollout, rows: torch.Tensor | slice = slice(None)) -> torch.Tensor:
    """Logits [b, T, V] that predict the response tokens of the selected rows.

    With ``rollout.shared_prefix`` a prompt repeated in the selection is computed once
    (``trainer.prefix``: same logits and gradient up to float rounding).
    """
    t, p = rollout.response_mask.shape[1], rollout.prompt_len
    ids, mask, pos = rollout.input_ids[rows], rollout.attention_mask[rows], rollout.position_ids()[rows]
    if rollout.shared_prefix and p > 1:
        groups = prompt_groups(ids[:, :p])
        if len(groups[0]) < ids.shape[0]:  # some prompt repeats: compute it once
            return shared_prefix_logits(engine, ids, mask, pos, p, groups)
    out = engine(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=t + 1,
                 use_cache=False)
    return out.logits[:, :-1]


def sampled_logprobs(logits: torch.Tensor, actions: torch.Tensor, temperature: float) -> torch.Tensor:
    """log pi(a) under softmax(z / T), with gradient."""
    z = logits.float() / temperature
    return z.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, -1)


@dataclass
class Measured:
    """What the forward before the update measured, and what the update needs."""

    old_logprobs: torch.Tensor                  # [B, T], detached
    logprobs: torch.Tensor | None               # [B, T] with graph when the forward is shared
    entropy: float                              # token mean over all ranks' response tokens
    dh: dict[str, float] = field(default_factory=dict)  # dh_pos, dh_neg (global token mean)
    stats_s: float = 0.0                        # seconds spent on the entropy statistics


def measure(engine, rollout: Rollout, advantages: torch.Tensor, temperature: float, *,
            keep_graph: bool, micro_batch: int) -> Measured:
    """Entropy and old log-probs of the rollout batch under the policy before the update.

    H is the mean over every response token of every rank (all-reduced sums), at the sampling
    temperature. With ``keep_graph`` a single forward with gradient serves the loss as well.
    """
    mask, actions = rollout.response_mask, rollout.response_ids
    n = mask.shape[0]
    chunks = [slice(0, n)] if keep_graph else [slice(i, i + micro_batch) for i in range(0, n, micro_batch)]
    old, lps, h_sum, c_terms = [], [], 0.0, {"dh_pos": 0.0, "dh_neg": 0.0}
    stats_s = 0.0
    for rows in chunks:
        with torch.set_grad_enabled(keep_graph):
            logits = response_logits(engine, rollout, rows)
            if keep_graph:
                lps.append(sampled_logprobs(logits, actions[rows], temperature))
        t0 = time.perf_counter()  # the statistics reuse these logits: no extra forward
        st = token_stats(logits.detach(), actions[rows], temperature)
        m = mask[rows]
        old.append(st.logprob)
        h_sum += float((st.entropy * m).sum())
        per = predicted_entropy_change(st.dh_coef, advantages[rows], m)  # means over chunk tokens
        for k in c_terms:
            c_terms[k] += per[k] * float(m.sum())
        stats_s += time.perf_counter() - t0  # float() above synchronised the device
        del logits
    tot = all_sum([h_sum, float(mask.sum()), c_terms["dh_pos"], c_terms["dh_neg"]])
    ntok = max(float(tot[1]), 1.0)
    return Measured(
        old_logprobs=torch.cat(old).detach(),
        logprobs=torch.cat(lps) if keep_graph else None,
        entropy=float(tot[0]) / ntok,
        dh={"dh_pos": float(tot[2]) / ntok, "dh_neg": float(tot[3]) / ntok},
        stats_s=stats_s,
    )


def update(engine, rollout: Rollout, measured: Measured, advantages: torch.Tensor,
           loss_mask: torch.Tensor, knobs: Knobs, *, temperature: float, mini_batches: int,
           epochs: int, micro_batch: int, seed: int,
           set_lr: Callable[[int], None] | None = None) -> dict[str, float]:
    """Regulated GRPO loss over ``mini_batches`` x ``epochs`` optimizer steps.

    Sequences are shuffled (seeded by ``seed``) once per epoch and cut into mini-batches; each
    mini-batch is one DeepSpeed optimizer step, accumulated over micro-batches. Every micro-batch
    loss is divided by the mini-batch's global token count N (all ranks), and multiplied by the
    world size because DeepSpeed averages gradients over ranks:
        L = -(1/N) sum_{tokens in mini-batch, all ranks} w(A) min(r A, clip(r) A)
    ``set_lr(k)`` is called before the k-th optimizer step of this call (the lr schedule).
    Returns loss/policy and the clip / token statistics over everything this step touched.
    """
    n = loss_mask.shape[0]
    ws = world_size()
    gen = torch.Generator().manual_seed(int(seed))
    acc = None  # loss, clip_low tokens, clip_high tokens, tokens: summed on the device, one sync
    updates = 0
    actions = rollout.response_ids
    for _epoch in range(epochs):
        order = torch.randperm(n, generator=gen) if mini_batches > 1 else torch.arange(n)
        for mb in order.chunk(mini_batches):
            if set_lr is not None:
                set_lr(updates)
            n_global = float(all_sum([float(loss_mask[mb].sum())])[0])
            for i in range(0, len(mb), micro_batch):
                rows = mb[i:i + micro_batch]
                if measured.logprobs is not None:  # the measuring forward's graph (ratio = 1)
                    lp = measured.logprobs[rows]
                else:
                    lp = sampled_logprobs(response_logits(engine, rollout, rows), actions[rows],
                                          temperature)
                loss, st = regulated_policy_loss(lp, measured.old_logprobs[rows], advantages[rows],
                                                 loss_mask[rows], knobs,
                                                 num_tokens=max(n_global, 1.0))
                engine.backward(loss * ws, scale_wrt_gas=False)
                engine.step()
                tok = st["tokens"]
                row = torch.stack([loss.detach(), st["clip_frac_low"] * tok,
                                   st["clip_frac_high"] * tok, tok]).double()
                acc = row if acc is None else acc + row
            updates += 1
    tot = all_sum(acc.cpu() if acc is not None else torch.zeros(4, dtype=torch.float64))
    updates = max(float(updates), 1.0)
    ntok = max(float(tot[3]), 1.0)
    return {"loss/policy": float(tot[0]) / updates, "clip/frac_low": float(tot[1]) / ntok,
            "clip/frac_high": float(tot[2]) / ntok}
