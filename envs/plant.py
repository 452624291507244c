"""The simulated RLVR plant: many small GRPO learners advanced in one batched computation.

Each plant is a genuine policy-gradient system, not an entropy formula. A softmax policy with
logits per (prompt, position), z[p, l] = theta[p, l] (+ U[p] . W[l] with a low-rank adapter
shared across prompts), samples ``group_size`` responses to each of ``prompts_per_step`` prompts
of the synthetic verifiable task (``envs.sim_task``); binary rewards are checked; advantages are
GRPO group-normalised as the trainer does (``trainer.grpo.group_advantages``: the unbiased
group std), A = (r - mean_group r) / (std_group r + 1e-6); the update minimises the
trainer's regulated loss (``regulator.regulated_policy_loss``, its gradient written out in
closed form) with Adam, over ``mini_batches x epochs`` updates per step.

One plant step = ``rollout()`` (sample, verify, measure entropy before the update) then
``update(knobs)``. All B plants advance together. Each plant is handed to the loss as one
"sequence" of P*G*L tokens with its own knobs ([B, 1] tensors, broadcast by the loss), and
``num_tokens`` = one plant's token count, so the loss is the sum of the per-plant token-mean
losses and each plant's gradient is exactly its own. Tensors keep the vocabulary axis first
([V, B, P, L]): softmax reductions over the small vocabulary then run over contiguous slabs,
much faster on CPU than over the last axis. Random numbers come from a counter-based hash of
(seed, step), so a plant's trajectory depends only on its seed and its knobs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch

from envs.counter_rng import uniform
from envs.plant_config import PlantConfig
from envs.sim_task import make_sim_task
from regulator.knobs import KNOB_NAMES, Knobs

#: eps of the advantage normalisation A = (r - mean) / (std + eps) (the trainer's optim.adv_eps default)
ADV_EPS = 1e-6


def knobs_tensor(knobs: Knobs | Sequence[Knobs] | torch.Tensor, n: int) -> torch.Tensor:
    """[n, 4] float32 tensor (columns in KNOB_NAMES order) from one Knobs, a list, or a tensor."""
    if isinstance(knobs, torch.Tensor):
        t = knobs.to(torch.float32)
        return t.expand(n, 4) if t.dim() == 1 else t
    if isinstance(knobs, Knobs):
        knobs = [knobs] * n
    if len(knobs) != n:
        raise ValueError(f"expected {n} Knobs (one per plant), got {len(knobs)}")
    return torch.tensor([[getattr(k, name) for name in KNOB_NAMES] for k in knobs], dtype=torch.float32)


def single_threaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` on one torch intra-op thread, then restore the caller's setting.

    The plant's tensors are small (tens of thousands of elements): splitting them over threads
    costs more than it saves, and with other busy processes on the cores each extra thread waits
    for one. Setting and restoring the count costs under a microsecond.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before = torch.get_num_threads()
        if before == 1:
            return fn(*args, **kwargs)
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


class SimPlant:
    """``num_plants`` independent simulated GRPO plants (one seed each), batched.

    ``rollout()`` returns per-plant measurements of the current batch (float tensors [B]):
    ``entropy`` (token-mean entropy in nats before the update), ``accuracy``, ``reward_mean``,
    ``pos_token_frac``, ``neg_token_frac``, ``mixed_groups`` and, with ``dh_stats``,
    ``dh_pos``/``dh_neg``. ``update(knobs)`` applies the knobs to that batch and returns
    ``loss``, ``clip_frac_low``, ``clip_frac_high`` (means over the step's updates).
    """

    def __init__(self, config: PlantConfig | None = None, num_plants: int = 1,
                 seeds: Sequence[int] | int | None = 0) -> None:
        self.config = config or PlantConfig()
        self.num_plants = int(num_plants)
        self.batch: dict[str, torch.Tensor] | None = None
        self.reset(seeds)

    # ------------------------------------------------------------------ state
    def reset(self, seeds: Sequence[int] | int | None = 0, mask: torch.Tensor | None = None) -> None:
        """(Re)start plants from their seeds: new task, policy at its start, fresh Adam state.

        ``seeds``: one int (plant b gets seed + b), a list (one per plant) or None (random).
        ``mask`` (bool [B]) restarts only the selected plants.
        """
        c, B = self.config, self.num_plants
        if seeds is None:
            seeds = [int(torch.randint(0, 2**31 - 1, ()).item()) + b for b in range(B)]
        elif isinstance(seeds, int):
            seeds = [seeds + b for b in range(B)]
        seeds = [int(s) for s in seeds]
        if len(seeds) != B:
            raise ValueError(f"expected {B} seeds, got {len(seeds)}")
        L, V, r = c.length, c.vocab, max(c.rank, 1)
        if mask is None or not hasattr(self, "theta"):
            mask = torch.ones(B, dtype=torch.bool)
            self.seed_t = torch.zeros(B, dtype=torch.long)
            self.steps_done = torch.zeros(B, dtype=torch.long)
            self.theta = torch.zeros(V, B, c.prompts, L)  # tabular logits, vocabulary first
            self.U = torch.zeros(B, c.prompts, r)  # fixed prompt features of the adapter
            self.W = torch.zeros(B, r, L * V)  # trained adapter weights
            self.accepted = torch.zeros(V, B, c.prompts, L, dtype=torch.bool)
            self._adam = {n: (torch.zeros_like(p), torch.zeros_like(p)) for n, p in self._params().items()}
            self.t = torch.zeros(B)
            self.b1t, self.b2t = torch.ones(B), torch.ones(B)  # beta1^t, beta2^t
        for b in torch.nonzero(mask).flatten().tolist():
            g = torch.Generator().manual_seed(seeds[b])
            task = make_sim_task(c.regime, prompts=c.prompts, length=L, forks=c.forks, vocab=V,
                             generator=g, alternates=c.alternates, alt_share=c.alt_share)
            self.theta[:, b] = task.logits0.permute(2, 0, 1)
            self.accepted[:, b] = task.accepted.permute(2, 0, 1)
            if c.rank:
                self.U[b] = c.shared_scale * torch.randn(c.prompts, c.rank, generator=g)
            self.W[b] = 0.0
            for m, v in self._adam.values():
                self._plant_slice(m, b).zero_()
                self._plant_slice(v, b).zero_()
            self.t[b] = 0.0
            self.b1t[b] = self.b2t[b] = 1.0
            self.seed_t[b] = seeds[b]
            self.steps_done[b] = 0
        self.seeds = self.seed_t.tolist()
        self.batch = None

    def _params(self) -> dict[str, torch.Tensor]:
        return {"theta": self.theta, "W": self.W} if self.config.rank else {"theta": self.theta}

    @staticmethod
    def _plant_axis(p: torch.Tensor) -> int:
        return 1 if p.dim() == 4 else 0  # theta is [V, B, ...]; W is [B, ...]

    def _plant_slice(self, p: torch.Tensor, b: int) -> torch.Tensor:
        return p[:, b] if self._plant_axis(p) == 1 else p[b]

    def _flat_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows of the [B * prompts] flattening for plant b's prompts idx[b]: b * prompts + idx."""
        return (torch.arange(self.num_plants)[:, None] * self.config.prompts + idx).reshape(-1)

    def _logits(self, idx: torch.Tensor, theta: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """z[:, b, i] = theta[:, b, idx[b, i]] (+ U[b, idx[b, i]] . W[b])  -> [V, B, P, L]."""
        c, B = self.config, self.num_plants
        V, P, L = c.vocab, idx.shape[1], c.length
        flat = self._flat_rows(idx)
        z = theta.view(V, B * c.prompts, L).index_select(1, flat).view(V, B, P, L)
        if c.rank:
            u = self.U.view(B * c.prompts, -1).index_select(0, flat).view(B, P, -1)
            z = z + torch.bmm(u, W).view(B, P, L, V).permute(3, 0, 1, 2)
        return z

    @staticmethod
    def _softmax(z: torch.Tensor, probs: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log softmax, softmax) over the leading (vocabulary) axis.

        zs = z - max z; e = exp(max(zs, -60)); log p = zs - log sum e, p = e / sum e. The floor
        only touches tokens with p < 1e-26 (nothing at float32 precision) and keeps exp off
        underflowing arguments, which are much slower than normal ones on CPU.
        """
        zs = z - z.detach().amax(0, keepdim=True)
        e = zs.clamp(min=-60.0).exp()
        s = e.sum(0, keepdim=True)
        return zs - s.log(), (e / s if probs else None)

    # ------------------------------------------------------------------ rollout
    @single_threaded
    @torch.no_grad()
    def rollout(self) -> dict[str, torch.Tensor]:
        """Sample this step's batch from the current policy and measure it (before any update).

        Sampled tensors keep the sample axis first ([G, B, P, L]) so that broadcasting against
        per-(prompt, position) tensors runs over contiguous slabs.
        """
        c, B = self.config, self.num_plants
        P, G, L, V = c.prompts_per_step, c.group_size, c.length, c.vocab
        # One draw per plant and step: a random subset of prompts, then one uniform per token.
        r = uniform(self.seed_t, self.steps_done, 0, c.prompts + G * P * L)
        idx = r[:, : c.prompts].argsort(-1)[:, :P]
        u = r[:, c.prompts :].view(B, G, P, L).transpose(0, 1)  # [G, B, P, L]
        z = self._logits(idx, self.theta, self.W)
        logp, p = self._softmax(z)  # [V, B, P, L]
        # Every token of the batch at (prompt, position) sees the same distribution, so the
        # token-mean entropy of the batch is the mean over (prompt, position) of H.
        ent = -(p * logp).sum(0)  # [B, P, L]
        # Inverse-CDF sampling, a = #{v < V-1 : u > F(v)}; ceil(max(u - F, 0)) is that indicator
        # in float arithmetic (much faster than a bool comparison here).
        cdf = p.cumsum(0)[:-1]
        actions = (u.unsqueeze(0) - cdf.unsqueeze(1)).clamp_(min=0).ceil_().sum(0).long()
        old_lp = logp.gather(0, actions)  # log pi_old(a) per token, [G, B, P, L]
        acc = self.accepted.view(V, B * c.prompts, L).index_select(1, self._flat_rows(idx)).view(V, B, P, L)
        reward = acc.gather(0, actions).all(-1).float()  # verifier: all tokens accepted, [G, B, P]
        mean = reward.mean(0)
        # the trainer's GRPO normalisation: unbiased group std of the binary rewards, eps 1e-6
        std = (mean * (1 - mean) * (G / (G - 1))).sqrt() if G > 1 else torch.zeros_like(mean)
        adv = (reward - mean) / (std + ADV_EPS)
        sign = adv.sign()
        self.batch = {"idx": idx, "actions": actions, "old_lp": old_lp, "adv": adv}
        out = {
            "entropy": ent.mean((1, 2)),
            "accuracy": mean.mean(1),
            "reward_mean": mean.mean(1),
            "pos_token_frac": sign.clamp(min=0).mean((0, 2)),
            "neg_token_frac": (-sign).clamp(min=0).mean((0, 2)),
            "mixed_groups": std.sign().mean(1),
        }
        if c.dh_stats:
            out.update(self._dh_stats(p, logp, ent, old_lp, adv))
        return out

    @staticmethod
    def _dh_stats(p: torch.Tensor, logp: torch.Tensor, ent: torch.Tensor, old_lp: torch.Tensor,
                  adv: torch.Tensor) -> dict[str, torch.Tensor]:
        """First-order entropy change of the A>0 and A<0 tokens, per plant.

        The same quantity as ``regulator.predicted_entropy_change`` on ``regulator.token_stats``
        (a test checks it), computed batched: c = -[p_a (log p_a + H) - sum_k p_k^2 (log p_k + H)],
        dh_pos = sum_{A>0} A c / N, dh_neg = sum_{A<0} A c / N.
        """
        s = (p * p * (logp + ent)).sum(0)  # [B, P, L]
        coef = s - old_lp.exp() * (old_lp + ent)  # c per token, [G, B, P, L]
        c_seq = coef.sum(-1)  # A is per response: sum_{A>0} A c = sum_seq max(A, 0) sum_l c
        n = float(old_lp[:, 0].numel())
        return {
            "dh_pos": (adv.clamp(min=0) * c_seq).sum((0, 2)) / n,
            "dh_neg": (adv.clamp(max=0) * c_seq).sum((0, 2)) / n,
        }

    # ------------------------------------------------------------------ update
    @single_threaded
    @torch.no_grad()
    def update(self, knobs: Knobs | Sequence[Knobs] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Apply ``mini_batches x epochs`` Adam updates of the regulated loss on the last rollout.

        ``knobs``: one Knobs for every plant, a list of B Knobs, or a [B, 4] tensor (KNOB_NAMES
        order). Returns per-plant ``loss``, ``clip_frac_low`` and ``clip_frac_high`` (means over
        the updates; clip fractions are fractions of the plant's tokens).

        The gradient is written out rather than taken by autograd (a test checks it against
        autograd through ``regulated_policy_loss``): per plant, with N its tokens,
            L = -(1/N) sum_tok w s,   s = min(r A, clip(r, 1 - eps_low, 1 + eps_high) A)
            dL/dlog pi(a) = c = -(w A r / N) [not clipped],   dlog pi(a)/dz = onehot(a) - pi
        so dL/dz at a (prompt, position) = sum over its samples of c (onehot(a) - pi).
        """
        if self.batch is None:
            raise RuntimeError("SimPlant.update() needs a rollout() first")
        c, B = self.config, self.num_plants
        P, G, L, V = c.prompts_per_step, c.group_size, c.length, c.vocab
        M = c.mini_batches
        kt = knobs_tensor(knobs, B)
        if not torch.isfinite(kt[:, :3]).all() or torch.isnan(kt[:, 3]).any():
            raise ValueError("knobs must be finite (eps_high may be inf)")
        w_pos, w_neg, eps_low, eps_high = (kt[:, i].view(1, B, 1, 1) for i in range(4))
        lo, hi = 1 - eps_low, 1 + eps_high
        idx, actions, old_lp, adv = (self.batch[k] for k in ("idx", "actions", "old_lp", "adv"))
        ntok = float((G // M) * P * L)  # one plant's tokens in a mini-batch
        flat = self._flat_rows(idx)
        # Split every prompt's samples across mini-batches (splitting by prompt would leave a
        # tabular plant on-policy). Per mini-batch: actions, log pi_old, A, [A > 0], [A < 0]
        # (float arithmetic: sign(max(x, 0)) = [x > 0]) and the weight w by the sign of A.
        parts = []
        for m in range(M):
            A = adv[m::M].unsqueeze(-1)  # [Gm, B, P, 1]
            pos, neg = A.clamp(min=0).sign(), (-A).clamp(min=0).sign()
            parts.append((actions[m::M], old_lp[m::M], A, pos, neg, pos * w_pos + neg * w_neg))
        loss_acc, clip_lo, clip_hi = torch.zeros(B), torch.zeros(B), torch.zeros(B)
        # a braked plant (both weights 0) has no gradient; as in the trainer it takes its Adam
        # step at zero learning rate: its moments decay and its parameters stay
        live = (kt[:, 0] != 0) | (kt[:, 1] != 0)
        for _ in range(c.epochs):
            for acts, olp, A, pos, neg, w in parts:
                logp, p = self._softmax(self._logits(idx, self.theta, self.W))  # [V, B, P, L]
                ratio = (logp.gather(0, acts) - olp).exp()  # [Gm, B, P, L]
                s = torch.minimum(ratio * A, torch.clamp(ratio, lo, hi) * A)
                low = neg * (lo - ratio).clamp(min=0).sign()   # A < 0, r < 1 - eps_low: no gradient
                high = pos * (ratio - hi).clamp(min=0).sign()  # A > 0, r > 1 + eps_high: no gradient
                loss_acc -= (w * s).sum((0, 2, 3)) / ntok
                clip_lo += low.sum((0, 2, 3)) / ntok
                clip_hi += high.sum((0, 2, 3)) / ntok
                coef = w * A * ratio * (1 - low - high) * (-1.0 / ntok)  # dL/dlog pi(a)
                dz = torch.zeros(V, B, P, L).scatter_add_(0, acts, coef) - p * coef.sum(0)
                grads = [torch.zeros_like(self.theta).view(V, B * c.prompts, L)
                         .index_add_(1, flat, dz.view(V, B * P, L)).view_as(self.theta)]
                if c.rank:  # z += (U W) reshaped: dL/dW[b] = U[b]^T dz[b]
                    u = self.U.view(B * c.prompts, -1).index_select(0, flat).view(B, P, -1)
                    grads.append(torch.bmm(u.transpose(1, 2), dz.permute(1, 2, 3, 0).reshape(B, P, L * V)))
                self._adam_step(self._params(), grads, live)
        n = float(c.updates_per_step)
        self.batch = None
        self.steps_done += 1
        return {"loss": loss_acc / n, "clip_frac_low": clip_lo / n, "clip_frac_high": clip_hi / n}

    def _adam_step(self, params: dict[str, torch.Tensor], grads: Sequence[torch.Tensor],
                   live: torch.Tensor | None = None) -> None:
        """Adam (Kingma & Ba) with a per-plant step counter, so single plants can restart:
        m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, p -= lr m_hat / (sqrt(v_hat) + eps).
        Plants not ``live`` (default: all are; braked, so their g is 0) step at zero learning
        rate: their moments decay and their parameters stay (``trainer.engine.drain_momentum``:
        the brake spends the momentum instead of keeping it for the next live step)."""
        c = self.config
        b1, b2 = c.betas
        if live is None:
            live = torch.ones(self.num_plants, dtype=torch.bool)
        self.t += 1.0
        self.b1t.mul_(b1)
        self.b2t.mul_(b2)
        bc1, bc2 = 1 - self.b1t, 1 - self.b2t  # bias corrections 1 - beta^t, per plant
        # PyTorch's form: p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
        #                    = (lr sqrt(bc2) / bc1) m / (sqrt(v) + eps sqrt(bc2))
        step = torch.where(live, c.lr * bc2.sqrt() / bc1.clamp(min=1e-30), 0.0)
        eps = c.adam_eps * bc2.sqrt()
        for (name, p), g in zip(params.items(), grads):
            m, v = self._adam[name]
            shape = [1] * p.dim()
            shape[self._plant_axis(p)] = -1
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            # sqrt(v + 1e-30): identical to sqrt(v) at float32 precision next to eps, but it
            # keeps exact zeros (rows never sampled) out of sqrt, which is much slower on them
            p.sub_(m.div(v.add(1e-30).sqrt_().add_(eps.view(shape))).mul_(step.view(shape)))
