"""Every ``kind:`` family is a Registry of per-kind Schemas: names listed, unknown kinds refused
with a did-you-mean, a plugin kind added by registering its Schema; rollout backends by name."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Literal

import pytest
import torch

from regulator.errors import ConfigError
from regulator.targets import TARGETS, TargetSpec, make_target, parse_target
from trainer.rollout import ROLLOUT_BACKENDS, HFGenerateBackend, make_backend


def _rollout(backend: str) -> SimpleNamespace:
    return SimpleNamespace(backend=backend, max_new_tokens=4, temperature=1.0, top_k=0, top_p=1.0,
                           shared_prefix=True, gpu_memory_utilization=0.3)


def test_rollout_backends_by_name():
    from trainer.models import build_policy

    assert set(ROLLOUT_BACKENDS.names()) == {"hf", "vllm"}
    model, tok = build_policy({"name": "tiny-char", "hidden": 16, "layers": 1, "heads": 2})
    backend = make_backend(_rollout("hf"), model, tok, model_path=None, seed=0)
    assert isinstance(backend, HFGenerateBackend) and backend.max_new_tokens == 4
    with pytest.raises(ConfigError) as e:
        make_backend(_rollout("vlm"), model, tok, model_path=None, seed=0)
    assert e.value.key == "rollout.backend" and "did you mean 'vllm'" in str(e.value)
    if not torch.cuda.is_available():  # vLLM is refused before it is imported
        with pytest.raises(ConfigError, match="without CUDA") as e:
            make_backend(_rollout("vllm"), model, tok, model_path="x", seed=0)
        assert e.value.key == "rollout.backend"


def test_a_registered_target_kind_is_parsed_and_built(monkeypatch):
    class Step(TargetSpec):
        kind: Literal["step"]
        before: float
        """target before the switch"""
        after: float = 0.1
        """target after the switch"""

        def shape(self):
            return lambda s, n: self.before if s < n // 2 else self.after

    monkeypatch.setitem(TARGETS._items, "step", Step)
    curve = make_target({"kind": "step", "before": 0.5})
    assert curve(0, 10) == 0.5 and curve(9, 10) == 0.1
    assert parse_target({"kind": "step", "before": 0.5}).resolved() == {
        "kind": "step", "before": 0.5, "after": 0.1}
    with pytest.raises(ConfigError, match=r"control.target.aftr.*did you mean 'after'"):
        make_target({"kind": "step", "before": 0.5, "aftr": 0})
    with pytest.raises(TypeError, match="TargetSpec subclass"):
        TARGETS.register("bad")(dict)
