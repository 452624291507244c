"""Optional experiment trackers (``log.backends``): every metrics row also goes to wandb, or to
a tracker class of your own. None is required; metrics.jsonl is always written.

    log:
      backends: [wandb]                                  # offline, under RUN_DIR/wandb
      backends: [{kind: wandb, project: my-project, mode: online, entity: me}]
      backends: [{kind: my_pkg.tracking:Tracker, any_option: 1}]

``wandb`` runs offline unless ``mode: online`` is given (``wandb sync RUN_DIR/wandb/offline-run-*``
uploads later); the project defaults to ``entropy-regulator``, the run name to the run
directory's name, and a resumed run continues the same wandb run id. Install it with
``pip install 'entropy-regulator[track]'``.

A tracker is a class called as ``Tracker(run_dir=Path, config=dict, start_step=int, **options)``
with ``log(row, step)`` (the row as in metrics.jsonl: finite numbers only) and ``close()``.
Register one by name with ``@register_tracker("name")``, or give its ``module:Class``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from regulator.errors import ConfigError
from regulator.registries import Registry


class Tracker(Protocol):
    def log(self, row: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


#: the experiment trackers ``log.backends`` names (plugins: the ``regulator.trackers`` group)
TRACKERS: Registry[Callable[..., Tracker]] = Registry("trackers (or module:Class)",
                                                      group="regulator.trackers", paths=True)
register_tracker = TRACKERS.register


@register_tracker("wandb")
class WandbTracker:
    """Weights & Biases, offline by default (no account, no network)."""

    def __init__(self, *, run_dir: Path, config: Mapping[str, Any], start_step: int,
                 project: str = "entropy-regulator", mode: str = "offline", **options: Any) -> None:
        import wandb

        digest = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:8]
        self.run = wandb.init(project=project, mode=mode, dir=str(run_dir),
                              name=options.pop("name", run_dir.name), config=dict(config),
                              id=options.pop("id", f"{run_dir.name[:40]}-{digest}"),
                              resume="allow", **options)

    def log(self, row: Mapping[str, float], step: int) -> None:
        self.run.log(dict(row), step=step)

    def close(self) -> None:
        self.run.finish()


def _spec(entry: Any, key: str) -> tuple[str, dict[str, Any]]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping) and isinstance(entry.get("kind"), str):
        return entry["kind"], {k: v for k, v in entry.items() if k != "kind"}
    raise ConfigError(key, "a tracker name (wandb) or a mapping with kind: NAME", entry)


def check_backends(value: Any, key: str = "log.backends") -> list[Any]:
    """The ``log.backends`` list, each entry a known name or a ``module:Class`` (not imported)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(key, "a list of trackers, e.g. [wandb]", value)
    for i, entry in enumerate(value):
        name, _ = _spec(entry, f"{key}[{i}]")
        if ":" not in name:  # a module:Class is imported when the run starts, not here
            TRACKERS.get(name, f"{key}[{i}]")
    return list(value)


def _summary(e: BaseException) -> str:
    """One line of a tracker's complaint: a pydantic-style error's first ``loc: msg`` (wandb's
    Settings), else the message's first non-empty line."""
    try:
        first = e.errors()[0]  # type: ignore[attr-defined]
        return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    except Exception:  # not a pydantic-style error
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return lines[0] if lines else type(e).__name__


def make_trackers(backends: list[Any], *, run_dir: Path, config: Mapping[str, Any],
                  start_step: int, key: str = "log.backends") -> list[Tracker]:
    """Build every tracker; a missing package or a bad option is a one-line ConfigError naming
    the entry (the trackers already built are closed)."""
    out: list[Tracker] = []
    for i, entry in enumerate(backends):
        name, options = _spec(entry, f"{key}[{i}]")
        try:
            cls = TRACKERS.get(name, f"{key}[{i}]")
            out.append(cls(run_dir=run_dir, config=config, start_step=start_step, **options))
        except (ConfigError, ImportError, TypeError, ValueError, AttributeError) as e:
            for t in out:
                t.close()
            if isinstance(e, ConfigError):
                raise
            if isinstance(e, ImportError):
                extra = " (pip install 'entropy-regulator[track]')" if name == "wandb" else ""
                raise ConfigError(f"{key}[{i}]", f"an importable tracker{extra}", name,
                                  hint=_summary(e)) from None
            raise ConfigError(f"{key}[{i}]", "options the tracker accepts", entry,
                              hint=_summary(e)) from None
    return out


def tracked_values(row: Mapping[str, Any]) -> dict[str, float]:
    """The row's finite numbers, without ``step`` (trackers get it as their step)."""
    return {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)}
