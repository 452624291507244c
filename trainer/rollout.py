"""Rollout backends: sample ``group_size`` responses per prompt from the current policy.

One interface (``RolloutBackend``), two implementations, looked up by ``rollout.backend`` in the
``ROLLOUT_BACKENDS`` registry (``make_backend``):

- ``HFGenerateBackend`` (``hf``, default): the training model's own forward with a KV cache,
  batched, each distinct prompt computed once for its whole group, stopping when every sequence has
  emitted EOS. Sampling is Gumbel-max with one seeded generator per
  sequence (``SeededSampler``): the response to (prompt, sample j) depends only on its seed and
  the policy, not on which other prompts share the batch or on how many ranks split it. That
  makes two ranks reproduce a single process, and resume reproduce an uninterrupted run.
- ``VLLMBackend`` (``rollout.backend: vllm``, optional extra ``[vllm]``, CUDA only): a colocated
  vLLM engine; the training engine's weights are pushed into it after every update. Imported
  lazily. Untested here (the build machines have no GPU).

A ``Rollout`` holds the token ids laid out for the training forward: ``input_ids`` = left-padded
prompt (P columns) + right-padded response (T columns), and ``response_mask`` [B, T] marking the
response tokens up to and including the first EOS.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from regulator.registries import Registry
from trainer.prefix import prefix_cache

log = logging.getLogger(__name__)


@dataclass
class Rollout:
    """A batch of sampled responses in the layout the training forward needs."""

    input_ids: torch.Tensor       # [B, P + T]
    attention_mask: torch.Tensor  # [B, P + T]: prompt tokens and response tokens up to EOS
    response_mask: torch.Tensor   # [B, T] float: response tokens up to and including EOS
    prompt_len: int               # P
    responses: list[str]          # decoded responses (special tokens skipped)
    shared_prefix: bool = False   # training forwards compute a repeated prompt once (trainer.prefix)

    @property
    def response_ids(self) -> torch.Tensor:
        return self.input_ids[:, self.prompt_len:]

    def position_ids(self) -> torch.Tensor:
        """Positions that skip left padding (the training forward needs them explicitly)."""
        return (self.attention_mask.long().cumsum(-1) - 1).clamp(min=0)


class RolloutBackend(Protocol):
    def generate(self, prompts: list[str], seeds: list[int], *, greedy: bool = False) -> Rollout:
        """One response per entry of ``prompts`` (repeat a prompt for a group)."""

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Make the sampler use ``model``'s current weights (after an update)."""


class SeededSampler:
    """A logits processor that turns greedy decoding into seeded sampling (Gumbel-max trick).

    argmax(z / T + g), g ~ Gumbel(0, 1) i.i.d., is a sample of softmax(z / T). Each row draws
    its noise from its own generator seeded with ``seeds[row]``, so a row's sample is the same
    whatever batch it is in (on a given device: CPU and CUDA generators give different streams).
    Optional top-k / top-p filtering happens before the noise.
    """

    def __init__(self, seeds: list[int], temperature: float, top_k: int = 0, top_p: float = 1.0):
        self.seeds = [int(s) for s in seeds]
        self.gens: list[torch.Generator] = []  # made on the logits' device at the first call
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        z = scores.float() / self.temperature
        if self.top_k > 0:
            kth = torch.topk(z, min(self.top_k, z.shape[-1]), dim=-1).values[:, -1:]
            z = z.masked_fill(z < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_z, idx = torch.sort(z, descending=True, dim=-1)
            cum = sorted_z.softmax(-1).cumsum(-1)
            drop = cum - sorted_z.softmax(-1) >= self.top_p  # keep the smallest set reaching top_p
            z = z.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
        if not self.gens:  # the noise is drawn where the logits are: no host->device copy per token
            self.gens = [torch.Generator(device=z.device).manual_seed(s) for s in self.seeds]
        u = torch.stack([torch.rand(z.shape[-1], generator=g, device=z.device) for g in self.gens])
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0 - 1e-7)))
        return z + gumbel


def _layout(tokenizer, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, out: torch.Tensor,
            eos_ids: set[int], *, shared_prefix: bool = False) -> Rollout:
    """Cut responses at the first EOS and build masks for the training forward."""
    p = prompt_ids.shape[1]
    resp = out[:, p:]
    is_eos = torch.zeros_like(resp, dtype=torch.bool)
    for e in eos_ids:
        is_eos |= resp == e
    # position of the first EOS (or T when none): keep tokens <= it
    first = torch.where(is_eos.any(-1), is_eos.float().argmax(-1),
                        torch.full((resp.shape[0],), resp.shape[1], device=resp.device))
    ar = torch.arange(resp.shape[1], device=resp.device)
    rmask = (ar[None, :] <= first[:, None]).float()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    resp = torch.where(rmask.bool(), resp, torch.full_like(resp, pad))
    texts = tokenizer.batch_decode(resp.masked_fill(~rmask.bool(), pad).tolist(),
                                   skip_special_tokens=True)
    return Rollout(
        input_ids=torch.cat([prompt_ids, resp], 1),
        attention_mask=torch.cat([prompt_mask.long(), rmask.long()], 1),
        response_mask=rmask,
        prompt_len=p,
        responses=texts,
        shared_prefix=shared_prefix,
    )


def eos_token_ids(tokenizer, model: torch.nn.Module | None = None) -> set[int]:
    """Every id that ends a response: the tokenizer's EOS plus the generation config's."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gc = getattr(model, "generation_config", None)
    extra = getattr(gc, "eos_token_id", None) if gc is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif isinstance(extra, (list, tuple)):
        ids.update(int(i) for i in extra)
    return ids


def tokenize_prompts(tokenizer, prompts: list[str], device: torch.device | str = "cpu"):
    """Left-padded prompt ids and mask (no second BOS when a chat template already added one).

    Each distinct prompt is tokenised once (a group repeats its prompt ``group_size`` times).
    """
    bos = tokenizer.bos_token
    add_special = not (bos and all(p.startswith(bos) for p in prompts))
    distinct = list(dict.fromkeys(prompts))
    enc = tokenizer(distinct, return_tensors="pt", padding=True, add_special_tokens=add_special)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    if len(distinct) < len(prompts):
        where = {p: i for i, p in enumerate(distinct)}
        rows = torch.tensor([where[p] for p in prompts])
        ids, mask = ids[rows], mask[rows]
    return ids.to(device), mask.to(device)


class HFGenerateBackend:
    """Sampling on the training model itself (weights always current).

    With ``shared_prefix`` (the default) our own decode loop: the distinct prompts are computed
    once (``trainer.prefix``), their KV cache is gathered to every response of the group, then one
    forward per new token for all rows, stopping when every row has emitted EOS. Without it,
    transformers ``generate`` with one prefill per row (an escape hatch for models whose cache
    the loop does not handle). Both give the same tokens for the same seeds, up to float rounding.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, *, max_new_tokens: int, temperature: float,
                 top_k: int = 0, top_p: float = 1.0, shared_prefix: bool = True):
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.top_k, self.top_p = top_k, top_p
        self.shared_prefix = shared_prefix
        self.eos = eos_token_ids(tokenizer, model)

    @torch.no_grad()
    def generate(self, prompts: list[str], seeds: list[int], *, greedy: bool = False) -> Rollout:
        device = next(self.model.parameters()).device
        ids, mask = tokenize_prompts(self.tokenizer, prompts, device)
        sampler = None if greedy else SeededSampler(seeds, self.temperature, self.top_k, self.top_p)
        was_training = self.model.training
        self.model.eval()
        try:
            decode = self._decode if self.shared_prefix else self._hf_generate
            out = decode(ids, mask, sampler)
        finally:
            self.model.train(was_training)
        if out.shape[1] == ids.shape[1]:  # nothing generated (max_new_tokens reached 0)
            out = torch.cat([out, torch.full_like(out[:, :1], sorted(self.eos)[0])], 1)
        return _layout(self.tokenizer, ids, mask, out, self.eos, shared_prefix=self.shared_prefix)

    def _decode(self, ids: torch.Tensor, mask: torch.Tensor, sampler: SeededSampler | None
                ) -> torch.Tensor:
        """Prompt ids + new tokens [B, P + t]; finished rows are padded, as ``generate`` does."""
        b, p = ids.shape
        pos = (mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = prefix_cache(self.model, ids, mask, pos) if p > 1 else None
        eos = torch.tensor(sorted(self.eos), device=ids.device)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else int(eos[0])
        cur, cur_pos, attn = ids[:, p - 1:], pos[:, p - 1:], mask.long()
        done = torch.zeros(b, dtype=torch.bool, device=ids.device)
        new: list[torch.Tensor] = []
        for _ in range(self.max_new_tokens):
            out = self.model(input_ids=cur, attention_mask=attn, position_ids=cur_pos,
                             past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache, scores = out.past_key_values, out.logits[:, -1].float()
            token = (scores if sampler is None else sampler(ids, scores)).argmax(-1)
            token = token.masked_fill(done, pad)
            new.append(token)
            done |= torch.isin(token, eos)
            if bool(done.all()):
                break
            cur, cur_pos = token[:, None], cur_pos[:, -1:] + 1
            attn = torch.cat([attn, attn.new_ones(b, 1)], 1)
        return torch.cat([ids, torch.stack(new, 1)], 1) if new else ids

    def _hf_generate(self, ids: torch.Tensor, mask: torch.Tensor, sampler: SeededSampler | None
                     ) -> torch.Tensor:
        from transformers import GenerationConfig, LogitsProcessorList

        gen_cfg = GenerationConfig(
            max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
            eos_token_id=sorted(self.eos), pad_token_id=self.tokenizer.pad_token_id,
            use_cache=True,
        )
        procs = LogitsProcessorList([sampler] if sampler is not None else [])
        return self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg,
                                   logits_processor=procs)

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Nothing to do: generation runs on the training module itself."""


class VLLMBackend:
    """A colocated vLLM engine (CUDA only; ``pip install 'entropy-regulator[vllm]'``).

    UNTESTED on the build machines (no GPU). Follows TRL's colocate mode: every training rank
    runs its own in-process engine (``distributed_executor_backend="external_launcher"``, the
    engine lives inside the torch.distributed job), and after every update the training weights
    are pushed into it with the model's ``load_weights`` (gathered first under ZeRO-3).
    Per-request seeds keep the sampling reproducible, as in the HF backend.
    """

    def __init__(self, model_path: str, tokenizer, *, max_new_tokens: int, temperature: float,
                 top_k: int = 0, top_p: float = 1.0, gpu_memory_utilization: float = 0.3,
                 dtype: str = "bfloat16", seed: int = 0, max_model_len: int | None = None,
                 shared_prefix: bool = True):
        import os

        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process
        try:
            from vllm import LLM
        except ImportError as e:  # pragma: no cover - optional extra
            from regulator.errors import ConfigError

            raise ConfigError("rollout.backend", "an installed vllm (pip install "
                              "'entropy-regulator[vllm]', CUDA only)", "vllm", hint=str(e)) from None
        self.tokenizer = tokenizer
        self.max_new_tokens, self.temperature, self.top_k, self.top_p = (
            max_new_tokens, temperature, top_k, top_p)
        kw = {"max_model_len": max_model_len} if max_model_len else {}
        self.llm = LLM(model=model_path, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                       seed=seed, distributed_executor_backend="external_launcher",
                       enable_prefix_caching=True, **kw)
        self.eos = eos_token_ids(tokenizer)
        self.shared_prefix = shared_prefix  # for the training forwards (vLLM caches prefixes itself)

    @torch.no_grad()
    def generate(self, prompts: list[str], seeds: list[int], *, greedy: bool = False) -> Rollout:
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=self.max_new_tokens,
                                 temperature=0.0 if greedy else self.temperature,
                                 top_k=self.top_k if self.top_k > 0 else -1, top_p=self.top_p,
                                 seed=int(s), stop_token_ids=sorted(self.eos)) for s in seeds]
        ids, mask = tokenize_prompts(self.tokenizer, prompts)
        toks = [row[m.bool()].tolist() for row, m in zip(ids, mask)]
        outs = self.llm.generate([{"prompt_token_ids": t} for t in toks], params, use_tqdm=False)
        resp = [list(o.outputs[0].token_ids) for o in outs]
        width = max(1, max(len(r) for r in resp))
        pad = self.tokenizer.pad_token_id
        full = torch.full((len(resp), ids.shape[1] + width), pad, dtype=ids.dtype)
        full[:, : ids.shape[1]] = ids
        for i, r in enumerate(resp):
            full[i, ids.shape[1]: ids.shape[1] + len(r)] = torch.tensor(r, dtype=ids.dtype)
        device = torch.device("cuda", torch.cuda.current_device())
        return _layout(self.tokenizer, ids.to(device), mask.to(device), full.to(device), self.eos,
                       shared_prefix=self.shared_prefix)

    def _vllm_model(self):
        executor = self.llm.llm_engine.model_executor
        worker = executor.driver_worker
        worker = getattr(worker, "worker", worker)  # newer vLLM wraps the worker
        return worker.model_runner.model

    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the training weights into the colocated engine (same GPU, no copy to host)."""
        target = self._vllm_model()
        params = list(model.parameters())
        zero3 = any(hasattr(p, "ds_id") for p in params)
        if zero3:  # ZeRO-3 shards the weights: gather them for the copy
            import deepspeed

            with deepspeed.zero.GatheredParameters(params):
                target.load_weights(weights=list(model.state_dict().items()))
        else:
            target.load_weights(weights=list(model.state_dict().items()))
        self.llm.reset_prefix_cache()


def _hf_backend(rollout_cfg: Any, model: torch.nn.Module, tokenizer: Any, *,
                model_path: str | None, seed: int) -> RolloutBackend:
    return HFGenerateBackend(model, tokenizer, shared_prefix=rollout_cfg.shared_prefix,
                             **_sampling(rollout_cfg))


def _vllm_backend(rollout_cfg: Any, model: torch.nn.Module, tokenizer: Any, *,
                  model_path: str | None, seed: int) -> RolloutBackend:
    from regulator.errors import ConfigError

    if not torch.cuda.is_available():
        raise ConfigError("rollout.backend", "'hf' on a machine without CUDA (vLLM is CUDA "
                          "only)", "vllm")
    if model_path is None:
        raise ConfigError("rollout.backend", "'hf' for in-process models (vLLM needs a model "
                          "directory: model.path)", "vllm")
    return VLLMBackend(model_path, tokenizer, gpu_memory_utilization=
                       rollout_cfg.gpu_memory_utilization, seed=seed,
                       shared_prefix=rollout_cfg.shared_prefix, **_sampling(rollout_cfg))


def _sampling(rollout_cfg: Any) -> dict[str, Any]:
    return dict(max_new_tokens=rollout_cfg.max_new_tokens, temperature=rollout_cfg.temperature,
                top_k=rollout_cfg.top_k, top_p=rollout_cfg.top_p)


def _is_builder(obj: Any) -> str:
    return "" if callable(obj) else "a callable (rollout_cfg, model, tokenizer, *, model_path, seed)"


#: rollout backends by ``rollout.backend`` name: a builder ``(rollout_cfg, model, tokenizer, *,
#: model_path, seed) -> RolloutBackend`` (vllm is imported only when its builder runs); a plugin
#: publishes another in the entry-point group ``regulator.rollout_backends``
ROLLOUT_BACKENDS: Registry[Callable[..., RolloutBackend]] = Registry(
    "rollout backends", group="regulator.rollout_backends", check=_is_builder)
ROLLOUT_BACKENDS.register("hf")(_hf_backend)
ROLLOUT_BACKENDS.register("vllm")(_vllm_backend)


def make_backend(rollout_cfg: Any, model: torch.nn.Module, tokenizer: Any, *,
                 model_path: str | None, seed: int) -> RolloutBackend:
    """The backend named in ``rollout.backend``."""
    build = ROLLOUT_BACKENDS.get(rollout_cfg.backend, "rollout.backend")
    return build(rollout_cfg, model, tokenizer, model_path=model_path, seed=seed)
