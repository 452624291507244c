"""``regulator train``: GRPO with the entropy control interface on a DeepSpeed engine.

``train_main`` builds everything from the config, then calls ``train_step`` once per step.
``train_step`` is the whole algorithm, top to bottom on one screen.
"""

from __future__ import annotations

import logging
import math
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from regulator import Knobs, Regulator
from regulator.config import apply_overrides, load_yaml
from regulator.errors import ConfigError
from regulator.safety import ControllerFailure
from trainer.config import TrainConfig
from trainer.grpo import all_sum, comm_device, group_advantages, measure, update, world_size
from trainer.logging import RunLogger, read_metrics, summarise, write_json_atomic
from trainer.rewards import RewardAbort

log = logging.getLogger("trainer")
EXIT_OK, EXIT_FAILURE = 0, 1


@dataclass
class Run:
    """Everything a training step touches."""

    cfg: TrainConfig
    engine: Any
    tokenizer: Any
    backend: Any
    reward_fn: Any
    regulator: Regulator
    stream: Any
    rank: int
    world: int
    micro_batch: int                  # sequences per forward/backward
    shared_forward: bool              # one forward serves entropy, old log-probs and the loss
    format_prompt: Any
    eval_examples: list = field(default_factory=list)
    last_clip: dict[str, float] = field(default_factory=dict)
    updating: bool = False            # True while the weights are being changed
    updates: int = 0                  # regulated updates applied to the weights by this process


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


def set_learning_rate(run: Run, step: int, k: int) -> None:
    lr = learning_rate(run.cfg, step, k)
    for group in run.engine.optimizer.param_groups:
        group["lr"] = lr


def check_finite_weights(model: torch.nn.Module, step: int) -> None:
    """Raise FloatingPointError when any weight is NaN or inf (one fused norm per tensor list)."""
    params = [p.detach() for p in model.parameters()]
    norms = torch._foreach_norm(params) if params else []
    bad = [n for (n, _), v in zip(model.named_parameters(), norms) if not torch.isfinite(v)]
    if bad:
        raise FloatingPointError(f"non-finite weights after step {step} ({len(bad)} tensors, e.g. "
                                 f"{bad[0]}): the update diverged (check optim.lr, "
                                 "optim.weight_decay and the rewards)")


def train_step(run: Run, step: int) -> dict[str, float]:
    """One GRPO step with the control interface."""
    cfg, ro, G = run.cfg, run.cfg.rollout, run.cfg.rollout.group_size
    t0 = time.perf_counter()
    # 1. rollout: this rank's share of the global prompt batch, G samples per prompt
    per_rank = ro.prompts // run.world
    batch = run.stream.next_batch()[run.rank * per_rank:(run.rank + 1) * per_rank]
    group = [ex for ex in batch for _ in range(G)]
    seeds = [sample_seed(cfg.train.seed, step, run.rank * per_rank + i, j)
             for i in range(per_rank) for j in range(G)]
    rollout = run.backend.generate([run.format_prompt(run.tokenizer, ex.prompt) for ex in group], seeds)
    t_gen = time.perf_counter() - t0
    # 2. verifiable rewards (a raising or slow reward function gives 0 and counts a failure)
    res = run.reward_fn(rollout.responses, group)
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
    m = measure(run.engine, rollout, adv, ro.temperature, keep_graph=run.shared_forward,
                micro_batch=run.micro_batch)
    pos, neg = (adv > 0).float() * mask, (adv < 0).float() * mask
    tot = all_sum([float(rewards.sum()), float(sum(res.correct)), float(rewards.numel()),
                   float(pos.sum()), float(neg.sum()), float(mask.sum()), float(res.failures),
                   float(zero_var.sum()), float(per_rank)])
    n_seq, n_tok = tot[2].item(), max(tot[5].item(), 1.0)
    seen = {"reward_mean": tot[0].item() / n_seq, "accuracy": tot[1].item() / n_seq,
            "pos_token_frac": tot[3].item() / n_tok, "neg_token_frac": tot[4].item() / n_tok}
    t_m = time.perf_counter() - t_m
    entropy = m.entropy if tot[5].item() > 0 else math.nan  # no response token: nothing measured
    if not math.isfinite(entropy) and tot[5].item() > 0:
        check_finite_weights(run.engine.module, step)  # a NaN policy is a failure, not a skip
    if not math.isfinite(entropy):
        # 4b. nothing to measure or learn from (every response empty, or a diverged forward):
        # skip the controller and the update, hold the knobs, log the step and go on
        knobs, t_c, t_upd = run.regulator.knobs, 0.0, 0.0
        upd = {"loss/policy": math.nan, "clip/frac_low": math.nan, "clip/frac_high": math.nan}
        run.regulator.last_event = (f"step {step} skipped: entropy {entropy} over {tot[5].item():.0f} "
                                    "response tokens (no controller call, no update, knobs held)")
    else:
        # 5. the controller picks this step's knobs (every rank gets rank 0's)
        t_c = time.perf_counter()
        knobs = broadcast_knobs(run.regulator.step(step, m.entropy, **seen, **run.last_clip, **m.dh,
                                                   mixed_groups=1.0 - tot[7].item() / tot[8].item()))
        t_c = time.perf_counter() - t_c + m.stats_s  # control = Regulator + entropy statistics
        # 6. regulated GRPO update: mini-batches x epochs, global token normalisation
        t1, run.updating = time.perf_counter(), True
        upd = update(run.engine, rollout, m, adv, loss_mask, knobs, temperature=ro.temperature,
                     mini_batches=cfg.optim.mini_batches, epochs=cfg.optim.epochs,
                     micro_batch=run.micro_batch, seed=sample_seed(cfg.train.seed, step, -1, 0),
                     set_lr=lambda k: set_learning_rate(run, step, k))
        if not math.isfinite(upd["loss/policy"]):  # the weights may be corrupt: no checkpoint
            raise FloatingPointError(f"non-finite loss {upd['loss/policy']} at step {step}: the "
                                     "weights diverged (lower optim.lr, check the rewards)")
        check_finite_weights(run.engine.module, step)
        run.backend.sync_weights(run.engine.module)
        t_upd, run.updating, run.updates = time.perf_counter() - t1, False, run.updates + 1
        run.last_clip = {"clip_frac_low": upd["clip/frac_low"], "clip_frac_high": upd["clip/frac_high"]}
    # 7. the row for metrics.jsonl / tensorboard (the public metric names first)
    return {
        "step": step, "entropy/measured": entropy, "entropy/target": run.regulator.target_at(step),
        **{f"knobs/{k}": v for k, v in knobs.as_dict().items()},
        "reward/mean": seen["reward_mean"], "reward/accuracy": seen["accuracy"], **upd,
        "tokens/pos_frac": seen["pos_token_frac"], "tokens/neg_frac": seen["neg_token_frac"],
        "time/step_s": time.perf_counter() - t0, "time/generate_s": t_gen, "time/update_s": t_upd,
        "time/measure_s": t_m, "time/control_s": t_c, "optim/lr": learning_rate(cfg, step, 0),
        "entropy/dh_pos": m.dh["dh_pos"], "entropy/dh_neg": m.dh["dh_neg"],
        "reward/failures": tot[6].item(), "groups/zero_var_frac": tot[7].item() / tot[8].item(),
        "response/length": tot[5].item() / n_seq, "train/skipped": float(not math.isfinite(entropy)),
        **run.regulator.metrics(),
    }


@torch.no_grad()
def evaluate(run: Run) -> float:
    """Greedy accuracy on the fixed eval prompts (split over ranks)."""
    if not run.eval_examples:
        return math.nan
    mine = run.eval_examples[run.rank::run.world]
    ro = run.backend.generate([run.format_prompt(run.tokenizer, ex.prompt) for ex in mine],
                              [0] * len(mine), greedy=True)
    res = run.reward_fn(ro.responses, mine)
    tot = all_sum([float(sum(res.correct)), float(len(mine))])
    return tot[0].item() / max(tot[1].item(), 1.0)


def _resolve_config(config_path: str | Mapping[str, Any] | None, overrides: Sequence[str],
                    resume: str | None) -> tuple[TrainConfig, TrainConfig | None]:
    """The config to run, and with ``resume`` the run's own config as saved (before overrides)."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError("--resume", "a run directory with config.yaml", str(resume))
        raw = load_yaml(run_dir / "config.yaml")
        if isinstance(config_path, Mapping):
            raise ConfigError("--resume", "no config next to it (a resumed run uses its own)", "a mapping")
        if config_path is not None and Path(config_path).resolve() != (run_dir / "config.yaml").resolve():
            log.info("--resume: using %s/config.yaml (the run's own config); %s is ignored",
                     run_dir, config_path)
        saved = TrainConfig.from_mapping(raw)
        raw = apply_overrides(raw, list(overrides))
        raw.setdefault("train", {})["out_dir"] = str(run_dir)
        cfg = TrainConfig.from_mapping(raw)
        for k in sorted(set(saved.model) | set(cfg.model)):  # the checkpoints hold this model
            if saved.model.get(k) != cfg.model.get(k):
                raise ConfigError(f"model.{k}", f"the run's {saved.model.get(k)!r} on --resume (its "
                                  "checkpoints hold weights of that model)", cfg.model.get(k))
        return cfg, saved
    if config_path is None:
        raise ConfigError("CONFIG", "a config file (or --resume RUN_DIR)")
    raw = dict(config_path) if isinstance(config_path, Mapping) else load_yaml(config_path)
    return TrainConfig.from_mapping(apply_overrides(raw, list(overrides))), None


def _check_resumed_steps(cfg: TrainConfig, saved: TrainConfig, start: int) -> None:
    """A resumed run may extend ``train.steps`` only where that moves nothing already run: not
    below the checkpoint's step, and not under a target curve laid out over ``train.steps``."""
    steps, before = cfg.train.steps, saved.train.steps
    if steps < start:
        raise ConfigError("train.steps", f"at least the checkpoint's step ({start}) on --resume", steps)
    if steps == before:
        return
    lr_then, lr_now = learning_rate(saved, start, 0), learning_rate(cfg, start, 0)
    if abs(lr_then - lr_now) > 1e-12 * lr_then:
        raise ConfigError("train.steps", f"the run's {before} on --resume with this lr schedule",
                          steps, hint=f"optim.scheduler {cfg.optim.scheduler!r} is laid out over "
                          f"train.steps: the lr at step {start} would jump from {lr_then:.3g} to "
                          f"{lr_now:.3g}")
    from regulator.targets import make_target

    old, new = make_target(dict(saved.control.target)), make_target(dict(cfg.control.target))
    for t in (old, new):
        t.scale = 1.0  # relative curves: compare shapes (the scale is the same measured entropy)
    a, b = old(start, before), new(start, steps)
    if abs(a - b) > 1e-9 * max(1.0, abs(a)):
        raise ConfigError("train.steps", f"the run's {before} on --resume with this target", steps,
                          hint=f"the {cfg.control.target.get('kind')} target is laid out over "
                          f"train.steps: the target at step {start} would jump from {a:.4g} to "
                          f"{b:.4g}; start a new run, or give a piecewise target")


def _check_batch(cfg: TrainConfig, world: int) -> tuple[int, bool]:
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


def _check_context(cfg: TrainConfig, task: Any, tokenizer: Any, model: Any, format_prompt: Any,
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
class Session:
    """A built run, ready to step: the Run, its directory and where it starts."""

    run: Run
    run_dir: Path
    start: int = 0
    wall_before: float = 0.0


def build_session(cfg: TrainConfig, *, resume: bool = False, regulator: Regulator | None = None
                  ) -> Session:
    """Build task, reward, controller, model, DeepSpeed engine and rollout backend from ``cfg``;
    with ``resume`` load the latest checkpoint of ``cfg.train.out_dir``. ``regulator`` replaces
    the one ``control:`` describes (the gym env passes its own)."""
    # The user-facing pieces first: a bad task or reward fails before anything heavy.
    from trainer.data import PromptStream
    from trainer.rewards import make_reward
    from trainer.tasks import make_task

    task = make_task(cfg.task, key="task")
    reward_fn = make_reward(cfg.reward, key="reward")
    if regulator is None:
        regulator = cfg.control.build(cfg.train.steps)

    from trainer.engine import build_engine, ds_config, init_distributed

    rank, world = init_distributed()
    micro, shared = _check_batch(cfg, world)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)

    from trainer.models import build_policy, format_prompt
    from trainer.rollout import make_backend

    model, tokenizer = build_policy(cfg.model, key="model", task=task, seed=cfg.train.seed)
    mini = cfg.rollout.prompts // world * cfg.rollout.group_size // cfg.optim.mini_batches
    ds = ds_config(vars(cfg.deepspeed), micro_batch=micro, grad_accum=mini // micro, world_size=world,
                   grad_clip=cfg.optim.grad_clip)
    engine, _ = build_engine(model, vars(cfg.optim), ds)
    backend = make_backend(cfg.rollout, engine.module, tokenizer, model_path=cfg.model.get("path"),
                           seed=cfg.train.seed)
    _check_context(cfg, task, tokenizer, model, format_prompt)
    stream = PromptStream(task, "train", cfg.train.seed, cfg.rollout.prompts)
    eval_examples = []
    if cfg.train.eval_every:
        eval_examples = PromptStream(task, "eval", 0, cfg.train.eval_prompts).next_batch()
    run = Run(cfg=cfg, engine=engine, tokenizer=tokenizer, backend=backend, reward_fn=reward_fn,
              regulator=regulator, stream=stream, rank=rank, world=world, micro_batch=micro,
              shared_forward=shared, format_prompt=format_prompt, eval_examples=eval_examples)
    session = Session(run, Path(cfg.train.out_dir))
    if resume:
        _resume(session, engine, rank)
    return session


def _load_error(e: Exception) -> str:
    """One plain line for a checkpoint that does not load."""
    import pickle
    import re

    if isinstance(e, pickle.UnpicklingError):
        return ("UnpicklingError: refused by torch.load(weights_only=True): the file holds "
                "objects other than tensors and plain data")
    first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    return f"{type(e).__name__}: {first[0] if first else ''}".rstrip(": ")


def _resume(session: Session, engine: Any, rank: int) -> None:
    """Load the newest checkpoint that loads; a damaged one (a torn copy, a full disk) is
    skipped for the one before it, with a warning. None loading is a ConfigError (exit 2)."""
    from trainer.checkpoint import complete_checkpoints, load_checkpoint

    found = complete_checkpoints(session.run_dir)
    if not found:
        log.info("--resume: no checkpoint in %s, starting at step 0", session.run_dir)
        return
    run, failures = session.run, []
    for i, ckpt in enumerate(found):  # every rank sees the same files, so every rank picks the same
        try:
            state = load_checkpoint(ckpt, engine, rank=rank)
            run.regulator.load_state_dict(state["regulator"])
            run.stream.load_state_dict(state["stream"])
            run.last_clip = state.get("last_clip", {})
            session.start, session.wall_before = int(state["step"]), float(state.get("wall_s", 0.0))
        except Exception as e:  # noqa: BLE001 - reported; an older checkpoint may load
            failures.append(f"{ckpt.name}: {_load_error(e)}")
            log.warning("--resume: checkpoint %s does not load (%s)%s", ckpt, failures[-1],
                        "; trying the one before it" if i + 1 < len(found) else "")
            continue
        log.info("resumed %s from %s (step %d)", session.run_dir, ckpt.name, session.start)
        return
    raise ConfigError("--resume", "a run directory with a checkpoint that loads",
                      f"{session.run_dir} ({'; '.join(failures)})")


def _emergency_checkpoint(run: Run, checkpoint: Any, step: int, start: int, done: int, updates: int,
                          before: tuple, existing: list[Path], run_dir: Path, disk: bool) -> None:
    """After a failure at ``step``, save a checkpoint only where weights and state agree:

    - the failure came before this step changed the weights (``run.updates == updates``): the
      weights are those after ``step`` steps, so the rest of the state is rolled back to match;
    - the step finished (row logged) and only its checkpoint failed: state after ``done`` steps.

    A failure between the update and the end of the step's bookkeeping (e.g. the tensorboard
    write) leaves post-update weights with pre-step state: nothing is saved, and the run resumes
    from its last good checkpoint. An existing checkpoint is never overwritten."""
    good = f"; resume with `regulator train --resume {run_dir}`" + (
        f" (from {existing[0].name})" if existing else " (no checkpoint yet: it restarts at step 0)")
    if disk or world_size() > 1:
        log.error("no new checkpoint written%s", good)
        return
    if done == step + 1:
        at, roll = done, None          # the step finished; its own save failed or never came
    elif run.updates == updates and not run.updating and step > start:
        at, roll = step, before        # failed before touching the weights: roll the state back
    else:
        log.error("no checkpoint written: the weights changed at step %d but its state was not "
                  "recorded%s", step, good)
        return
    if any(p.name == f"step-{at:06d}" for p in existing):
        log.error("checkpoint of step %d already on disk%s", at, good)
        return
    if roll is not None:
        run.regulator.load_state_dict(roll[1])
        run.last_clip = roll[2]
    try:
        checkpoint(at, stream_state=roll[0] if roll else None)
        log.error("checkpoint of step %d written; resume with `regulator train --resume %s`", at, run_dir)
    except Exception as e2:  # noqa: BLE001 - best effort
        log.error("no checkpoint written (%s)%s", e2, good)


def train_main(config_path: str | Mapping[str, Any] | None, overrides: Sequence[str] = (),
               resume: str | None = None, *, overwrite: bool = False,
               on_step: Callable[[dict[str, Any]], Any] | None = None) -> int:
    """Run ``regulator train``; 0 on success, 1 on a failure during the run (ConfigError -> CLI 2).

    A run directory that already holds a run is refused unless ``resume`` (continue it) or
    ``overwrite`` (replace it); it is locked for the whole run (``trainer/run_dir.py``).
    ``config_path`` may be a config mapping; ``on_step(row)`` gets every logged metrics row."""
    import os

    from trainer.run_dir import claim_run_dir, holds_run

    cfg, saved = _resolve_config(config_path, overrides, resume)
    run_dir = Path(cfg.train.out_dir)
    lock = claim_run_dir(run_dir, resume=resume is not None, overwrite=overwrite,
                         rank=int(os.environ.get("RANK", 0)))
    try:
        return _train(cfg, saved, resume is not None, on_step)
    except ConfigError:
        if lock is not None and lock.created and not holds_run(run_dir):  # nothing started: leave no trace
            lock.release()
            lock = None
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        if lock is not None:
            lock.release()


def _train(cfg: TrainConfig, saved: TrainConfig | None, resume: bool,
           on_step: Callable[[dict[str, Any]], Any] | None = None) -> int:
    session = build_session(cfg, resume=resume)
    run, run_dir, start, wall_before = session.run, session.run_dir, session.start, session.wall_before
    regulator, rank = run.regulator, run.rank
    from trainer.checkpoint import CheckpointError, complete_checkpoints, save_checkpoint

    if saved is not None:
        _check_resumed_steps(cfg, saved, start)
        if start >= cfg.train.steps:
            log.warning("%s: the run is complete (%d of %d steps); nothing to do. To train on, "
                        "resume with --set train.steps=N (N > %d)", run_dir, start, cfg.train.steps,
                        start)
            return EXIT_OK
    if rank == 0:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.raw, sort_keys=False))
    logger = RunLogger(run_dir, total_steps=cfg.train.steps, start_step=start, rank=rank,
                       tensorboard=cfg.log.tensorboard, progress=cfg.log.progress, config=cfg.raw,
                       backends=cfg.log.backends)

    def checkpoint(step_done: int, stream_state: dict | None = None) -> None:
        state = {"step": step_done, "regulator": regulator.state_dict(),
                 "stream": stream_state or run.stream.state_dict(), "last_clip": run.last_clip,
                 "wall_s": wall_before + time.perf_counter() - t_start}
        save_checkpoint(run_dir, step_done, run.engine, state, rank=rank,
                        keep=cfg.train.keep_checkpoints)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t_start = time.perf_counter()
    step, done = start, start  # done: steps whose update, row and checkpoint bookkeeping finished
    try:
        for step in range(start, cfg.train.steps):
            before = (run.stream.state_dict(), regulator.state_dict(), dict(run.last_clip))
            updates = run.updates
            row = train_step(run, step)
            last = step == cfg.train.steps - 1
            if cfg.train.eval_every and (step % cfg.train.eval_every == 0 or last):
                row["eval/accuracy"] = evaluate(run)
                if cfg.train.eval_samples:  # avg@n, pass@k, distinct-d, ECE (trainer/evaluation.py)
                    from trainer.evaluation import evaluate_sampled

                    row.update(evaluate_sampled(run, step))
            logger.log(row)
            logger.event(step, regulator.last_event)
            if on_step is not None and rank == 0:
                on_step(row)
            done = step + 1
            every = cfg.train.save_every  # 0: no checkpoints at all
            saved = bool(every) and (done % every == 0 or last)
            if saved:
                checkpoint(done)
            if stop["signal"] is not None:
                if every and not saved:
                    checkpoint(done)
                if every:
                    log.warning("%s: checkpoint written after step %d; continue with "
                                "`regulator train --resume %s`", stop["signal"], step, run_dir)
                else:
                    log.warning("%s: stopped after step %d; no checkpoint (train.save_every: 0)",
                                stop["signal"], step)
                return EXIT_FAILURE
    except Exception as e:  # a failure during the run: exit 1, with a checkpoint where possible
        known = isinstance(e, (FloatingPointError, CheckpointError, ControllerFailure, RewardAbort))
        log.error("training failed at step %d: %s%s", step, e, "" if known else "\n" + traceback.format_exc())
        if cfg.train.save_every:
            _emergency_checkpoint(run, checkpoint, step, start, done, updates, before,
                                  complete_checkpoints(run_dir), run_dir, isinstance(e, CheckpointError))
        return EXIT_FAILURE
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        logger.close()
    if rank == 0:
        rows = read_metrics(run_dir / "metrics.jsonl")
        summary = summarise(rows, burn_in=min(cfg.log.burn_in, max(len(rows) - 1, 0)),
                            ema_alpha=cfg.log.ema_alpha,
                            extra={"wall_s": wall_before + time.perf_counter() - t_start,
                                   "controller": regulator.controller_name, "world_size": run.world,
                                   "actuate": list(cfg.control.actuate)})
        write_json_atomic(run_dir / "summary.json", summary)
        from trainer.report import final_report

        extendable = cfg.control.target.get("kind") in ("constant", "piecewise")
        print(final_report(summary, run_dir, total_steps=cfg.train.steps, extendable=extendable),
              flush=True)
    return EXIT_OK
