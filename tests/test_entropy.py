"""token_entropy and token_stats against naive float64 computations."""

import pytest
import torch

from regulator import token_entropy, token_stats


def _logits(seed=0, shape=(3, 7, 50), scale=4.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("chunk_size", [None, 1, 4, 10_000])
def test_token_entropy_matches_float64(temperature, chunk_size):
    logits = _logits()
    ref_logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    ref = -(ref_logp.exp() * ref_logp).sum(-1)
    got = token_entropy(logits, temperature=temperature, chunk_size=chunk_size)
    assert got.shape == logits.shape[:-1] and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=0, atol=1e-5)


def test_token_entropy_bf16_input_and_extremes():
    logits = _logits(seed=1).bfloat16()
    ref_logp = torch.log_softmax(logits.double(), dim=-1)
    ref = -(ref_logp.exp() * ref_logp).sum(-1)
    torch.testing.assert_close(token_entropy(logits).double(), ref, rtol=0, atol=1e-5)
    # a one-hot-like distribution has ~0 entropy; uniform has log V
    peaked = torch.full((1, 50), -1e4)
    peaked[0, 3] = 0
    assert token_entropy(peaked).item() == pytest.approx(0.0, abs=1e-6)
    log_v = torch.log(torch.tensor(50.0)).item()
    assert token_entropy(torch.zeros(2, 50)).tolist() == pytest.approx([log_v] * 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="temperature"):
        token_entropy(torch.zeros(2, 3), temperature=0)
    with pytest.raises(ValueError, match="chunk_size"):
        token_entropy(torch.zeros(2, 3), chunk_size=0)


@pytest.mark.parametrize("temperature", [0.7, 1.0])
def test_token_stats_match_naive(temperature):
    logits = _logits(seed=2, shape=(4, 5, 30))
    acts = torch.randint(0, 30, (4, 5), generator=torch.Generator().manual_seed(0))
    st = token_stats(logits, acts, temperature=temperature, chunk_size=3)
    logp = torch.log_softmax(logits.double() / temperature, -1)
    p = logp.exp()
    h = -(p * logp).sum(-1)
    lpa = logp.gather(-1, acts.unsqueeze(-1)).squeeze(-1)
    # first-order entropy change of the logit step dz = e_a - p, with dH/dz_k = -p_k (log p_k + H)
    dh_dz = -p * (logp + h.unsqueeze(-1))
    dz = torch.nn.functional.one_hot(acts, 30).double() - p
    coef = (dh_dz * dz).sum(-1)
    torch.testing.assert_close(st.entropy.double(), h, rtol=0, atol=1e-5)
    torch.testing.assert_close(st.logprob.double(), lpa, rtol=0, atol=1e-5)
    torch.testing.assert_close(st.dh_coef.double(), coef, rtol=0, atol=1e-5)


def test_dh_coef_predicts_a_small_logit_step():
    """The coefficient is the derivative of H along the policy-gradient logit step."""
    logits = _logits(seed=3, shape=(6, 20), scale=2.0).double()
    acts = torch.randint(0, 20, (6,), generator=torch.Generator().manual_seed(1))
    st = token_stats(logits.float(), acts)
    eta = 1e-4
    p = torch.softmax(logits, -1)
    stepped = logits + eta * (torch.nn.functional.one_hot(acts, 20).double() - p)
    h0 = token_entropy(logits).double()
    h1 = -(torch.softmax(stepped, -1) * torch.log_softmax(stepped, -1)).sum(-1)
    h0 = -(p * torch.log_softmax(logits, -1)).sum(-1)
    torch.testing.assert_close((h1 - h0) / eta, st.dh_coef.double(), rtol=1e-2, atol=1e-3)
