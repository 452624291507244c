"""Token entropy and first-order entropy-change statistics, computed in bounded memory.

Both walk the [positions x vocab] logits in row chunks, so no second full float32 copy of the
logits is ever made (a naive ``log_softmax`` makes one, 1.6 GB at 8192 x 50k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: elements per chunk temporary when ``chunk_size`` is None: on CPU 2 temporaries of 2 MiB each,
#: small enough to stay in cache, which makes the chunked pass faster than the naive one; on an
#: accelerator 128 MiB each (a few hundred rows at a 152k vocabulary), so the pass is a few dozen
#: kernel launches instead of thousands (3 rows per chunk would be ~2700 chunks at 8k x 152k).
_AUTO_CHUNK_ELEMENTS = 1 << 19
_AUTO_CHUNK_ELEMENTS_ACCEL = 1 << 25


def _rows_per_chunk(vocab: int, chunk_size: int | None, device: torch.device | None = None) -> int:
    if chunk_size is None:
        cpu = device is None or device.type == "cpu"
        return max(1, (_AUTO_CHUNK_ELEMENTS if cpu else _AUTO_CHUNK_ELEMENTS_ACCEL) // max(vocab, 1))
    if chunk_size <= 0:
        raise ValueError(f"chunk_size: expected a positive number of rows or None, got {chunk_size}")
    return chunk_size


def _shifted_exp(rows: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """zs = (z - max z) / T, e = exp(zs), s = sum e  (two chunk-sized temporaries)."""
    z = rows.float()
    zs = z - z.amax(dim=-1, keepdim=True)
    if temperature != 1.0:
        zs.mul_(1.0 / temperature)
    e = zs.exp()
    return zs, e, e.sum(dim=-1)


def token_entropy(
    logits: torch.Tensor, temperature: float = 1.0, chunk_size: int | None = None
) -> torch.Tensor:
    """Entropy (nats, float32) of softmax(logits / temperature) at every position.

    logits: [..., vocab]; returns [...]. With ``chunk_size`` None the row chunk is sized so each
    temporary holds about 0.5M elements on CPU, 32M on an accelerator; pass an int to choose the
    rows per chunk.
    H = log s - sum_k e_k zs_k / s, with zs = (z - max z) / T, e = exp(zs), s = sum e.
    """
    if temperature <= 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    rows = _rows_per_chunk(flat.shape[-1], chunk_size, flat.device)
    out = torch.empty(flat.shape[0], dtype=torch.float32, device=logits.device)
    for i in range(0, flat.shape[0], rows):
        zs, e, s = _shifted_exp(flat[i : i + rows], temperature)
        out[i : i + rows] = s.log() - zs.mul_(e).sum(dim=-1) / s  # zs is overwritten by e*zs
    return out.reshape(shape)


@dataclass
class TokenStats:
    """Per-position statistics of the sampled tokens, all float32 and detached.

    entropy: H of the position's distribution.
    logprob: log pi(a) of the sampled token a.
    dh_coef: the first-order entropy change per unit advantage of a logit step along
        grad log pi(a) (after Cui et al. 2505.22617, dH/dz_k = -p_k (log p_k + H)):
        c = -[p_a (log p_a + H) - sum_k p_k^2 (log p_k + H)].
    """

    entropy: torch.Tensor
    logprob: torch.Tensor
    dh_coef: torch.Tensor


@torch.no_grad()
def token_stats(
    logits: torch.Tensor,
    actions: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> TokenStats:
    """Entropy, sampled-token log-prob and entropy-change coefficient in one chunked pass.

    logits: [..., vocab], actions: [...] (token ids). Nothing here carries gradient.
    """
    if temperature <= 0:
        raise ValueError(f"temperature: expected > 0, got {temperature}")
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1])
    acts = actions.reshape(-1, 1).long()
    rows = _rows_per_chunk(flat.shape[-1], chunk_size, flat.device)
    ent, lp, coef = (torch.empty(flat.shape[0], device=logits.device) for _ in range(3))
    for i in range(0, flat.shape[0], rows):
        zs, e, s = _shifted_exp(flat[i : i + rows], temperature)
        log_s = s.log()
        logp_a = zs.gather(-1, acts[i : i + rows]).squeeze(-1) - log_s
        p_a = logp_a.exp()
        ez = zs.mul_(e)  # zs is overwritten by e * zs
        h = log_s - ez.sum(dim=-1) / s
        s2 = e.square().sum(dim=-1) / s.square()  # sum p^2
        s2_logp = ez.mul_(e).sum(dim=-1) / s.square() - log_s * s2  # sum p^2 log p
        ent[i : i + rows] = h
        lp[i : i + rows] = logp_a
        coef[i : i + rows] = -(p_a * (logp_a + h) - (s2_logp + h * s2))
    return TokenStats(ent.reshape(shape), lp.reshape(shape), coef.reshape(shape))
