"""Hyperparameters of the simulated RLVR plant, validated from a config mapping."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from regulator.config import check_keys, get_typed
from regulator.errors import ConfigError, unknown_name_error

REGIMES = ("pretrained", "scratch")

# Regime defaults for the fields left as None (docs/regimes.md §5 measured the pretrained shape).
_REGIME_DEFAULTS: dict[str, dict[str, Any]] = {
    "pretrained": {"length": 6, "forks": 2},
    "scratch": {"length": 1, "forks": 1},
}


@dataclass(frozen=True)
class PlantConfig:
    """One simulated plant: task shape, GRPO batch, optimiser and the shared-parameter adapter.

    regime: ``pretrained`` (confident, imperfect start; the paper's regime) or ``scratch``
        (uniform start, short answers).
    prompts: distinct prompts of the task; prompts_per_step x group_size responses per step.
    length / forks: response tokens and how many of them decide correctness (the rest are
        format tokens shared by right and wrong answers); None = the regime's default.
    vocab: tokens per position.
    alternates: extra format tokens the verifier accepts (rare at the start, pretrained only).
    alt_share: share of a format position's non-template mass the alternates start with.
    lr, betas, adam_eps: Adam on every parameter.
    mini_batches x epochs: updates per step (each prompt's samples are split across
        mini-batches, so later mini-batches see a ratio != 1 and the clip bounds act).
    rank: width of the low-rank adapter shared across prompts: logits
        z[p, l] = theta[p, l] + U[p] . W[l], with U fixed (N(0, shared_scale^2)) and W trained from 0.
        0 = purely tabular logits (then the ratio barely leaves 1 under Adam, docs/regimes.md §5).
    dh_stats: also measure the first-order entropy-change split ``dh_pos``/``dh_neg`` per step.
    """

    regime: str = "pretrained"
    prompts: int = 32
    prompts_per_step: int = 16
    group_size: int = 8
    length: int | None = None
    forks: int | None = None
    vocab: int = 12
    alternates: int = 0
    alt_share: float = 0.6
    lr: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    mini_batches: int = 1
    epochs: int = 1
    rank: int = 0
    shared_scale: float = 1.0
    dh_stats: bool = True

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise unknown_name_error("regime", self.regime, REGIMES, "plant regimes")
        d = _REGIME_DEFAULTS[self.regime]
        if self.length is None:
            object.__setattr__(self, "length", d["length"])
        if self.forks is None:
            object.__setattr__(self, "forks", min(d["forks"], self.length))
        checks = (("prompts", 2), ("prompts_per_step", 1), ("group_size", 2), ("length", 1),
                  ("forks", 1), ("vocab", 3), ("alternates", 0), ("mini_batches", 1), ("epochs", 1),
                  ("rank", 0))
        for name, low in checks:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(name, f"an integer >= {low}", v)
        if self.prompts_per_step > self.prompts:
            raise ConfigError("prompts_per_step", f"at most prompts ({self.prompts})",
                              self.prompts_per_step)
        if self.forks > self.length:
            raise ConfigError("forks", f"at most length ({self.length})", self.forks)
        if self.group_size % self.mini_batches:
            raise ConfigError("mini_batches", f"a divisor of group_size ({self.group_size})",
                              self.mini_batches)
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError("lr", "a finite learning rate > 0", self.lr)
        if not all(0 <= b < 1 for b in self.betas):
            raise ConfigError("betas", "a [beta1, beta2] pair in [0, 1)", list(self.betas))
        if not (self.adam_eps > 0 and math.isfinite(self.adam_eps)):
            raise ConfigError("adam_eps", "a finite number > 0", self.adam_eps)
        if not 0 <= self.alt_share <= 1:
            raise ConfigError("alt_share", "a fraction in [0, 1]", self.alt_share)
        if not self.shared_scale >= 0:
            raise ConfigError("shared_scale", "a number >= 0", self.shared_scale)

    @property
    def updates_per_step(self) -> int:
        return self.mini_batches * self.epochs

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def replace(self, **changes: Any) -> PlantConfig:
        return replace(self, **changes)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, key: str = "plant") -> PlantConfig:
        """Build from a config mapping; every error names ``key.field``."""
        names = [f.name for f in fields(cls)]
        s = check_keys(values, names, key)
        kw: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in s:
                continue
            v = s[f.name]
            if f.name == "betas":
                if not (isinstance(v, (list, tuple)) and len(v) == 2 and all(
                        isinstance(b, (int, float)) and not isinstance(b, bool) for b in v)):
                    raise ConfigError(f"{key}.betas", "a [beta1, beta2] pair", v)
                kw["betas"] = (float(v[0]), float(v[1]))
            elif f.name == "regime":
                kw[f.name] = get_typed(s, f.name, str, key)
            elif f.name == "dh_stats":
                kw[f.name] = get_typed(s, f.name, bool, key)
            elif f.name in ("lr", "adam_eps", "shared_scale", "alt_share"):
                kw[f.name] = get_typed(s, f.name, float, key)
            else:
                kw[f.name] = get_typed(s, f.name, int, key)
        try:
            return cls(**kw)
        except ConfigError as e:
            raise e.with_key(f"{key}.{e.key}") from None
