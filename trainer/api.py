"""Train from Python: a config mapping in, the run's summary out, a callback on every step.

    from trainer.api import train

    rows = []
    summary = train({"model": {"name": "tiny-char"}, "task": {"kind": "max_digits", "k": 5},
                     "control": {"target": {"kind": "constant", "value": 1.0}},
                     "train": {"steps": 50, "out_dir": "runs/api"}},
                    on_step=rows.append)
    print(summary["tracking"]["rmse_ema"], rows[-1]["knobs/w_pos"])

Everything ``regulator train`` checks is checked here: a bad config raises ``ConfigError`` (the
one-line message names the key), a failure during the run raises ``RuntimeError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


def train(config: Mapping[str, Any] | str | Path, *, overrides: Sequence[str] = (),
          on_step: Callable[[dict[str, Any]], Any] | None = None, overwrite: bool = False,
          resume: str | Path | None = None) -> dict[str, Any]:
    """Run a training job; return its ``summary.json`` as a dict.

    ``config``: a config mapping (the YAML's sections) or a path to one. ``on_step(row)`` is
    called with each step's metrics row (the line of ``metrics.jsonl``) after it is logged.
    ``overwrite`` / ``resume`` are ``--overwrite`` / ``--resume RUN_DIR``.
    """
    from trainer.config import TrainConfig
    from trainer.run import train_main

    source = config if isinstance(config, Mapping) else str(config)
    code = train_main(None if resume is not None else source, overrides=list(overrides),
                      resume=None if resume is None else str(resume), overwrite=overwrite,
                      on_step=on_step)
    if code != 0:
        raise RuntimeError(f"training failed (exit {code}); the log above says why")
    if resume is not None:
        run_dir = Path(resume)
    else:
        from regulator.config import apply_overrides, load_yaml

        raw = dict(config) if isinstance(config, Mapping) else load_yaml(config)
        run_dir = Path(TrainConfig.from_mapping(apply_overrides(raw, list(overrides))).train.out_dir)
    return json.loads((run_dir / "summary.json").read_text())
