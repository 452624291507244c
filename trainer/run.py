"""``regulator train``: GRPO with the entropy control interface on a DeepSpeed engine.

``train_main`` builds the Regulator and the TrainerPlant (``trainer/plant.py``) from the config,
then runs the loop: each step measures the rollout batch, asks the Regulator for the knobs,
updates with them (``train_step`` = ``regulator.plant.loop_step``) and logs the row; with
checkpoints, resume, signal handling and the closing report around it.
"""

from __future__ import annotations

import logging
import shutil
import signal
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from regulator import Regulator
from regulator.config import apply_overrides, load_yaml
from regulator.errors import ConfigError
from regulator.plant import loop_step
from regulator.safety import ControllerFailure
from trainer.config import TrainConfig
from trainer.grpo import world_size
from trainer.logging import RunLogger, read_metrics, summarise, write_json_atomic
from trainer.plant import TrainerPlant, learning_rate
from trainer.rewards import RewardAbort

log = logging.getLogger("trainer")
EXIT_OK, EXIT_FAILURE = 0, 1


def train_step(plant: TrainerPlant, regulator: Regulator) -> dict[str, float]:
    """One GRPO step with the control interface: ``plant.measure()``, ``regulator.step``,
    ``plant.update(knobs)`` (``regulator.plant.loop_step``); the step's metrics row."""
    return loop_step(plant, [regulator])[0]


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
        if cfg.control.controller != saved.control.controller:  # the checkpoints hold its state
            raise ConfigError("control.controller", f"the run's {saved.control.controller!r} on "
                              "--resume (its checkpoints hold that controller's state; start a new "
                              "run to change it)", cfg.control.controller)
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


@dataclass
class Session:
    """A built run, ready to step: the plant, its Regulator, its directory and where it starts."""

    plant: TrainerPlant
    regulator: Regulator
    run_dir: Path
    start: int = 0
    wall_before: float = 0.0


def build_session(cfg: TrainConfig, *, resume: bool = False, regulator: Regulator | None = None
                  ) -> Session:
    """The Regulator ``control:`` describes (or ``regulator``) and the TrainerPlant of ``cfg``;
    with ``resume`` the latest checkpoint of ``cfg.train.out_dir`` loaded into both."""
    if regulator is None:
        regulator = cfg.control.build(cfg.train.steps)
    session = Session(TrainerPlant(cfg), regulator, Path(cfg.train.out_dir))
    if resume:
        _resume(session)
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


def _resume(session: Session) -> None:
    """Load the newest checkpoint that loads; a damaged one (a torn copy, a full disk) is
    skipped for the one before it, with a warning. None loading is a ConfigError (exit 2)."""
    from trainer.checkpoint import complete_checkpoints, load_checkpoint

    found = complete_checkpoints(session.run_dir)
    if not found:
        log.info("--resume: no checkpoint in %s, starting at step 0", session.run_dir)
        return
    plant, failures = session.plant, []
    for i, ckpt in enumerate(found):  # every rank sees the same files, so every rank picks the same
        try:
            state = load_checkpoint(ckpt, plant.engine, rank=plant.rank)
            session.regulator.load_state_dict(state["regulator"])
            plant.load_state_dict(state)
            session.start, session.wall_before = int(state["step"]), float(state.get("wall_s", 0.0))
            plant.step = session.start
        except Exception as e:  # reported; an older checkpoint may load
            failures.append(f"{ckpt.name}: {_load_error(e)}")
            log.warning("--resume: checkpoint %s does not load (%s)%s", ckpt, failures[-1],
                        "; trying the one before it" if i + 1 < len(found) else "")
            continue
        log.info("resumed %s from %s (step %d)", session.run_dir, ckpt.name, session.start)
        return
    raise ConfigError("--resume", "a run directory with a checkpoint that loads",
                      f"{session.run_dir} ({'; '.join(failures)})")


def _emergency_checkpoint(session: Session, checkpoint: Any, step: int, done: int, updates: int,
                          before: tuple, existing: list[Path], disk: bool) -> None:
    """After a failure at ``step``, save a checkpoint only where weights and state agree:

    - the failure came before this step changed the weights (``plant.updates == updates``): the
      weights are those after ``step`` steps, so the rest of the state is rolled back to match;
    - the step finished (row logged) and only its checkpoint failed: state after ``done`` steps.

    A failure between the update and the end of the step's bookkeeping (e.g. the tensorboard
    write) leaves post-update weights with pre-step state: nothing is saved, and the run resumes
    from its last good checkpoint. An existing checkpoint is never overwritten."""
    plant, run_dir = session.plant, session.run_dir
    good = f"; resume with `regulator train --resume {run_dir}`" + (
        f" (from {existing[0].name})" if existing else " (no checkpoint yet: it restarts at step 0)")
    if disk or world_size() > 1:
        log.error("no new checkpoint written%s", good)
        return
    if done == step + 1:
        at, roll = done, None          # the step finished; its own save failed or never came
    elif plant.updates == updates and not plant.updating and step > session.start:
        at, roll = step, before        # failed before touching the weights: roll the state back
    else:
        log.error("no checkpoint written: the weights changed at step %d but its state was not "
                  "recorded%s", step, good)
        return
    if any(p.name == f"step-{at:06d}" for p in existing):
        log.error("checkpoint of step %d already on disk%s", at, good)
        return
    if roll is not None:
        session.regulator.load_state_dict(roll[1])
        plant.last_clip = roll[2]
    try:
        checkpoint(at, stream_state=roll[0] if roll else None)
        log.error("checkpoint of step %d written; resume with `regulator train --resume %s`", at, run_dir)
    except Exception as e2:  # best effort
        log.error("no checkpoint written (%s)%s", e2, good)


def train_main(config_path: str | Mapping[str, Any] | None, overrides: Sequence[str] = (),
               resume: str | None = None, *, overwrite: bool = False,
               on_step: Callable[[dict[str, Any]], Any] | None = None) -> int:
    """Run ``regulator train``; 0 on success, 1 on a failure during the run (ConfigError -> CLI 2).

    A run directory that already holds a run is refused unless ``resume`` (continue it) or
    ``overwrite`` (replace it); it is locked for the whole run (``trainer/run_dir.py``).
    ``config_path`` may be a config mapping; ``on_step(row)`` gets every logged metrics row."""
    import os

    from trainer.engine import shutdown_distributed
    from trainer.run_dir import claim_run_dir, holds_run

    cfg, saved = _resolve_config(config_path, overrides, resume)
    run_dir = Path(cfg.train.out_dir)
    lock = claim_run_dir(run_dir, resume=resume is not None, overwrite=overwrite,
                         rank=int(os.environ.get("RANK", 0)))
    try:
        code = _train(cfg, saved, resume is not None, on_step)
        shutdown_distributed(clean=code == EXIT_OK)
        return code
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
    plant, regulator, run_dir = session.plant, session.regulator, session.run_dir
    start, wall_before, rank = session.start, session.wall_before, plant.rank
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
        state = {"step": step_done, "regulator": regulator.state_dict(), **plant.state_dict(),
                 "wall_s": wall_before + time.perf_counter() - t_start}
        if stream_state is not None:
            state["stream"] = stream_state
        save_checkpoint(run_dir, step_done, plant.engine, state, rank=rank,
                        keep=cfg.train.keep_checkpoints)

    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signal.Signals(signum).name

    old_handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t_start = time.perf_counter()
    step, done = start, start  # done: steps whose update, row and checkpoint bookkeeping finished
    try:
        for step in range(start, cfg.train.steps):
            before = (plant.stream.state_dict(), regulator.state_dict(), dict(plant.last_clip))
            updates = plant.updates
            # measure -> Regulator.step -> update (regulator.plant.loop_step), then log
            row = train_step(plant, regulator)
            last = step == cfg.train.steps - 1
            row.update(_evaluation(cfg, plant, step, last))
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
            _emergency_checkpoint(session, checkpoint, step, done, updates, before,
                                  complete_checkpoints(run_dir), isinstance(e, CheckpointError))
        return EXIT_FAILURE
    finally:
        for s, h in old_handlers.items():
            signal.signal(s, h)
        logger.close()
    if rank == 0:
        _summary(cfg, session, wall_before + time.perf_counter() - t_start)
    return EXIT_OK


def _evaluation(cfg: TrainConfig, plant: TrainerPlant, step: int, last: bool) -> dict[str, float]:
    """The eval metrics of this step: greedy accuracy every ``train.eval_every`` steps and at the
    end, plus avg@n, pass@k, distinct-d and ECE with ``train.eval_samples`` (trainer/evaluation.py)."""
    if not cfg.train.eval_every or not (step % cfg.train.eval_every == 0 or last):
        return {}
    out = {"eval/accuracy": plant.evaluate()}
    if cfg.train.eval_samples:
        from trainer.evaluation import evaluate_sampled

        out.update(evaluate_sampled(plant, step))
    return out


def _summary(cfg: TrainConfig, session: Session, wall_s: float) -> None:
    """RUN_DIR/summary.json from the whole metrics.jsonl, and the closing report."""
    from trainer.report import final_report

    run_dir = session.run_dir
    rows = read_metrics(run_dir / "metrics.jsonl")
    summary = summarise(rows, burn_in=min(cfg.log.burn_in, max(len(rows) - 1, 0)),
                        ema_alpha=cfg.log.ema_alpha,
                        extra={"wall_s": wall_s, "controller": session.regulator.controller_name,
                               "world_size": session.plant.world, "actuate": list(cfg.control.actuate)})
    write_json_atomic(run_dir / "summary.json", summary)
    extendable = cfg.control.target.get("kind") in ("constant", "piecewise")
    print(final_report(summary, run_dir, total_steps=cfg.train.steps, extendable=extendable), flush=True)
