"""Shared prompt prefixes: the same logits, gradients, samples and updates as one forward per row."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from regulator import Knobs
from trainer.config import RolloutConfig
from trainer.grpo import measure, response_logits, update
from trainer.prefix import prompt_groups, shared_prefix_logits
from trainer.rollout import HFGenerateBackend, Rollout
from trainer.tokenizer import build_char_tokenizer


def _model(vocab: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, max_position_embeddings=64))


def _grouped_rollout(shared: bool) -> Rollout:
    """3 prompts of different lengths (left-padded) x 4 responses, rows shuffled, one short
    response: the layout the trainer builds."""
    g = torch.Generator().manual_seed(1)
    p, t = 5, 4
    prompts = [torch.randint(4, 19, (n,), generator=g) for n in (5, 3, 4)]
    rows, masks = [], []
    for pr in prompts:
        for _ in range(4):
            row = torch.cat([torch.zeros(p - len(pr), dtype=torch.long), pr,
                             torch.randint(4, 19, (t,), generator=g)])
            rows.append(row)
            masks.append(torch.cat([torch.zeros(p - len(pr)), torch.ones(len(pr) + t)]).long())
    order = torch.randperm(12, generator=g)
    ids, attn = torch.stack(rows)[order], torch.stack(masks)[order]
    rmask = torch.ones(12, t)
    rmask[2, 2:] = 0
    attn[2, p + 2:] = 0
    return Rollout(ids, attn, rmask, p, [""] * 12, shared_prefix=shared)


def test_prompt_groups_finds_the_distinct_prompts():
    ids = torch.tensor([[1, 2], [3, 4], [1, 2], [3, 4], [5, 6]])
    first, inverse = prompt_groups(ids)
    assert torch.equal(ids[first][inverse], ids)
    assert sorted(first.tolist()) == [0, 1, 4]


def test_shared_prefix_gives_the_full_forwards_logits_and_gradient():
    model = _model(19)
    ro = _grouped_rollout(shared=True)
    full = model(input_ids=ro.input_ids, attention_mask=ro.attention_mask,
                 position_ids=ro.position_ids()).logits[:, ro.prompt_len - 1:-1]
    shared = shared_prefix_logits(model, ro.input_ids, ro.attention_mask, ro.position_ids(),
                                  ro.prompt_len)
    m = ro.response_mask.bool()
    assert shared.shape == full.shape
    assert torch.allclose(shared[m], full[m], atol=1e-5)

    def grad(logits):
        model.zero_grad()
        (logits.log_softmax(-1)[..., 7] * ro.response_mask).sum().backward()
        return torch.cat([q.grad.flatten() for q in model.parameters()])

    g_full = grad(model(input_ids=ro.input_ids, attention_mask=ro.attention_mask,
                        position_ids=ro.position_ids()).logits[:, ro.prompt_len - 1:-1])
    g_shared = grad(shared_prefix_logits(model, ro.input_ids, ro.attention_mask,
                                         ro.position_ids(), ro.prompt_len))
    assert g_full.norm() > 0
    assert torch.allclose(g_shared, g_full, atol=1e-5 * float(g_full.abs().max()))


class _Engine(torch.nn.Module):
    """The two engine calls the update makes, on a plain module and SGD."""

    def __init__(self, model):
        super().__init__()
        self.module, self.opt = model, torch.optim.SGD(model.parameters(), lr=0.5)

    def forward(self, **kw):
        return self.module(**kw)

    def backward(self, loss, scale_wrt_gas=True):
        loss.backward()

    def step(self):
        self.opt.step()
        self.opt.zero_grad()


@pytest.mark.parametrize("keep_graph,mini_batches", [(True, 1), (False, 2)])
def test_the_update_is_the_same_with_and_without_shared_prefixes(keep_graph, mini_batches):
    model = _model(19)
    adv = torch.linspace(-1.5, 1.5, 12).view(-1, 1)
    after = []
    for shared in (False, True):
        ro, m_ = _grouped_rollout(shared), copy.deepcopy(model)
        eng = _Engine(m_)
        meas = measure(eng, ro, adv, 0.9, keep_graph=keep_graph, micro_batch=12)
        update(eng, ro, meas, adv, ro.response_mask, Knobs(w_pos=0.6, w_neg=1.4), temperature=0.9,
               mini_batches=mini_batches, epochs=1, micro_batch=12, seed=3)
        after.append((meas.entropy, torch.cat([q.detach().flatten() for q in m_.parameters()])))
    (h0, w0), (h1, w1) = after
    assert h1 == pytest.approx(h0, rel=1e-5)
    assert not torch.allclose(w0, torch.cat([q.flatten() for q in model.parameters()]))
    assert torch.allclose(w1, w0, atol=1e-5)


def test_response_logits_falls_back_to_the_full_forward_without_repeats():
    model = _model(19)
    ro = _grouped_rollout(shared=True)
    first, _ = prompt_groups(ro.input_ids[:, :ro.prompt_len])  # one row of each prompt
    logits = response_logits(_Engine(model), ro, first)
    ref = model(input_ids=ro.input_ids[first], attention_mask=ro.attention_mask[first],
                position_ids=ro.position_ids()[first]).logits[:, ro.prompt_len - 1:-1]
    assert len(first) == 3
    assert torch.allclose(logits, ref, atol=1e-6)


@pytest.mark.parametrize("greedy", [False, True])
def test_the_decode_loop_samples_what_transformers_generate_samples(greedy):
    tok = build_char_tokenizer("abcdefgh=")
    model = _model(len(tok), seed=2)
    model.generation_config.eos_token_id = tok.eos_token_id
    prompts = [p for p in ("ab=", "hgfedc=", "c=") for _ in range(5)]
    seeds = list(range(100, 115))
    outs = []
    for shared in (False, True):
        be = HFGenerateBackend(model, tok, max_new_tokens=12, temperature=0.7, top_k=6,
                               shared_prefix=shared)
        outs.append(be.generate(prompts, seeds, greedy=greedy))
    hf, ours = outs
    assert ours.responses == hf.responses
    assert torch.equal(ours.response_mask, hf.response_mask)
    assert torch.equal(ours.input_ids * ours.attention_mask, hf.input_ids * hf.attention_mask)
    assert ours.shared_prefix and not hf.shared_prefix
    if not greedy:  # the check covers rows that stop early and responses that differ in a group
        assert (ours.response_mask.sum(-1) < 12).any()
        assert len(set(ours.responses[:5])) > 1


def test_shared_prefix_is_a_checked_bool():
    from regulator.errors import ConfigError

    with pytest.raises(ConfigError, match="rollout.shared_prefix"):
        RolloutConfig.from_mapping({"shared_prefix": "yes"})
    assert RolloutConfig.from_mapping({}).shared_prefix is True
