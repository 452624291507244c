"""The tiny character-level policy, the tokenizer, format_prompt and model config errors."""

import pytest
import torch

from regulator.errors import ConfigError
from trainer.models import build_policy, format_prompt
from trainer.tasks import make_task
from trainer.tokenizer import build_char_tokenizer

TINY = {"name": "tiny-char", "hidden": 32, "layers": 1, "heads": 2}


def test_char_tokenizer_round_trip_and_left_padding():
    tok = build_char_tokenizer("0123456789=")
    enc = tok(["31415=", "7="], padding=True)
    assert enc["input_ids"][1][:4] == [tok.pad_token_id] * 4 and enc["attention_mask"][1][:4] == [0] * 4
    assert tok.decode(enc["input_ids"][1], skip_special_tokens=True) == "7="
    assert tok.convert_ids_to_tokens([0, 1, 2, 3]) == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert len(tok) == 4 + 11
    assert tok("x")["input_ids"] == [tok.unk_token_id]
    assert len(build_char_tokenizer(None)) == 4 + 95


def test_tiny_policy_is_seeded_and_uses_the_task_alphabet():
    task = make_task({"kind": "max_digits"})
    m1, tok = build_policy(TINY, task=task, seed=1)
    m2, _ = build_policy(TINY, task=task, seed=1)
    m3, _ = build_policy(TINY, task=task, seed=2)
    assert len(tok) == 4 + len(set(task.alphabet)) == m1.config.vocab_size
    assert torch.equal(m1.model.embed_tokens.weight, m2.model.embed_tokens.weight)
    assert not torch.equal(m1.model.embed_tokens.weight, m3.model.embed_tokens.weight)
    assert tok.padding_side == "left" and tok.pad_token_id == 0 and tok.eos_token_id == 2
    assert m1.generation_config.eos_token_id == 2 and m1.generation_config.pad_token_id == 0


def test_tiny_policy_generates_and_stops_at_eos():
    task = make_task({"kind": "max_digits"})
    model, tok = build_policy(TINY, task=task, seed=0)
    prompts = [format_prompt(tok, task.example("train", i).prompt) for i in range(3)]
    assert prompts[0] == task.example("train", 0).prompt  # no chat template on the char model
    enc = tok(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    out = model.generate(**enc, do_sample=True, max_new_tokens=12, temperature=1.0)
    new = out[:, enc["input_ids"].shape[1]:]
    assert new.shape[0] == 3 and 1 <= new.shape[1] <= 12
    for row in new.tolist():  # after the first EOS only padding follows
        if tok.eos_token_id in row:
            i = row.index(tok.eos_token_id)
            assert all(t == tok.pad_token_id for t in row[i + 1:])


def test_format_prompt_applies_a_chat_template():
    tok = build_char_tokenizer(None)
    tok.chat_template = ("{% for m in messages %}<{{ m['content'] }}>{% endfor %}"
                         "{% if add_generation_prompt %}A:{% endif %}")
    assert format_prompt(tok, "hi") == "<hi>A:"


@pytest.mark.parametrize("spec,key", [
    ({"name": "tiny"}, "model.name"),
    ({"name": "tiny-char", "hiden": 3}, "model.hiden"),
    ({"name": "tiny-char", "hidden": 30, "heads": 4}, "model.heads"),
    ({"name": "tiny-char", "layers": 0}, "model.layers"),
    ({"path": "/nonexistent/model"}, "model.path"),
    ({"hidden": 3}, "model"),
    ({"name": "tiny-char", "path": "x"}, "model"),
    ({"path": "./m", "dtype": "float8"}, "model.dtype"),
])
def test_bad_model_specs_name_the_key(spec, key):
    with pytest.raises(ConfigError) as e:
        build_policy(spec)
    assert e.value.key == key


def test_missing_smollm2_cache_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("REGULATOR_CACHE_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="make smollm2") as e:
        build_policy({"name": "smollm2-135m"})
    assert e.value.key == "model.name"


def test_warmup_needs_a_task():
    with pytest.raises(ConfigError) as e:
        build_policy({**TINY, "warmup": {"steps": 1}})
    assert e.value.key == "model.warmup"


def test_parse_model_resolves_dependent_defaults():
    from trainer.models import MODELS, ModelSpec, parse_model

    spec = parse_model({"name": "tiny-char", "hidden": 32, "heads": 2})
    assert isinstance(spec, ModelSpec)
    assert spec.resolved() == {"name": "tiny-char", "hidden": 32, "layers": 2, "heads": 2,
                               "kv_heads": 2, "intermediate": 64, "max_positions": 512,
                               "tie_embeddings": True, "alphabet": None, "warmup": None}
    warm = parse_model({**TINY, "warmup": {"steps": 2}}).resolved()["warmup"]
    assert warm["steps"] == 2 and warm["error_rate"] == 0.3  # the warm-up's defaults too
    assert parse_model({"path": "x"}).resolved() == {"path": "x", "dtype": None, "warmup": None}
    assert set(MODELS.names()) == {"tiny-char", "smollm2-135m"}
    task = make_task({"kind": "max_digits"})
    m1, _ = build_policy(spec.resolved(), task=task, seed=1)  # the resolved spec: the same model
    m2, _ = build_policy({"name": "tiny-char", "hidden": 32, "heads": 2}, task=task, seed=1)
    assert torch.equal(m1.model.embed_tokens.weight, m2.model.embed_tokens.weight)


@pytest.mark.parametrize("spec,key,fragment", [
    ({"name": "tiny-char", "hiden": 3}, "model.hiden", "did you mean 'hidden'"),
    ({"name": "smollm2-135m", "hidden": 64}, "model.hidden", "dtype"),  # tiny-char's key
    ({"name": "tiny-char", "kv_heads": 3}, "model.kv_heads", "3"),
    ({"name": "tiny-char", "warmup": {"stepz": 1}}, "model.warmup.stepz", "did you mean 'steps'"),
    ({"name": 3}, "model.name", "3"),
    ([1], "model", "[1]"),
])
def test_each_model_takes_only_its_keys(spec, key, fragment):
    with pytest.raises(ConfigError) as e:
        build_policy(spec)
    assert e.value.key == key and fragment in str(e.value), str(e.value)
