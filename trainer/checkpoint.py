"""Atomic checkpoints and resume.

Layout: ``RUN_DIR/checkpoints/step-000050/`` holds
- ``model.safetensors``   the policy weights (rank 0; safetensors, no pickle);
- ``optimizer-rank{r}.pt`` each rank's optimizer state (loaded with ``weights_only=True``; the
  few plain-data DeepSpeed classes of ZeRO / bf16 optimizer states are allow-listed);
- ``rng-rank{r}.pt``       each rank's python / numpy / torch RNG states (``weights_only=True``);
- ``state.json``           step, regulator (controller) state, prompt-stream position, wall time.
and ``RUN_DIR/checkpoints/latest`` names the newest complete one.

Atomicity: everything is written into ``.tmp-step-N/``, fsynced, then renamed; ``latest`` is
replaced by rename too. A crash mid-write leaves a ``.tmp-*`` folder that is ignored and removed
next time, and ``latest`` still names the previous complete checkpoint.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from trainer.grpo import world_size


class CheckpointError(OSError):
    """A checkpoint could not be written (e.g. the disk is full); nothing partial is left."""


def _barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def _fsync_dir(path: Path) -> None:
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """RNG states as tensors, lists and ints only (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _model_state(engine) -> dict[str, torch.Tensor] | None:
    """Full weights on rank 0 (ZeRO-3 gathers them; stages 0-2 hold full weights everywhere)."""
    if getattr(engine, "zero_optimization_stage", lambda: 0)() == 3:
        return engine._zero3_consolidated_16bit_state_dict()  # None on ranks other than 0
    return engine.module.state_dict()


def save_checkpoint(run_dir: Path, step: int, engine, state: dict[str, Any], *, rank: int,
                    keep: int = 2) -> Path:
    """Write the checkpoint taken after ``step`` steps (``state['step'] == step``), atomically."""
    from safetensors.torch import save_file

    root = run_dir / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = root / f".tmp-step-{step:06d}"
    try:
        if rank == 0:
            root.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir()
        _barrier()
        weights = _model_state(engine)
        if rank == 0:
            # clone + contiguous: safetensors refuses tensors that share memory (tied embeddings)
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in weights.items()},
                      str(tmp / "model.safetensors"))
            (tmp / "state.json").write_text(json.dumps(state, indent=1, sort_keys=True))
        torch.save(engine.optimizer.state_dict(), tmp / f"optimizer-rank{rank}.pt")
        torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    except BaseException as e:  # a full disk, an interrupt: no half-written folder stays behind
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise CheckpointError(f"checkpoint of step {step} not written to {root} "
                                  f"({e.strerror or e}); the previous checkpoints are intact") from e
        raise
    _barrier()
    if rank == 0:
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        latest_tmp = root / "latest.tmp"
        try:
            latest_tmp.write_text(final.name + "\n")
            os.replace(latest_tmp, root / "latest")
        except OSError:  # `latest` still names an older complete one; resume tries newest first
            latest_tmp.unlink(missing_ok=True)
        for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(".tmp-step-*"):
            if stale != tmp:
                shutil.rmtree(stale, ignore_errors=True)
    _barrier()
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run directory, or None."""
    found = complete_checkpoints(run_dir)
    return found[0] if found else None


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """The run's complete checkpoints (with ``state.json``), the ``latest`` pointer's first,
    then the others newest first: the order ``--resume`` tries them in."""
    root = run_dir / "checkpoints"
    done = sorted((p for p in root.glob("step-*") if (p / "state.json").exists()), reverse=True)
    pointer = root / "latest"
    if pointer.exists():
        path = root / pointer.read_text().strip()
        if path in done:
            done.remove(path)
            done.insert(0, path)
    return done


def _safe_globals() -> list[Any]:
    """Plain-data DeepSpeed classes that ZeRO / bf16 optimizer states contain; allow-listed for
    ``torch.load(weights_only=True)`` (everything else stays forbidden)."""
    out: list[Any] = []
    try:
        from deepspeed.runtime.fp16 import loss_scaler

        out += [loss_scaler.LossScaler, loss_scaler.DynamicLossScaler]
    except ImportError:  # pragma: no cover
        pass
    try:
        from deepspeed.runtime.zero.config import ZeroStageEnum
        from deepspeed.utils.tensor_fragment import fragment_address

        out += [ZeroStageEnum, fragment_address]
    except ImportError:  # pragma: no cover
        pass
    return out


def _load(path: Path) -> Any:
    with torch.serialization.safe_globals(_safe_globals()):
        return torch.load(path, weights_only=True)


def load_checkpoint(path: Path, engine, *, rank: int) -> dict[str, Any]:
    """Restore weights, optimizer and RNG state into a fresh engine; return state.json."""
    from safetensors.torch import load_file

    weights = load_file(str(path / "model.safetensors"))
    if getattr(engine, "zero_optimization_stage", lambda: 0)() == 3:  # pragma: no cover - GPU path
        import deepspeed

        params = dict(engine.module.named_parameters())
        with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=0):
            if rank == 0:
                engine.module.load_state_dict(weights, strict=False)
    else:
        missing, unexpected = engine.module.load_state_dict(weights, strict=False)
        tied = {k for k in missing if k.endswith("lm_head.weight")}
        if set(missing) - tied or unexpected:
            raise RuntimeError(f"checkpoint {path} does not match the model: missing "
                               f"{sorted(set(missing) - tied)}, unexpected {sorted(unexpected)}")
    files = [path / f"optimizer-rank{r}.pt" for r in range(world_size())]
    if not all(f.exists() for f in files) or (path / f"optimizer-rank{len(files)}.pt").exists():
        raise RuntimeError(f"{path}: optimizer files for {world_size()} ranks expected: resume with "
                           "the number of ranks that wrote the checkpoint")
    opt = engine.optimizer
    params = list(inspect.signature(opt.load_state_dict).parameters)
    if params and params[0] == "state_dict_list":  # ZeRO / BF16 wrappers: one state per rank
        kwargs = {"load_from_fp32_weights": True} if "load_from_fp32_weights" in params else {}
        opt.load_state_dict([_load(f) for f in files], **kwargs)
    else:
        opt.load_state_dict(_load(files[rank]))
    rng_file = path / f"rng-rank{rank}.pt"
    if rng_file.exists():
        set_rng_state(_load(rng_file))
    return json.loads((path / "state.json").read_text())
