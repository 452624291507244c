"""benchmarks/gpu_check.sh --dry-run: the GPU check's code path (ZeRO-2 bf16 GRPO step on a
Qwen2-shaped model, token_entropy memory section) at minute sizes on the CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run():
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
                          capture_output=True, text=True, timeout=400, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    ent, step, done = lines
    assert done == {"ok": True}
    assert ent["section"] == "token_entropy_memory"
    # the three ways to compute H agree (bf16 logits, float32 arithmetic)
    assert ent["token_stats_max_abs_diff"] < 1e-4 and ent["naive_log_softmax_max_abs_diff"] < 1e-3
    assert step["section"] == "grpo_step" and step["zero_stage"] == 2 and step["bf16"]
    m = step["mean"]
    assert m["tokens"] > 0 and m["tokens_per_s"] > 0
    assert m["generate_s"] + m["measure_s"] + m["update_s"] + m["control_s"] <= m["step_s"] * 1.0001
    assert 0 < step["control_frac"] < 1
    assert 0 < m["entropy"] <= __import__("math").log(512) + 1e-3  # vocab 512 in the dry run
