"""Our control inside TRL 1.16's GRPOTrainer (the ``trl`` extra) on a tiny random model, CPU:
the knobs change and reach TRL's loss, its logs and checkpoints hold them, resume is exact."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("trl")

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM
from trl import GRPOConfig

from regulator import Knobs
from trainer.tokenizer import build_char_tokenizer
from trainer.trl import STATE_FILE, RegulatedGRPOTrainer, _WeightedInputs

TOK = build_char_tokenizer("0123456789 =max")


def _data() -> Dataset:
    rng = random.Random(0)
    rows = []
    for _ in range(256):
        d = [rng.randrange(10) for _ in range(3)]
        rows.append({"prompt": "max " + " ".join(map(str, d)) + " =", "answer": str(max(d))})
    return Dataset.from_list(rows)


def first_char(completions, answer, **kw):
    return [1.0 if c[:1] == a else 0.0 for c, a in zip(completions, answer)]


def _trainer(out, control, steps=20, resume=False):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(TOK), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, intermediate_size=64, max_position_embeddings=64,
        pad_token_id=TOK.pad_token_id, bos_token_id=TOK.bos_token_id, eos_token_id=TOK.eos_token_id))
    args = GRPOConfig(output_dir=str(out), use_cpu=True, bf16=False, fp16=False,
                      gradient_checkpointing=False, num_generations=4, per_device_train_batch_size=16,
                      max_completion_length=3, temperature=1.0, top_p=1.0, top_k=0, learning_rate=1e-3,
                      lr_scheduler_type="constant", max_steps=steps, logging_steps=1, report_to="none",
                      save_strategy="steps", save_steps=10, seed=0, beta=0.0)
    return RegulatedGRPOTrainer(model=model, reward_funcs=first_char, args=args, train_dataset=_data(),
                                processing_class=TOK, control=control)


def _logged(trainer, key):
    return [h[key] for h in trainer.state.log_history if key in h]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("trl")
    tr = _trainer(out, {"target": {"kind": "constant", "value": 1.0}})
    tr.train()
    return tr, out


def test_the_default_control_runs_inside_trl_and_is_logged(uninterrupted):
    tr, out = uninterrupted
    w_pos, target, entropy = _logged(tr, "knobs/w_pos"), _logged(tr, "entropy/target"), _logged(tr, "entropy")
    assert len(w_pos) == len(target) == len(entropy) == 20
    assert target == [1.0] * 20 and tr.regulator.controller_name == "auto"
    assert any(w != 1.0 for w in w_pos)  # the controller moved the knobs
    saved = json.loads((out / "checkpoint-10" / STATE_FILE).read_text())
    assert saved["decided_step"] == 9 and "controller" in saved["regulator"]


def test_resume_from_a_trl_checkpoint_continues_exactly(uninterrupted, tmp_path):
    tr, out = uninterrupted
    again = _trainer(out, {"target": {"kind": "constant", "value": 1.0}})
    again.train(resume_from_checkpoint=str(out / "checkpoint-10"))
    for key in ("knobs/w_pos", "knobs/w_neg", "entropy"):
        assert _logged(again, key)[-10:] == pytest.approx(_logged(tr, key)[-10:], abs=1e-6), key


def test_the_loss_uses_the_weights(tmp_path):
    """Both weights 0: no policy gradient, the weights do not move; and the per-sign scaling."""
    tr = _trainer(tmp_path, {"controller": "static", "params": {}, "actuate": ["w_pos", "w_neg"],
                             "initial": {"w_pos": 0.0, "w_neg": 0.0},
                             "bounds": {"w_pos": [0.0, 1.0], "w_neg": [0.0, 1.0]}}, steps=3)
    before = [p.detach().clone() for p in tr.model.parameters()]
    tr.train()
    assert all(torch.equal(a, b) for a, b in zip(before, tr.model.parameters()))
    assert _logged(tr, "knobs/w_pos") == [0.0] * 3
    tr.knobs = Knobs(w_pos=0.0, w_neg=2.0)
    adv = _WeightedInputs({"advantages": torch.tensor([1.5, -0.5, 0.0])}, tr)["advantages"]
    assert adv.tolist() == [0.0, -1.0, 0.0]
