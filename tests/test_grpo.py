"""GRPO pieces: advantages, seeded sampling, the measuring forward and the regulated update."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from regulator import Knobs, token_entropy
from trainer.grpo import group_advantages, measure, update
from trainer.rollout import Rollout, SeededSampler


def test_group_advantages():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 1.0]])
    a, zero = group_advantages(r)
    assert zero.tolist() == [False, True, False]
    assert a[1].abs().sum() == 0
    std0 = r[0].std()
    assert a[0].tolist() == pytest.approx(((r[0] - 0.5) / (std0 + 1e-6)).tolist())
    assert a.sum(-1).tolist() == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    a2, _ = group_advantages(r, std_norm=False)  # Dr. GRPO: centred only
    assert a2[2].tolist() == pytest.approx([-0.25, -0.25, -0.25, 0.75])


def test_seeded_sampler_is_independent_of_the_batch():
    torch.manual_seed(0)
    logits = torch.randn(3, 11)
    s_all = SeededSampler([5, 6, 7], temperature=1.0)
    s_one = SeededSampler([6], temperature=1.0)
    for _ in range(4):  # several decoding steps: the per-row streams advance independently
        a = s_all(None, logits).argmax(-1)
        b = s_one(None, logits[1:2]).argmax(-1)
        assert a[1] == b[0]


def test_seeded_sampler_samples_softmax_at_temperature():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    t = 0.7
    counts = torch.zeros(4)
    n = 4000
    for seed in range(n):
        counts[SeededSampler([seed], temperature=t)(None, logits).argmax(-1)] += 1
    p = torch.softmax(logits[0] / t, -1)
    assert (counts / n).tolist() == pytest.approx(p.tolist(), abs=0.03)
    # top-k 1 is greedy
    assert SeededSampler([1], 1.0, top_k=1)(None, logits).argmax(-1).item() == 0


class _Engine(torch.nn.Module):
    """DeepSpeed's backward/step contract on a plain module: step() every micro-batch, the
    optimizer steps at the gradient-accumulation boundary."""

    def __init__(self, model, micro_per_update):
        super().__init__()
        self.module = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.5)
        self.gas, self.micro = micro_per_update, 0

    def forward(self, **kw):
        return self.module(**kw)

    def backward(self, loss, scale_wrt_gas=True):
        (loss / self.gas if scale_wrt_gas else loss).backward()

    def step(self):
        self.micro += 1
        if self.micro % self.gas == 0:
            self.opt.step()
            self.opt.zero_grad()


def _setup():
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=13, hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=4,
                                         num_key_value_heads=4, max_position_embeddings=32))
    b, p, t = 8, 3, 4
    ids = torch.randint(4, 13, (b, p + t))
    ids[:2, 0] = 0  # two left-padded prompts
    attn = torch.ones(b, p + t, dtype=torch.long)
    attn[:2, 0] = 0
    rmask = torch.ones(b, t)
    rmask[3, 2:] = 0  # a response that ended early
    attn[3, p + 2:] = 0
    ro = Rollout(ids, attn, rmask, p, [""] * b)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, 0.0, -2.0, 1.0]).view(-1, 1)
    return model, ro, adv


def test_measure_entropy_is_the_token_mean_at_temperature():
    model, ro, adv = _setup()
    eng = _Engine(model, 1)
    m = measure(eng, ro, adv, 0.8, keep_graph=False, micro_batch=3)
    with torch.no_grad():
        logits = model(input_ids=ro.input_ids, attention_mask=ro.attention_mask,
                       position_ids=ro.position_ids()).logits[:, ro.prompt_len - 1:-1]
    h = token_entropy(logits, 0.8)
    assert m.entropy == pytest.approx(float((h * ro.response_mask).sum() / ro.response_mask.sum()),
                                      rel=1e-5)
    lp = torch.log_softmax(logits / 0.8, -1).gather(-1, ro.response_ids.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(m.old_logprobs, lp, atol=1e-5)
    assert math.isfinite(m.dh["dh_pos"]) and math.isfinite(m.dh["dh_neg"])


def test_shared_forward_equals_two_passes():
    """One forward serving entropy, old log-probs and the loss (ratio = 1) gives the same update
    as a separate no-grad measurement followed by micro-batched loss forwards."""
    model, ro, adv = _setup()
    knobs = Knobs(w_pos=0.7, w_neg=1.3)
    results = []
    for shared, micro in ((True, 8), (False, 2)):
        m_ = copy.deepcopy(model)
        eng = _Engine(m_, 8 // micro)
        meas = measure(eng, ro, adv, 1.0, keep_graph=shared, micro_batch=micro)
        stats = update(eng, ro, meas, adv, ro.response_mask, knobs, temperature=1.0,
                       mini_batches=1, epochs=1, micro_batch=micro, seed=0)
        results.append((torch.cat([p.flatten() for p in m_.parameters()]), stats))
    (p1, s1), (p2, s2) = results
    before = torch.cat([p.flatten() for p in model.parameters()])
    assert not torch.allclose(p1, before)
    assert torch.allclose(p1, p2, atol=1e-6)
    assert s1["loss/policy"] == pytest.approx(s2["loss/policy"], rel=1e-5)
    assert s1["clip/frac_low"] == s1["clip/frac_high"] == 0.0  # on-policy: ratio = 1


def test_several_updates_move_the_ratio_and_clip():
    model, ro, adv = _setup()
    eng = _Engine(model, 1)
    meas = measure(eng, ro, adv, 1.0, keep_graph=False, micro_batch=4)
    stats = update(eng, ro, meas, adv, ro.response_mask, Knobs(eps_low=0.01, eps_high=0.01),
                   temperature=1.0, mini_batches=2, epochs=3, micro_batch=4, seed=1)
    assert stats["clip/frac_low"] + stats["clip/frac_high"] > 0


def test_zero_weights_leave_the_policy_unchanged():
    model, ro, adv = _setup()
    before = [p.detach().clone() for p in model.parameters()]
    eng = _Engine(model, 1)
    meas = measure(eng, ro, adv, 1.0, keep_graph=True, micro_batch=8)
    update(eng, ro, meas, adv, ro.response_mask, Knobs(w_pos=0.0, w_neg=0.0), temperature=1.0,
           mini_batches=1, epochs=1, micro_batch=8, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
