"""The run directory: claimed by one run at a time, never silently reused.

``claim_run_dir`` is called before anything heavy is built:

- a directory that already holds a run (metrics, checkpoints, a summary) is refused unless the
  run is resumed (``--resume``) or replaced on purpose (``--overwrite``), so a second run can
  never truncate the first one's ``metrics.jsonl`` or let ``keep_checkpoints`` delete its
  checkpoints;
- an exclusive ``flock`` on ``RUN_DIR/.lock`` is held for the whole run, so two processes
  training into one directory at once is a clear error, not a silent loss of rows;
- a path that cannot be a run directory (an existing file, unwritable, too long) is a
  ``ConfigError`` naming ``train.out_dir``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
from pathlib import Path

from regulator.errors import ConfigError

#: what a run writes into its directory (removed by ``--overwrite``, nothing else is touched)
RUN_FILES = ("metrics.jsonl", "events.jsonl", "summary.json", "config.yaml", "checkpoints", "tb")
KEY = "train.out_dir"


def _os_error(path: Path, e: OSError) -> ConfigError:
    return ConfigError(KEY, "a directory this process can create and write", str(path),
                       hint=e.strerror or type(e).__name__)


def holds_run(run_dir: Path) -> bool:
    """Does ``run_dir`` hold (part of) a run: a logged step, a checkpoint or a summary? (A run
    that failed before its first step left nothing worth keeping.)"""
    metrics = [run_dir / "metrics.jsonl", *run_dir.glob("metrics.rank*.jsonl")]
    return (any(m.is_file() and m.stat().st_size > 0 for m in metrics)
            or (run_dir / "summary.json").exists() or any((run_dir / "checkpoints").glob("step-*")))


class RunDirLock:
    """An exclusive, non-blocking lock on ``RUN_DIR/.lock`` (released by ``release`` or exit)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self.created = False  # claim_run_dir: True when this run made the directory
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _os_error(run_dir, e) from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(self._fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(self._fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(KEY, "a run directory no other run is using", str(run_dir),
                                  hint=f"in use by process {holder}; wait for it or pick another "
                                  "train.out_dir") from None
            raise _os_error(run_dir, e) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool, rank: int = 0) -> RunDirLock | None:
    """Create and lock ``run_dir`` for this run (rank 0; other ranks get None).

    Refuses (``ConfigError``, exit 2) a directory holding another run unless ``resume`` or
    ``overwrite``; with ``overwrite`` the previous run's files (``RUN_FILES``) are removed first.
    """
    if rank != 0:
        return None
    try:
        created = not run_dir.exists()
        if not created and not run_dir.is_dir():
            raise ConfigError(KEY, "a directory path", str(run_dir),
                              hint="an existing file has that name")
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(run_dir, e) from None
    if not os.access(run_dir, os.W_OK):
        raise ConfigError(KEY, "a writable directory", str(run_dir), hint="permission denied")
    lock = RunDirLock(run_dir)
    lock.created = created
    if not resume and holds_run(run_dir):
        if not overwrite:
            lock.release()
            raise ConfigError(KEY, "a new or empty run directory", str(run_dir),
                              hint="it holds a run: continue it with `regulator train --resume "
                              f"{run_dir}`, replace it with --overwrite, or set another train.out_dir")
        for name in RUN_FILES:
            p = run_dir / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
        for p in run_dir.glob("metrics.rank*.jsonl"):
            p.unlink()
    return lock
