"""regulated_policy_loss against an analytic PPO gradient, and micro-batch equivalence."""

import math

import pytest
import torch

from regulator import Knobs, masked_mean, predicted_entropy_change, regulated_policy_loss


def _data(seed=0, n=6, t=9, spread=0.5):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(n, t, generator=g, dtype=torch.float64) * 3
    new = old + spread * torch.randn(n, t, generator=g, dtype=torch.float64)
    adv = torch.randn(n, 1, generator=g, dtype=torch.float64)
    mask = (torch.rand(n, t, generator=g) > 0.25).double()
    mask[:, 0] = 1
    return new, old, adv, mask


def _reference_grad(new, old, adv, mask, k: Knobs):
    """d loss / d logprob per token, written out from PPO's min/clip by cases."""
    grad = torch.zeros_like(new)
    n_tok = mask.sum()
    a_full = adv.expand_as(new)
    for idx in torch.nonzero(mask):
        i, j = idx.tolist()
        r = math.exp(new[i, j] - old[i, j])
        a = a_full[i, j].item()
        w = k.w_pos if a > 0 else (k.w_neg if a < 0 else 0.0)
        clipped = (a > 0 and r > 1 + k.eps_high) or (a < 0 and r < 1 - k.eps_low)
        # unclipped branch: d(-w r A / N)/d logprob = -w A r / N  (dr/dlogprob = r)
        grad[i, j] = 0.0 if clipped else -w * a * r / n_tok
    return grad


@pytest.mark.parametrize(
    "knobs",
    [Knobs(), Knobs(w_pos=0.3, w_neg=1.7, eps_low=0.1, eps_high=0.28),
     Knobs(w_pos=0.0), Knobs(eps_high=math.inf, eps_low=0.0)],
)
def test_gradient_matches_analytic_reference(knobs):
    new, old, adv, mask = _data()
    lp = new.clone().requires_grad_(True)
    loss, stats = regulated_policy_loss(lp, old, adv, mask, knobs)
    loss.backward()
    ref = _reference_grad(new, old, adv, mask, knobs)
    torch.testing.assert_close(lp.grad, ref, rtol=1e-10, atol=1e-12)
    assert math.isfinite(loss.item())


def test_w_pos_zero_removes_every_positive_token_gradient():
    new, old, adv, mask = _data(seed=1, spread=0.05)
    lp = new.clone().requires_grad_(True)
    loss, _ = regulated_policy_loss(lp, old, adv, mask, Knobs(w_pos=0.0))
    loss.backward()
    pos = (adv > 0).expand_as(new)
    assert torch.all(lp.grad[pos] == 0)
    # the negative tokens still get gradient where unmasked
    assert torch.all(lp.grad[(~pos) & (mask > 0)] != 0)


def test_clip_regions_have_zero_gradient_exactly_where_ppo_says():
    new, old, adv, mask = _data(seed=2, spread=0.6)
    k = Knobs(eps_low=0.2, eps_high=0.2)
    lp = new.clone().requires_grad_(True)
    loss, stats = regulated_policy_loss(lp, old, adv, mask, k)
    loss.backward()
    r = (new - old).exp()
    a = adv.expand_as(new)
    hi = (a > 0) & (r > 1.2) & (mask > 0)
    lo = (a < 0) & (r < 0.8) & (mask > 0)
    assert hi.any() and lo.any(), "test data must exercise both clip sides"
    assert torch.all(lp.grad[hi | lo] == 0)
    live = (mask > 0) & ~(hi | lo)
    assert torch.all(lp.grad[live] != 0)
    # ratio beyond the bound on the *other* side of the advantage is not clipped
    other = (a > 0) & (r < 0.8) & (mask > 0)
    if other.any():
        assert torch.all(lp.grad[other] != 0)
    n = mask.sum()
    assert stats["clip_frac_high"].item() == pytest.approx(hi.sum().item() / n.item())
    assert stats["clip_frac_low"].item() == pytest.approx(lo.sum().item() / n.item())


def test_microbatches_with_global_token_count_equal_full_batch():
    new, old, adv, mask = _data(seed=3, n=8)
    k = Knobs(w_pos=0.6, w_neg=1.3)
    full = new.clone().requires_grad_(True)
    loss_full, _ = regulated_policy_loss(full, old, adv, mask, k)
    loss_full.backward()
    split = new.clone().requires_grad_(True)
    n_tok = mask.sum()
    total = 0.0
    for sl in (slice(0, 3), slice(3, 5), slice(5, 8)):
        part, _ = regulated_policy_loss(split[sl], old[sl], adv[sl], mask[sl], k, num_tokens=n_tok)
        part.backward()
        total += part.item()
    torch.testing.assert_close(split.grad, full.grad)
    assert total == pytest.approx(loss_full.item())


def test_on_policy_loss_is_weighted_advantage_mean_and_stats():
    new, _, adv, mask = _data(seed=4)
    k = Knobs(w_pos=0.5, w_neg=2.0)
    loss, stats = regulated_policy_loss(new, new.detach(), adv, mask, k)
    a = adv.expand_as(new)
    w = torch.where(a > 0, 0.5, 2.0)
    assert loss.item() == pytest.approx(-(w * a * mask).sum().item() / mask.sum().item())
    assert stats["clip_frac_low"].item() == 0 and stats["clip_frac_high"].item() == 0
    assert stats["pos_token_frac"].item() + stats["neg_token_frac"].item() == pytest.approx(1.0)
    assert stats["tokens"].item() == mask.sum().item()


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, m).item() == pytest.approx(2.0)
    torch.testing.assert_close(masked_mean(x, m, dim=1), torch.tensor([1.5, 3.0]))
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0


def test_predicted_entropy_change_splits_by_sign():
    coef = torch.tensor([[0.5, -1.0], [2.0, 1.0]])
    adv = torch.tensor([[1.0], [-2.0]])
    mask = torch.ones(2, 2)
    out = predicted_entropy_change(coef, adv, mask)
    assert out["dh_pos"] == pytest.approx((0.5 - 1.0) / 4)
    assert out["dh_neg"] == pytest.approx((-2.0 * 2.0 - 2.0 * 1.0) / 4)
