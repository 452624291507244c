"""Hyperparameters of the simulated RLVR plant (``plant_params:`` in bench and tune configs, the
``plant=`` keyword of ``EntropySim-v0``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import PlainSerializer, PlainValidator, ValidationError, model_validator

from regulator.errors import ConfigError
from regulator.schema import Field, Schema, parse, validation_error

Regime = Literal["pretrained", "scratch"]
REGIMES: tuple[str, ...] = ("pretrained", "scratch")

#: what ``length`` and ``forks`` are when a config leaves them out
_REGIME_DEFAULTS: dict[str, dict[str, int]] = {
    "pretrained": {"length": 6, "forks": 2},
    "scratch": {"length": 1, "forks": 1},
}


def _betas(v: Any) -> tuple[float, float]:
    ok = isinstance(v, (list, tuple)) and len(v) == 2 and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in v)
    if not ok:
        raise ConfigError("", "a [beta1, beta2] pair in [0, 1)", v)
    return float(v[0]), float(v[1])


#: Adam's betas: one error for the pair (``betas: [0.9]`` names ``betas``, not ``betas[1]``)
Betas = Annotated[tuple[float, float], PlainValidator(_betas), PlainSerializer(list)]


class PlantConfig(Schema):
    """One simulated plant: task shape, GRPO batch, optimiser and the shared-parameter adapter.

    Built from keywords (``PlantConfig(lr=0.02)``) or a config mapping (``from_mapping``); a
    mistake is a ConfigError naming the field either way.
    """

    regime: Regime = "pretrained"
    """``pretrained``: a confident, imperfect start with long answers (the paper's regime);
    ``scratch``: a uniform start with short answers."""
    prompts: int = Field(32, ge=2)
    """Distinct prompts of the task."""
    prompts_per_step: int = Field(16, ge=1)
    """Prompts sampled per training step (at most ``prompts``)."""
    group_size: int = Field(8, ge=2)
    """Responses per prompt (GRPO group); a step sees prompts_per_step x group_size responses."""
    length: int | None = Field(None, ge=1)
    """Tokens per response; null = the regime's default (pretrained 6, scratch 1)."""
    forks: int | None = Field(None, ge=1)
    """How many of the response tokens decide correctness (the rest are format tokens shared by
    right and wrong answers); null = the regime's default (pretrained 2, scratch 1), at most
    ``length``."""
    vocab: int = Field(12, ge=3)
    """Tokens per position."""
    alternates: int = Field(0, ge=0)
    """Extra format tokens the verifier also accepts, rare at the start (pretrained only)."""
    alt_share: float = Field(0.6, ge=0.0, le=1.0)
    """Share of a format position's non-template probability the alternates start with."""
    lr: float = Field(0.05, gt=0.0)
    """Adam learning rate on every parameter."""
    betas: Betas = (0.9, 0.999)
    """Adam's [beta1, beta2], each in [0, 1)."""
    adam_eps: float = Field(1e-8, gt=0.0)
    """Adam's epsilon."""
    mini_batches: int = Field(1, ge=1)
    """Updates per epoch: each prompt's samples are split across the mini-batches (a divisor of
    group_size), so later mini-batches see a ratio != 1 and the clip bounds act."""
    epochs: int = Field(1, ge=1)
    """Passes over each step's batch."""
    rank: int = Field(0, ge=0)
    """Width of the low-rank adapter shared across prompts: logits z[p, l] = theta[p, l] +
    U[p] . W[l], U fixed ~ N(0, shared_scale^2), W trained from 0; 0 = purely tabular logits."""
    shared_scale: float = Field(1.0, ge=0.0)
    """Standard deviation of the adapter's fixed prompt embeddings U."""
    dh_stats: bool = True
    """Also measure the first-order entropy change split ``dh_pos`` / ``dh_neg`` per step."""

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise validation_error(e, "", type(self)) from None

    @model_validator(mode="before")
    @classmethod
    def _regime_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        regime = data.get("regime", "pretrained")
        d = _REGIME_DEFAULTS.get(regime) if isinstance(regime, str) else None
        if d is None:
            return data
        data = dict(data)
        if data.get("length") is None:
            data["length"] = d["length"]
        if data.get("forks") is None and isinstance(data["length"], int):
            data["forks"] = min(d["forks"], data["length"])
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PlantConfig:
        if self.prompts_per_step > self.prompts:
            raise ConfigError("prompts_per_step", f"at most prompts ({self.prompts})",
                              self.prompts_per_step)
        if self.forks is not None and self.length is not None and self.forks > self.length:
            raise ConfigError("forks", f"at most length ({self.length})", self.forks)
        if self.group_size % self.mini_batches:
            raise ConfigError("mini_batches", f"a divisor of group_size ({self.group_size})",
                              self.mini_batches)
        return self

    @property
    def updates_per_step(self) -> int:
        return self.mini_batches * self.epochs

    def as_dict(self) -> dict[str, Any]:
        """Every field, the regime defaults filled in (a mapping ``from_mapping`` reads back)."""
        return self.resolved()

    def replace(self, **changes: Any) -> PlantConfig:
        """A copy with ``changes`` applied and checked."""
        return type(self)(**{**self.resolved(), **changes})

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, key: str = "plant") -> PlantConfig:
        """Build from a config mapping; every error names ``key.field``."""
        return parse(cls, values, key)
