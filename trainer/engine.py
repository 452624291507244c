"""DeepSpeed engine set-up, with the CPU tricks kept in one place.

``init_distributed()`` makes a process group in every setting: under the ``deepspeed`` launcher
(env vars already set), or as a plain single process (it sets RANK=0, WORLD_SIZE=1 and a free
MASTER_PORT, or DeepSpeed looks for MPI and fails). ``build_engine()`` wraps a model in a
DeepSpeed engine from the ``deepspeed:`` and ``optim:`` config sections.

CPU traps (measured on the 2-core build machines), all handled in ``_cpu_tricks``:
- single-process env vars with a free port;
- DeepSpeed would JIT-compile a shared-memory comm op (~40 s of g++ per process) that is useless
  at world size 1: it is marked incompatible before DeepSpeed builds its comm backend. With
  several CPU ranks (tests of the distributed path) it is skipped too, and plain gloo
  collectives are used, unless ``REGULATOR_DS_SHM=1`` asks for it (fast intra-node CPU
  all-reduce, worth its compile time only for long multi-rank CPU runs);
- DeepSpeed's own optimizers JIT-compile on CPU, so a torch optimizer is always passed in.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from regulator.errors import ConfigError

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def on_cpu() -> bool:
    """True when this process trains on the CPU (no CUDA device visible)."""
    return not torch.cuda.is_available()


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX); None where it cannot tell.

    Without it, PyTorch emulates bf16 matrix products on the CPU: measured on an AVX2-only EPYC,
    one process, a SmolLM2-135M training step took 150-280 s in bf16 against 31-34 s in fp32."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), None)
    return None if flags is None else bool({"avx512_bf16", "amx_bf16"} & set(flags))


def warn_slow_cpu_bf16(bf16: bool) -> None:
    """Log a warning when bf16 is asked for on a CPU that emulates it."""
    if bf16 and on_cpu() and cpu_has_native_bf16() is False:
        log.warning("deepspeed.bf16 is true, but this CPU has no native bf16 (AVX512-BF16 / AMX): "
                    "PyTorch emulates it, about 10x slower than fp32 here. Set deepspeed.bf16: false "
                    "on this machine.")


def _cpu_tricks(world_size: int) -> None:
    """The CPU-only settings DeepSpeed needs before ``init_distributed`` (one helper, on purpose)."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if world_size == 1 or os.environ.get("REGULATOR_DS_SHM", "0") != "1":
        import deepspeed.ops

        # Private switch: skip the ~40 s shm comm JIT (useless with one process).
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def init_distributed() -> tuple[int, int]:
    """Initialise (once) the process group DeepSpeed uses; return (rank, world_size)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        # A plain `regulator train`: one process, no launcher, no MPI.
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
    os.environ.setdefault("LOCAL_RANK", "0")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if on_cpu():
        _cpu_tricks(world)
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo" if on_cpu() else "nccl")
    return dist.get_rank(), dist.get_world_size()


def ds_config(ds_section: Mapping[str, Any], *, micro_batch: int, grad_accum: int, world_size: int,
              grad_clip: float) -> dict[str, Any]:
    """The DeepSpeed JSON config from our ``deepspeed:`` section (``extra`` merged last)."""
    cfg: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": int(micro_batch),
        "gradient_accumulation_steps": int(grad_accum),
        "train_batch_size": int(micro_batch) * int(grad_accum) * int(world_size),
        "zero_optimization": {"stage": int(ds_section.get("zero_stage", 0))},
        "bf16": {"enabled": bool(ds_section.get("bf16", False))},
        "gradient_clipping": float(grad_clip),
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }
    extra = ds_section.get("extra") or {}
    for k in ("optimizer", "scheduler"):
        if k in extra:  # DeepSpeed would ignore it next to our client optimizer, silently
            raise ConfigError(f"deepspeed.extra.{k}", f"no {k} here (the trainer builds AdamW from "
                              "optim:, with optim.lr, betas, weight_decay)",
                              (extra[k] or {}).get("type", extra[k]) if isinstance(extra[k], Mapping)
                              else extra[k])
    for k in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        if k in extra and extra[k] != cfg[k]:
            raise ConfigError(f"deepspeed.extra.{k}", f"{cfg[k]} (set from rollout.prompts x "
                              "group_size, optim.mini_batches and micro_batch_size) or left out",
                              extra[k])
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def build_engine(model: torch.nn.Module, optim_section: Mapping[str, Any], config: dict[str, Any]):
    """``deepspeed.initialize`` with a torch AdamW (never a DeepSpeed JIT optimizer on CPU).

    A config DeepSpeed refuses (its pydantic models validate it) is a ConfigError naming
    ``deepspeed.extra``: every other key it gets is checked by our own schema first."""
    import deepspeed
    import pydantic

    params = [p for p in model.parameters() if p.requires_grad]
    betas = tuple(optim_section.get("betas", (0.9, 0.999)))
    optimizer = torch.optim.AdamW(params, lr=float(optim_section["lr"]), betas=betas,
                                  eps=float(optim_section.get("adam_eps", 1e-8)),
                                  weight_decay=float(optim_section.get("weight_decay", 0.0)))
    try:
        engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer,
                                                       config=config)
    except pydantic.ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError("deepspeed.extra", "settings DeepSpeed accepts", first.get("input"),
                          hint=f"{e.title} {where}: {first['msg']}") from None
    return engine, optimizer


def torch_optimizer(engine: Any) -> torch.optim.Optimizer:
    """The torch optimizer under DeepSpeed's wrappers (the bf16 one holds the fp32 master
    weights' AdamW as ``.optimizer``)."""
    opt = engine.optimizer
    while not isinstance(opt, torch.optim.Optimizer):
        opt = opt.optimizer
    return opt


@torch.no_grad()
def drain_momentum(optimizer: torch.optim.Optimizer, updates: int = 1) -> None:
    """A braked step of AdamW: ``updates`` zero gradients at zero learning rate. The moments
    decay as on any zero gradient (m <- beta1 m, v <- beta2 v, one more step for the bias
    correction, each time) and the weights stay. The brake stops the policy at once and spends
    its momentum: kept frozen, the next live step would replay ~beta1 of the last descent's
    update whatever its weights were."""
    for group in optimizer.param_groups:
        b1, b2 = group["betas"]
        for p in group["params"]:
            state = optimizer.state.get(p)
            if not state or "exp_avg" not in state:
                continue
            state["exp_avg"].mul_(b1**updates)
            state["exp_avg_sq"].mul_(b2**updates)
            state["step"] += updates


def shutdown_distributed(clean: bool) -> None:
    """End a multi-process run: after a ``clean`` finish wait for every rank, then tear the
    process group down before the interpreter exits (left to interpreter shutdown, gloo's
    threads can abort a rank that has already finished). One process: nothing to do (the
    group stays for the next run in the same process)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()
