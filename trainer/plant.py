"""The DeepSpeed GRPO trainer as a ``regulator.plant.Plant``: one training step is ``measure()``
then ``update(knobs)``.

``measure`` samples this rank's share of the prompt batch, scores it, normalises the advantages
and measures the entropy (and dh statistics) of the batch under the policy before the update;
``update`` applies the regulated GRPO update with the controller's knobs. Between the two the
loop (``regulator.plant.loop_step``) asks the Regulator. The plant holds no controller: the
same plant serves ``regulator train``, ``regulator tune``, the bench and EntropyTrain-v0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from regulator.config import apply_overrides, load_yaml
from regulator.errors import ConfigError
from regulator.knobs import Knobs
from regulator.plant import Measurement
from trainer.config import TrainConfig
from trainer.engine import drain_momentum, torch_optimizer
from trainer.grpo import all_sum, comm_device, group_advantages, measure, update, world_size


def sample_seed(seed: int, step: int, prompt: int, sample: int) -> int:
    """The sampling seed of (run seed, step, global prompt index, sample index). Values outside
    the range a torch generator takes ([-2^63, 2^64)) are folded into 63 bits; the small seeds
    that never reach it keep their streams."""
    s = ((seed * 1_000_003 + step) * 1_000_033 + prompt) * 1_009 + sample
    return s if -2**63 <= s < 2**64 else s % 2**63


def broadcast_knobs(knobs: Knobs) -> Knobs:
    """Rank 0's knobs on every rank (they are already equal: identical inputs, deterministic
    controllers; this makes it a guarantee)."""
    if world_size() == 1:
        return knobs
    import torch.distributed as dist

    t = torch.tensor([knobs.w_pos, knobs.w_neg, knobs.eps_low, knobs.eps_high], dtype=torch.float64,
                     device=comm_device())
    dist.broadcast(t, src=0)
    return Knobs(*t.cpu().tolist())


def learning_rate(cfg: TrainConfig, step: int, k: int) -> float:
    """The lr of the k-th optimizer step of training step ``step`` (``optim.scheduler``)."""
    from trainer.schedule import lr_factor, warmup_steps

    op = cfg.optim
    per_step = op.mini_batches * op.epochs
    total = cfg.train.steps * per_step
    return op.lr * lr_factor(op.scheduler, step * per_step + k, total,
                             warmup_steps(total, op.warmup_steps, op.warmup_ratio))


def check_finite_weights(model: torch.nn.Module, step: int) -> None:
    """Raise FloatingPointError when any weight is NaN or inf (one fused norm per tensor list)."""
    params = [p.detach() for p in model.parameters()]
    norms = torch._foreach_norm(params) if params else []
    bad = [n for (n, _), v in zip(model.named_parameters(), norms) if not torch.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite weights after step {step} ({len(bad)} tensors, e.g. "
                                 f"{bad[0]}): the update diverged (check optim.lr, "
                                 "optim.weight_decay and the rewards)")


def check_batch(cfg: TrainConfig, world: int) -> tuple[int, bool]:
    """Micro-batch size and whether one forward can serve both measurement and loss."""
    ro, op = cfg.rollout, cfg.optim
    if ro.prompts % world:
        raise ConfigError("rollout.prompts", f"a multiple of the number of ranks ({world})", ro.prompts)
    local = ro.prompts // world * ro.group_size
    if local % op.mini_batches:
        raise ConfigError("optim.mini_batches", f"a divisor of the sequences per rank ({local})",
                          op.mini_batches)
    mini = local // op.mini_batches
    micro = op.micro_batch_size or mini
    if mini % micro:
        raise ConfigError("optim.micro_batch_size", f"a divisor of the mini-batch size ({mini})", micro)
    return micro, (op.mini_batches * op.epochs == 1 and micro == mini)


def check_context(cfg: TrainConfig, task: Any, tokenizer: Any, model: Any, format_prompt: Any,
                  sample: int = 64) -> None:
    """A prompt plus ``rollout.max_new_tokens`` must fit the model's positions (checked on the
    first ``sample`` training prompts), or generation fails mid-run."""
    limit = getattr(model.config, "max_position_embeddings", None)
    n = task.num_examples("train")
    if not limit:
        return
    longest = max((len(tokenizer(format_prompt(tokenizer, task.example("train", i).prompt))["input_ids"])
                   for i in range(min(sample, n or sample))), default=0)
    need = longest + cfg.rollout.max_new_tokens
    if need > limit:
        tiny = str(cfg.model.get("name", "")).startswith("tiny")  # built here: max_positions is ours
        key = "model.max_positions" if tiny else "rollout.max_new_tokens"
        given = limit if key == "model.max_positions" else cfg.rollout.max_new_tokens
        raise ConfigError(key, f"room for the longest prompt ({longest} tokens) plus "
                          f"rollout.max_new_tokens ({cfg.rollout.max_new_tokens}) = {need} positions "
                          f"(the model has {limit})", given)


@dataclass
class _Batch:
    """What ``measure`` leaves for ``update``: the rollout and its measurement."""

    rollout: Any
    measured: Any
    adv: torch.Tensor
    loss_mask: torch.Tensor
    entropy: float


class TrainerPlant:
    """The trainer as a Plant (one learner): built from a training config, stepped by the loop.

    Besides the protocol it holds what evaluation and checkpoints need (``engine``, ``backend``,
    ``stream``, ``eval_examples`` ...), ``state_dict()`` / ``load_state_dict()`` for the state a
    checkpoint keeps besides the weights, and ``updates`` / ``updating`` (regulated updates
    applied by this process, and whether the weights are being changed right now).
    """

    num_plants = 1

    def __init__(self, cfg: TrainConfig) -> None:
        """Build task, reward, model, DeepSpeed engine and rollout backend from ``cfg``."""
        # The user-facing pieces first: a bad task or reward fails before anything heavy.
        from trainer.data import PromptStream
        from trainer.rewards import make_reward
        from trainer.tasks import make_task

        self.cfg = cfg
        task = make_task(cfg.task, key="task")
        self.reward_fn = make_reward(cfg.reward, key="reward")

        from trainer.engine import build_engine, ds_config, init_distributed, warn_slow_cpu_bf16
        from trainer.models import build_policy, format_prompt
        from trainer.rollout import make_backend

        self.rank, self.world = init_distributed()
        self.micro_batch, self.shared_forward = check_batch(cfg, self.world)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.train.seed)
        model, self.tokenizer = build_policy(cfg.model, key="model", task=task, seed=cfg.train.seed)
        mini = cfg.rollout.prompts // self.world * cfg.rollout.group_size // cfg.optim.mini_batches
        ds = ds_config(vars(cfg.deepspeed), micro_batch=self.micro_batch,
                       grad_accum=mini // self.micro_batch, world_size=self.world,
                       grad_clip=cfg.optim.grad_clip)
        warn_slow_cpu_bf16(cfg.deepspeed.bf16)
        self.engine, _ = build_engine(model, vars(cfg.optim), ds)
        self.backend = make_backend(cfg.rollout, self.engine.module, self.tokenizer,
                                    model_path=cfg.model.get("path"), seed=cfg.train.seed)
        self.format_prompt = format_prompt
        check_context(cfg, task, self.tokenizer, model, format_prompt)
        self.stream = PromptStream(task, "train", cfg.train.seed, cfg.rollout.prompts)
        self.eval_examples = []
        if cfg.train.eval_every:
            self.eval_examples = PromptStream(task, "eval", 0, cfg.train.eval_prompts).next_batch()
        self.step = 0
        self.total_steps = cfg.train.steps
        self.last_clip = {"clip_frac_low": 0.0, "clip_frac_high": 0.0}
        self.updating = False
        self.updates = 0
        self._batch: _Batch | None = None

    @classmethod
    def from_config(cls, config: str | Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainerPlant:
        """A plant from a training config (a YAML path or a mapping) and ``--set``-style overrides."""
        raw = dict(config) if isinstance(config, Mapping) else load_yaml(config)
        return cls(TrainConfig.from_mapping(apply_overrides(raw, list(overrides))))

    # -- checkpointed state besides the weights --------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "last_clip": dict(self.last_clip)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.last_clip = {"clip_frac_low": 0.0, "clip_frac_high": 0.0, **state.get("last_clip", {})}

    # -- the protocol ------------------------------------------------------------------------------
    def measure(self) -> list[Measurement]:
        """Rollout, rewards, advantages and the entropy of the batch before the update."""
        cfg, ro, G, step = self.cfg, self.cfg.rollout, self.cfg.rollout.group_size, self.step
        t0 = time.perf_counter()
        # 1. rollout: this rank's share of the global prompt batch, G samples per prompt
        per_rank = ro.prompts // self.world
        batch = self.stream.next_batch()[self.rank * per_rank:(self.rank + 1) * per_rank]
        group = [ex for ex in batch for _ in range(G)]
        seeds = [sample_seed(cfg.train.seed, step, self.rank * per_rank + i, j)
                 for i in range(per_rank) for j in range(G)]
        rollout = self.backend.generate([self.format_prompt(self.tokenizer, ex.prompt) for ex in group],
                                        seeds)
        t_gen = time.perf_counter() - t0
        # 2. verifiable rewards (a raising or slow reward function gives 0 and counts a failure)
        res = self.reward_fn(rollout.responses, group)
        rewards = torch.tensor(res.rewards, dtype=torch.float64).view(per_rank, G)
        # 3. group-normalised advantages A_ij = (r_ij - mean_i) / (std_i + eps), one per sequence
        # (float64: the normalisation is scale-free, so huge rewards must not overflow before it)
        adv, zero_var = group_advantages(rewards, cfg.optim.adv_std_norm, cfg.optim.adv_eps)
        adv = adv.float()
        if not torch.isfinite(adv).all():
            raise FloatingPointError(f"advantages overflow at step {step}: rewards up to "
                                     f"{max(map(abs, res.rewards)):.3g} (scale the reward down, or "
                                     "set optim.adv_std_norm: true)")
        mask = rollout.response_mask
        adv, keep = adv.reshape(-1, 1).to(mask.device), (~zero_var).repeat_interleave(G)[:, None]
        loss_mask = mask * keep.to(mask.device) if cfg.optim.drop_zero_var_groups else mask
        # 4. entropy of the rollout batch under the policy before the update (all ranks)
        t_m = time.perf_counter()
        m = measure(self.engine, rollout, adv, ro.temperature, keep_graph=self.shared_forward,
                    micro_batch=self.micro_batch)
        pos, neg = (adv > 0).float() * mask, (adv < 0).float() * mask
        tot = all_sum([float(rewards.sum()), float(sum(res.correct)), float(rewards.numel()),
                       float(pos.sum()), float(neg.sum()), float(mask.sum()), float(res.failures),
                       float(zero_var.sum()), float(per_rank)])
        t_m = time.perf_counter() - t_m
        n_seq, n_tok = tot[2].item(), tot[5].item()
        entropy = m.entropy if n_tok > 0 else math.nan  # no response token: nothing measured
        if not math.isfinite(entropy) and n_tok > 0:
            check_finite_weights(self.engine.module, step)  # a NaN policy is a failure, not a skip
        self._batch = _Batch(rollout, m, adv, loss_mask, entropy)
        zero_var_frac = tot[7].item() / tot[8].item()
        signals = {"reward_mean": tot[0].item() / n_seq, "accuracy": tot[1].item() / n_seq,
                   "pos_token_frac": tot[3].item() / max(n_tok, 1.0),
                   "neg_token_frac": tot[4].item() / max(n_tok, 1.0), **self.last_clip, **m.dh,
                   "mixed_groups": 1.0 - zero_var_frac}
        metrics = {"reward/failures": tot[6].item(), "groups/zero_var_frac": zero_var_frac,
                   "response/length": n_tok / n_seq, "time/generate_s": t_gen, "time/measure_s": t_m,
                   "time/control_s": m.stats_s, "optim/lr": learning_rate(cfg, step, 0)}
        return [Measurement(entropy, signals, metrics, note=f"over {n_tok:.0f} response tokens")]

    def update(self, knobs: Sequence[Knobs]) -> list[dict[str, float]]:
        """The regulated GRPO update of the measured batch (mini-batches x epochs, global token
        normalisation) with rank 0's knobs; none when the measurement was NaN."""
        if self._batch is None:
            raise RuntimeError("TrainerPlant.update() needs a measure() first")
        b, self._batch, step = self._batch, None, self.step
        t1 = time.perf_counter()
        if not math.isfinite(b.entropy):  # nothing to learn from: the weights stay
            self.step += 1
            return [{"loss/policy": math.nan, "clip/frac_low": math.nan, "clip/frac_high": math.nan,
                     "time/update_s": 0.0}]
        (k,) = knobs
        k = broadcast_knobs(k)
        if k.w_pos == 0.0 and k.w_neg == 0.0:
            # a braked step: every token's weight is 0, so the loss has no gradient. Stepping the
            # optimizer anyway would replay its momentum (Adam keeps moving ~1/(1 - beta1) steps
            # along stale gradients), so a brake would not stop the policy. No backward, no move:
            # the moments decay as on a zero gradient (``drain_momentum``), so the next live step
            # starts from its own weights instead of replaying the last descent
            drain_momentum(torch_optimizer(self.engine), self.cfg.optim.mini_batches * self.cfg.optim.epochs)
            self.step += 1
            self.last_clip = {"clip_frac_low": 0.0, "clip_frac_high": 0.0}  # as logged: none clipped
            return [{"loss/policy": 0.0, "clip/frac_low": 0.0, "clip/frac_high": 0.0,
                     "time/update_s": time.perf_counter() - t1}]
        cfg, self.updating = self.cfg, True
        upd = update(self.engine, b.rollout, b.measured, b.adv, b.loss_mask, k,
                     temperature=cfg.rollout.temperature, mini_batches=cfg.optim.mini_batches,
                     epochs=cfg.optim.epochs, micro_batch=self.micro_batch,
                     seed=sample_seed(cfg.train.seed, step, -1, 0), set_lr=self._set_lr)
        if not math.isfinite(upd["loss/policy"]):  # the weights may be corrupt: no checkpoint
            raise FloatingPointError(f"non-finite loss {upd['loss/policy']} at step {step}: the "
                                     "weights diverged (lower optim.lr, check the rewards)")
        check_finite_weights(self.engine.module, step)
        self.backend.sync_weights(self.engine.module)
        self.updating, self.updates, self.step = False, self.updates + 1, step + 1
        self.last_clip = {"clip_frac_low": upd["clip/frac_low"], "clip_frac_high": upd["clip/frac_high"]}
        return [{**upd, "time/update_s": time.perf_counter() - t1}]

    def _set_lr(self, k: int) -> None:
        lr = learning_rate(self.cfg, self.step, k)
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def evaluate(self) -> float:
        """Greedy accuracy on the fixed eval prompts (split over ranks)."""
        if not self.eval_examples:
            return math.nan
        mine = self.eval_examples[self.rank::self.world]
        ro = self.backend.generate([self.format_prompt(self.tokenizer, ex.prompt) for ex in mine],
                                   [0] * len(mine), greedy=True)
        res = self.reward_fn(ro.responses, mine)
        tot = all_sum([float(sum(res.correct)), float(len(mine))])
        return tot[0].item() / max(tot[1].item(), 1.0)
