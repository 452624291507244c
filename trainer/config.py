"""The ``regulator train`` config schema (TrainConfig), validated up front.

Sections: model, task, reward, rollout, optim, deepspeed, control, train, log.
``model``, ``task`` and ``reward`` are checked by their builders (``trainer.models``,
``trainer.tasks``, ``trainer.rewards``); the others are checked here, and every mistake is a
ConfigError naming the key (the CLI prints it and exits 2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from regulator.config import ControlConfig, check_keys, get_typed
from regulator.errors import ConfigError, unknown_name_error
from regulator.knobs import KNOB_NAMES
from trainer.trackers import check_backends

#: top-level sections; ``tune`` is read by ``regulator tune`` only (envs/tune.py), train ignores it
SECTIONS = ("model", "task", "reward", "rollout", "optim", "deepspeed", "control", "train", "log", "tune")


@dataclass
class RolloutConfig:
    """How responses are sampled: ``prompts`` per step (global, over all ranks) x ``group_size``."""

    backend: str = "hf"            # hf (transformers generate) | vllm (CUDA only, optional extra)
    prompts: int = 16
    group_size: int = 8
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0                 # 0 = off
    gpu_memory_utilization: float = 0.3  # vllm only
    shared_prefix: bool = True     # compute a group's prompt once (sampling and training forwards)

    @classmethod
    def from_mapping(cls, s: Any, key: str = "rollout") -> RolloutConfig:
        s = check_keys(s, tuple(cls.__dataclass_fields__), key)
        d = cls()
        backend = get_typed(s, "backend", str, key, d.backend)
        if backend not in ("hf", "vllm"):
            raise unknown_name_error(f"{key}.backend", backend, ["hf", "vllm"], "rollout backends")
        return cls(
            backend=backend,
            prompts=get_typed(s, "prompts", int, key, d.prompts, minimum=1),
            group_size=get_typed(s, "group_size", int, key, d.group_size, minimum=2),
            max_new_tokens=get_typed(s, "max_new_tokens", int, key, d.max_new_tokens, minimum=1),
            temperature=_positive(s, "temperature", key, d.temperature),
            top_p=get_typed(s, "top_p", float, key, d.top_p, minimum=0.0, maximum=1.0),
            top_k=get_typed(s, "top_k", int, key, d.top_k, minimum=0),
            gpu_memory_utilization=get_typed(s, "gpu_memory_utilization", float, key,
                                             d.gpu_memory_utilization, minimum=0.01, maximum=1.0),
            shared_prefix=get_typed(s, "shared_prefix", bool, key, d.shared_prefix),
        )


@dataclass
class OptimConfig:
    """AdamW and the GRPO update: ``mini_batches`` x ``epochs`` optimizer steps per rollout batch."""

    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    mini_batches: int = 1
    epochs: int = 1
    micro_batch_size: int = 0       # sequences per forward/backward; 0 = the whole mini-batch
    adv_std_norm: bool = True       # A = (r - mean) / (std + eps) (GRPO); False: r - mean (Dr. GRPO)
    adv_eps: float = 1e-6           # the eps above (TRL: 1e-4)
    scheduler: str = "constant"     # lr schedule over optimizer steps: constant | linear | cosine
    warmup_steps: int = 0           # linear lr warmup, in optimizer steps ...
    warmup_ratio: float = 0.0       # ... or as a share of all optimizer steps (when warmup_steps = 0)
    drop_zero_var_groups: bool = False  # leave all-equal-reward groups out of the token count

    @classmethod
    def from_mapping(cls, s: Any, key: str = "optim") -> OptimConfig:
        s = check_keys(s, tuple(cls.__dataclass_fields__), key)
        d = cls()
        betas = s.get("betas", list(d.betas))
        if (not isinstance(betas, (list, tuple)) or len(betas) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                           for b in betas)):
            raise ConfigError(f"{key}.betas", "a pair of numbers in [0, 1)", betas)
        return cls(
            lr=_learning_rate(s, key, d.lr),
            weight_decay=get_typed(s, "weight_decay", float, key, d.weight_decay, minimum=0.0),
            betas=(float(betas[0]), float(betas[1])),
            adam_eps=_positive(s, "adam_eps", key, d.adam_eps),
            grad_clip=get_typed(s, "grad_clip", float, key, d.grad_clip, minimum=0.0),
            mini_batches=get_typed(s, "mini_batches", int, key, d.mini_batches, minimum=1),
            epochs=get_typed(s, "epochs", int, key, d.epochs, minimum=1),
            micro_batch_size=get_typed(s, "micro_batch_size", int, key, d.micro_batch_size, minimum=0),
            adv_std_norm=get_typed(s, "adv_std_norm", bool, key, d.adv_std_norm),
            adv_eps=get_typed(s, "adv_eps", float, key, d.adv_eps, minimum=0.0, maximum=1.0),
            scheduler=_scheduler(s, key, d.scheduler),
            warmup_steps=get_typed(s, "warmup_steps", int, key, d.warmup_steps, minimum=0),
            warmup_ratio=get_typed(s, "warmup_ratio", float, key, d.warmup_ratio, minimum=0.0,
                                   maximum=1.0),
            drop_zero_var_groups=get_typed(s, "drop_zero_var_groups", bool, key,
                                           d.drop_zero_var_groups),
        )


@dataclass
class DeepSpeedConfig:
    """ZeRO stage and bf16; ``extra`` is merged into the DeepSpeed JSON config as is."""

    zero_stage: int = 0
    bf16: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, s: Any, key: str = "deepspeed") -> DeepSpeedConfig:
        s = check_keys(s, ("zero_stage", "bf16", "extra"), key)
        extra = s.get("extra") or {}
        if not isinstance(extra, Mapping):
            raise ConfigError(f"{key}.extra", "a mapping merged into the DeepSpeed config", extra)
        return cls(zero_stage=get_typed(s, "zero_stage", int, key, 0, minimum=0, maximum=3),
                   bf16=get_typed(s, "bf16", bool, key, False), extra=dict(extra))


#: the largest run seed (seeds are 63-bit; per-response sampling seeds are folded into that range)
MAX_SEED = 2**63 - 1


@dataclass
class RunConfig:
    """The ``train:`` section: length, seed, run directory, checkpoints, evaluation, threads."""

    steps: int = 200
    seed: int = 0
    out_dir: str = "runs/default"
    save_every: int = 50            # checkpoint every N steps and at the end; 0 = no checkpoints
    keep_checkpoints: int = 2
    eval_every: int = 0             # greedy accuracy on the eval split every N steps (0 = off)
    eval_prompts: int = 64
    eval_samples: int = 0           # n sampled responses per eval prompt: avg@n, pass@k, distinct,
                                    # ECE (trainer/evaluation.py); 0 = greedy accuracy only
    eval_pass_k: list[int] = field(default_factory=list)  # k values for pass@k; [] = [1, n]
    eval_distinct_n: int = 1        # d of distinct-d (d-grams of response tokens)
    eval_ece_bins: int = 10
    threads: int = 0                # torch CPU threads; 0 = leave torch's default

    def pass_k(self) -> list[int]:
        """The k values of pass@k (default: 1 and eval_samples)."""
        return list(self.eval_pass_k) or sorted({1, self.eval_samples})

    @classmethod
    def from_mapping(cls, s: Any, key: str = "train") -> RunConfig:
        s = check_keys(s, tuple(cls.__dataclass_fields__), key)
        d = cls()
        out_dir = get_typed(s, "out_dir", str, key, d.out_dir)
        if not out_dir:
            raise ConfigError(f"{key}.out_dir", "a non-empty directory path", out_dir)
        samples = get_typed(s, "eval_samples", int, key, d.eval_samples, minimum=0)
        return cls(
            steps=get_typed(s, "steps", int, key, d.steps, minimum=1),
            seed=get_typed(s, "seed", int, key, d.seed, minimum=0, maximum=MAX_SEED),
            out_dir=out_dir,
            save_every=get_typed(s, "save_every", int, key, d.save_every, minimum=0),
            keep_checkpoints=get_typed(s, "keep_checkpoints", int, key, d.keep_checkpoints, minimum=1),
            eval_every=get_typed(s, "eval_every", int, key, d.eval_every, minimum=0),
            eval_prompts=get_typed(s, "eval_prompts", int, key, d.eval_prompts, minimum=1),
            eval_samples=samples,
            eval_pass_k=_pass_k(s.get("eval_pass_k", []), samples, f"{key}.eval_pass_k"),
            eval_distinct_n=get_typed(s, "eval_distinct_n", int, key, d.eval_distinct_n, minimum=1),
            eval_ece_bins=get_typed(s, "eval_ece_bins", int, key, d.eval_ece_bins, minimum=1),
            threads=get_typed(s, "threads", int, key, d.threads, minimum=0, maximum=1024),
        )


@dataclass
class LogConfig:
    """Outputs besides metrics.jsonl (always written): tensorboard, progress bar, summary."""

    tensorboard: bool = True
    progress: bool = True
    burn_in: int = 50               # summary.json tracking figures use steps burn_in..end
    ema_alpha: float = 0.6
    backends: list = field(default_factory=list)  # experiment trackers: [wandb] (trainer/trackers.py)

    @classmethod
    def from_mapping(cls, s: Any, key: str = "log") -> LogConfig:
        s = check_keys(s, tuple(cls.__dataclass_fields__), key)
        d = cls()
        return cls(
            tensorboard=get_typed(s, "tensorboard", bool, key, d.tensorboard),
            progress=get_typed(s, "progress", bool, key, d.progress),
            burn_in=get_typed(s, "burn_in", int, key, d.burn_in, minimum=0),
            ema_alpha=get_typed(s, "ema_alpha", float, key, d.ema_alpha, minimum=0.0, maximum=0.999),
            backends=check_backends(s.get("backends"), f"{key}.backends"),
        )


@dataclass
class TrainConfig:
    """The whole config; ``raw`` keeps the resolved mapping written to RUN_DIR/config.yaml."""

    model: dict[str, Any]
    task: dict[str, Any]
    reward: dict[str, Any]
    rollout: RolloutConfig
    optim: OptimConfig
    deepspeed: DeepSpeedConfig
    control: ControlConfig
    train: RunConfig
    log: LogConfig
    raw: dict[str, Any]

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any]) -> TrainConfig:
        cfg = check_keys(cfg, SECTIONS, "")
        for name in ("model", "task"):
            if name not in cfg:
                raise ConfigError(name, f"a '{name}:' section")
        sections = {}
        for name in ("model", "task", "reward"):
            sec = cfg.get(name) or {}
            if not isinstance(sec, Mapping):
                raise ConfigError(name, "a mapping", sec)
            sections[name] = dict(sec)
        if not sections["reward"]:
            sections["reward"] = {"kind": "exact"}
        optim = OptimConfig.from_mapping(cfg.get("optim"))
        out = cls(
            **sections,
            rollout=RolloutConfig.from_mapping(cfg.get("rollout")),
            optim=optim,
            deepspeed=DeepSpeedConfig.from_mapping(cfg.get("deepspeed")),
            control=ControlConfig.from_mapping(cfg.get("control"),
                                               updates_per_step=optim.mini_batches * optim.epochs),
            train=RunConfig.from_mapping(cfg.get("train")),
            log=LogConfig.from_mapping(cfg.get("log")),
            raw={},
        )
        out.raw = out.resolved(cfg)
        return out

    def resolved(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The config with every default filled in (what RUN_DIR/config.yaml records)."""
        def plain(dc: Any) -> dict[str, Any]:
            return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(dc).items()}

        control = dict(cfg.get("control") or {})
        control.setdefault("controller", self.control.controller)
        control.setdefault("params", self.control.params)
        control.setdefault("target", self.control.target)
        control["actuate"] = list(self.control.actuate)
        control["initial"] = self.control.initial.as_dict()
        control["bounds"] = {k: list(self.control.bounds.range(k)) for k in KNOB_NAMES}
        if self.control.bounds.max_delta is not None:
            md = self.control.bounds.max_delta
            control["bounds"]["max_delta"] = dict(md) if isinstance(md, Mapping) else md
        return {
            "model": self.model, "task": self.task, "reward": self.reward,
            "rollout": plain(self.rollout), "optim": plain(self.optim),
            "deepspeed": plain(self.deepspeed), "control": control,
            "train": plain(self.train), "log": plain(self.log),
        }


def _pass_k(v: Any, samples: int, key: str) -> list[int]:
    """pass@k's k values: positive integers <= eval_samples (needs eval_samples > 0)."""
    if (not isinstance(v, (list, tuple))
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v)):
        raise ConfigError(key, "a list of integers >= 1", v)
    if v and (samples == 0 or max(v) > samples):
        raise ConfigError(key, f"values <= train.eval_samples ({samples}), which must be > 0", v)
    return sorted(set(v))


def _scheduler(s: Mapping[str, Any], key: str, default: str) -> str:
    from trainer.schedule import SCHEDULERS

    kind = get_typed(s, "scheduler", str, key, default)
    if kind not in SCHEDULERS:
        raise unknown_name_error(f"{key}.scheduler", kind, SCHEDULERS, "schedulers")
    return kind


def _learning_rate(s: Mapping[str, Any], key: str, default: float) -> float:
    lr = _positive(s, "lr", key, default)
    if lr > 1.0:  # AdamW steps are ~lr per weight: above 1 every weight is noise after one step
        raise ConfigError(f"{key}.lr", "a learning rate in (0, 1]", lr)
    return lr


def _positive(s: Mapping[str, Any], name: str, key: str, default: float) -> float:
    v = get_typed(s, name, float, key, default)
    if not (v > 0 and math.isfinite(v)):
        raise ConfigError(f"{key}.{name}", "a finite number > 0", v)
    return v
