"""Shared pieces of the trainer tests: a tiny, fast config and metric readers."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY: dict[str, Any] = {
    "model": {"name": "tiny-char", "hidden": 32, "layers": 2, "heads": 4},
    "task": {"kind": "max_digits", "k": 3},
    "reward": {"kind": "exact"},
    "rollout": {"prompts": 4, "group_size": 4, "max_new_tokens": 3, "temperature": 1.0},
    "optim": {"lr": 3e-3},
    "deepspeed": {"zero_stage": 0, "bf16": False},
    "control": {"controller": "pid", "params": {"kp": 1.0, "ki": 0.1,
                                                 "gains": {"w_pos": -1.0, "w_neg": -1.0}},
                "target": {"kind": "constant", "value": 1.5}, "actuate": ["w_pos", "w_neg"],
                "bounds": {"w_pos": [0.0, 2.0], "w_neg": [0.0, 2.0]}},
    "train": {"steps": 20, "seed": 0, "save_every": 10, "threads": 1},
    "log": {"progress": False, "burn_in": 5},
}


def tiny_config(tmp: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """TINY with ``sections`` merged in (one level deep) and out_dir under ``tmp``."""
    cfg = copy.deepcopy(TINY)
    cfg["train"]["out_dir"] = str(tmp / "run")
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def write_config(tmp: Path, cfg: dict[str, Any], name: str = "config.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path
