#!/usr/bin/env bash
# GPU check (issue 7): a bf16 ZeRO-2 GRPO step on a randomly initialised 0.5B Qwen2-shaped model
# (tokens/s, peak memory) and token_entropy memory at vocab 152k x 8k tokens. One H100/H200,
# under 8 minutes, needing only torch + transformers + a carried DeepSpeed wheel.
#
#   benchmarks/gpu_check.sh              # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --dry-run    # the same code path at minute sizes (CPU is fine)
#
# DeepSpeed: if `import deepspeed` fails, the script installs it offline from WHEEL_DIR
# (default: .cache/wheels, then shared/wheels), which must hold the deepspeed wheel and its small
# pure-Python dependencies; make it on a machine with network access:
#   pip wheel --no-deps -w .cache/wheels deepspeed==0.19.8 hjson msgpack ninja py-cpuinfo pydantic \
#       pydantic-core annotated-types typing-inspection einops psutil
# Output: JSON lines (one per section, then {"ok": true}); also written to $OUT/gpu_check.jsonl
# when $OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export HF_HUB_OFFLINE=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export TOKENIZERS_PARALLELISM=false
if ! "$PY" -c "import deepspeed" >/dev/null 2>&1; then
    for d in "${WHEEL_DIR:-}" .cache/wheels shared/wheels; do
        if [ -n "$d" ] && ls "$d"/deepspeed-*.whl >/dev/null 2>&1; then
            "$PY" -m pip install -q --no-index --find-links "$d" deepspeed
            break
        fi
    done
    "$PY" -c "import deepspeed" || { echo "gpu_check: deepspeed is not importable and no wheel found (WHEEL_DIR)" >&2; exit 2; }
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
if [ -n "${OUT:-}" ]; then
    timeout 460 "$PY" benchmarks/gpu_check.py "$@" | tee "$OUT/gpu_check.jsonl"
else
    timeout 460 "$PY" benchmarks/gpu_check.py "$@"
fi
