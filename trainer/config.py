"""The ``regulator train`` config schema (TrainConfig), validated up front.

Sections: model, task, reward, rollout, optim, deepspeed, control, train, log. ``model``, ``task``
and ``reward`` are checked by their builders (``trainer.models``, ``trainer.tasks``,
``trainer.rewards``); the others are typed models here (``regulator.schema``), so every mistake is
a ConfigError naming the key (the CLI prints it and exits 2), and each field's docstring is its
documentation (``docs/config.md``, ``regulator config --explain KEY``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationInfo, field_validator

from regulator.config import ControlConfig
from regulator.errors import ConfigError
from regulator.schema import Field, Pair, Schema, parse
from trainer.schedule import SCHEDULERS
from trainer.trackers import check_backends

#: the largest run seed (seeds are 63-bit; per-response sampling seeds are folded into that range)
MAX_SEED = 2**63 - 1


class RolloutConfig(Schema):
    """How responses are sampled: ``prompts`` per step (global, over all ranks) x ``group_size``."""

    backend: str = "hf"
    """Sampler, a name in the rollout-backend registry: ``hf`` (transformers generate) or
    ``vllm`` (CUDA only, optional extra)."""
    prompts: int = Field(16, ge=1)
    """Prompts per step, over all ranks."""
    group_size: int = Field(8, ge=2)
    """Responses sampled per prompt (a GRPO group; the advantage needs at least 2)."""
    max_new_tokens: int = Field(16, ge=1)
    """Longest response, in tokens."""
    temperature: float = Field(1.0, gt=0)
    """Sampling temperature."""
    top_p: float = Field(1.0, ge=0, le=1)
    """Nucleus sampling mass (1 = off)."""
    top_k: int = Field(0, ge=0)
    """Sample from the k most likely tokens only (0 = off)."""
    gpu_memory_utilization: float = Field(0.3, ge=0.01, le=1)
    """Share of GPU memory vllm may take (vllm only; the rest holds the trained model)."""
    shared_prefix: bool = True
    """Compute a group's prompt once, in sampling and in the training forwards."""

    @field_validator("backend")
    @classmethod
    def _backend(cls, v: str) -> str:
        from trainer.rollout import ROLLOUT_BACKENDS

        ROLLOUT_BACKENDS.get(v, "")  # unknown: one line with the registered names
        return v

    @classmethod
    def from_mapping(cls, s: Any, key: str = "rollout") -> RolloutConfig:
        return parse(cls, s, key)


class OptimConfig(Schema):
    """AdamW and the GRPO update: ``mini_batches`` x ``epochs`` optimizer steps per rollout batch."""

    lr: float = 1e-3
    """AdamW learning rate, in (0, 1]."""
    # inf is accepted, as ever: tests/test_run_safety.py uses it to make the weights non-finite
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=True)
    """AdamW weight decay."""
    betas: Pair = (0.9, 0.999)
    """AdamW ``[beta1, beta2]``, each in [0, 1)."""
    adam_eps: float = Field(1e-8, gt=0)
    """AdamW epsilon."""
    grad_clip: float = Field(1.0, ge=0, allow_inf_nan=True)
    """Largest gradient norm (0 or ``.inf`` = no clipping)."""
    mini_batches: int = Field(1, ge=1)
    """Optimizer steps per epoch over one rollout batch (the batch is split in this many parts)."""
    epochs: int = Field(1, ge=1)
    """Passes over each rollout batch."""
    micro_batch_size: int = Field(0, ge=0)
    """Sequences per forward/backward; 0 = the whole mini-batch."""
    adv_std_norm: bool = True
    """Advantage ``(r - mean) / (std + adv_eps)`` (GRPO); false: ``r - mean`` (Dr. GRPO)."""
    adv_eps: float = Field(1e-6, ge=0, le=1)
    """The eps of the advantage's std normalisation (TRL uses 1e-4)."""
    scheduler: Literal[SCHEDULERS] = "constant"  # type: ignore[valid-type]
    """Learning-rate schedule over optimizer steps (``trainer/schedule.py``)."""
    warmup_steps: int = Field(0, ge=0)
    """Linear lr warmup, in optimizer steps."""
    warmup_ratio: float = Field(0.0, ge=0, le=1)
    """Linear lr warmup as a share of all optimizer steps (used when warmup_steps is 0)."""
    drop_zero_var_groups: bool = False
    """Leave groups whose rewards are all equal out of the token count of the loss."""

    @field_validator("lr")
    @classmethod
    def _lr(cls, v: float) -> float:
        # AdamW moves each weight by about lr per step: above 1 every weight is noise after one step
        if not 0 < v <= 1:
            raise ConfigError("", "a learning rate in (0, 1]", v)
        return v

    @field_validator("betas", mode="before")
    @classmethod
    def _betas(cls, v: Any) -> Any:
        if (not isinstance(v, (list, tuple)) or len(v) != 2
                or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1
                           for b in v)):
            raise ConfigError("", "a pair of numbers in [0, 1)", v)
        return v

    @classmethod
    def from_mapping(cls, s: Any, key: str = "optim") -> OptimConfig:
        return parse(cls, s, key)


class DeepSpeedConfig(Schema):
    """ZeRO stage and bf16; ``extra`` is merged into the DeepSpeed JSON config as is."""

    zero_stage: int = Field(0, ge=0, le=3)
    """DeepSpeed ZeRO stage (0 = plain data parallel)."""
    bf16: bool = False
    """Train in bfloat16: faster on GPUs and on CPUs with AVX512-BF16 or AMX; a CPU without them
    emulates it, several times slower than fp32 (the trainer warns)."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """Merged into the DeepSpeed JSON config as is (batch sizes and the optimizer are set here,
    from rollout and optim)."""

    @field_validator("extra", mode="before")
    @classmethod
    def _extra(cls, v: Any) -> Any:
        return {} if v is None else v

    @classmethod
    def from_mapping(cls, s: Any, key: str = "deepspeed") -> DeepSpeedConfig:
        return parse(cls, s, key)


class RunConfig(Schema):
    """The ``train:`` section: length, seed, run directory, checkpoints, evaluation, threads."""

    steps: int = Field(200, ge=1)
    """Training steps (one rollout batch and its updates each)."""
    seed: int = Field(0, ge=0, le=MAX_SEED)
    """Run seed (63 bits: per-response sampling seeds are folded into that range)."""
    out_dir: str = Field("runs/default", min_length=1)
    """Run directory: config.yaml, metrics.jsonl, checkpoints, summary.json."""
    save_every: int = Field(50, ge=0)
    """Checkpoint every N steps and at the end; 0 = no checkpoints."""
    keep_checkpoints: int = Field(2, ge=1)
    """Newest checkpoints kept on disk."""
    eval_every: int = Field(0, ge=0)
    """Evaluate on the eval split every N steps (0 = off)."""
    eval_prompts: int = Field(64, ge=1)
    """Prompts of the eval split used per evaluation."""
    eval_samples: int = Field(0, ge=0)
    """Sampled responses per eval prompt for avg@n, pass@k, distinct-d and ECE
    (``trainer/evaluation.py``); 0 = greedy accuracy only."""
    eval_pass_k: list[int] = Field(default_factory=list)
    """The k values of pass@k, each in [1, eval_samples]; [] = [1, eval_samples]."""
    eval_distinct_n: int = Field(1, ge=1)
    """The d of distinct-d (d-grams of response tokens)."""
    eval_ece_bins: int = Field(10, ge=1)
    """Confidence bins of the expected calibration error."""
    threads: int = Field(0, ge=0, le=1024)
    """Torch CPU threads; 0 = leave torch's default."""

    @field_validator("eval_pass_k", mode="before")
    @classmethod
    def _pass_k(cls, v: Any, info: ValidationInfo) -> list[int]:
        if (not isinstance(v, (list, tuple))
                or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in v)):
            raise ConfigError("", "a list of integers >= 1", v)
        samples = info.data.get("eval_samples")
        if v and samples is not None and (samples == 0 or max(v) > samples):
            raise ConfigError("", f"values <= train.eval_samples ({samples}), which must be > 0", v)
        return sorted(set(v))

    def pass_k(self) -> list[int]:
        """The k values of pass@k (default: 1 and eval_samples)."""
        return list(self.eval_pass_k) or sorted({1, self.eval_samples})

    @classmethod
    def from_mapping(cls, s: Any, key: str = "train") -> RunConfig:
        return parse(cls, s, key)


class LogConfig(Schema):
    """Outputs besides metrics.jsonl (always written): tensorboard, progress bar, summary."""

    tensorboard: bool = True
    """Write tensorboard event files to the run directory."""
    progress: bool = True
    """Show a progress bar."""
    burn_in: int = Field(50, ge=0)
    """summary.json's tracking figures use steps burn_in..end (the controller settles first)."""
    ema_alpha: float = Field(0.6, ge=0, le=0.999)
    """Smoothing of the entropy EMA in summary.json (weight of the previous value)."""
    backends: list[Any] = Field(default_factory=list)
    """Experiment trackers, e.g. ``[wandb]``: a name or ``module:Class``, or a mapping with
    ``kind:`` and its options (``trainer/trackers.py``)."""

    @field_validator("backends", mode="before")
    @classmethod
    def _backends(cls, v: Any) -> list[Any]:
        return check_backends(v, "")

    @classmethod
    def from_mapping(cls, s: Any, key: str = "log") -> LogConfig:
        return parse(cls, s, key)


def _default_control() -> ControlConfig:
    return ControlConfig.from_mapping(None)


class TrainConfig(Schema):
    """The whole ``regulator train`` config; ``raw`` / ``resolved()`` is what RUN_DIR/config.yaml
    records (every default filled in)."""

    model: dict[str, Any]
    """The policy model: ``name`` (a built-in model) or ``path`` (a local Hugging Face model
    directory, or a hub id when online), and its options (``trainer/models.py``,
    docs/models_tasks.md)."""
    task: dict[str, Any]
    """The prompts and answers: ``kind`` and its options (``trainer/tasks``,
    docs/models_tasks.md)."""
    reward: dict[str, Any] = Field(default_factory=lambda: {"kind": "exact"})
    """How a response is scored: ``kind`` and its options (``trainer/rewards.py``)."""
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    """Sampling of the responses."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """The optimizer and the GRPO update."""
    deepspeed: DeepSpeedConfig = Field(default_factory=DeepSpeedConfig)
    """DeepSpeed engine settings."""
    control: ControlConfig = Field(default_factory=_default_control)
    """The entropy controller; no section = ``static`` (plain GRPO)."""
    train: RunConfig = Field(default_factory=RunConfig)
    """Run length, seed, run directory, checkpoints and evaluation."""
    log: LogConfig = Field(default_factory=LogConfig)
    """Logging besides metrics.jsonl."""
    tune: dict[str, Any] | None = None
    """Read by ``regulator tune`` only (docs/tuning.md); ``regulator train`` ignores it."""

    @field_validator("model", "task", "reward", mode="before")
    @classmethod
    def _plain_section(cls, v: Any, info: ValidationInfo) -> Any:
        v = {} if v is None else v
        if isinstance(v, str) and info.field_name != "model":  # `task: parity`: a kind, defaults
            v = {"kind": v}
        return {"kind": "exact"} if info.field_name == "reward" and v == {} else v

    @field_validator("model", "task", "reward", mode="after")
    @classmethod
    def _kind_section(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Validated by its family's schema and kept with every default filled in."""
        from trainer.models import parse_model
        from trainer.rewards import parse_reward
        from trainer.tasks import parse_task

        parser = {"model": parse_model, "task": parse_task, "reward": parse_reward}[info.field_name]
        return parser(v, "").resolved()

    @field_validator("rollout", "optim", "deepspeed", "train", "log", mode="before")
    @classmethod
    def _empty_section(cls, v: Any) -> Any:
        return {} if v is None else v

    @field_validator("control", mode="before")
    @classmethod
    def _control(cls, v: Any, info: ValidationInfo) -> ControlConfig:
        optim = info.data.get("optim")  # validated before control (field order)
        updates = optim.mini_batches * optim.epochs if optim is not None else 1
        return ControlConfig.from_mapping(v, "", updates_per_step=updates)

    def resolved(self) -> dict[str, Any]:
        """Every section with every default (no ``tune:`` when the config has none)."""
        out = super().resolved()
        if out["tune"] is None:
            del out["tune"]
        return out

    @property
    def raw(self) -> dict[str, Any]:
        """The config with every default filled in (what RUN_DIR/config.yaml records)."""
        return self.resolved()

    @classmethod
    def from_mapping(cls, cfg: Any) -> TrainConfig:
        return parse(cls, cfg)
