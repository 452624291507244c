"""token_entropy vs the naive log_softmax computation: extra peak memory and time.

Each method runs in its own subprocess so its peak resident memory (ru_maxrss) is its own;
the logits tensor is allocated first and its footprint subtracted. Times are the median of
`--repeats` runs, naive and chunked measured in the same process run order-alternated.

    python benchmarks/token_entropy_bench.py --positions 8192 --vocab 50000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(method: str, positions: int, vocab: int, repeats: int, chunk: int | None) -> None:
    import torch

    from regulator import token_entropy

    torch.manual_seed(0)
    logits = torch.randn(positions, vocab)
    logits.mul_(3)  # in place: no second copy may inflate the baseline peak
    base = _peak_mb()

    def naive():
        logp = torch.log_softmax(logits, dim=-1)
        return -(logp.exp() * logp).sum(-1)

    def chunked():
        return token_entropy(logits, chunk_size=chunk)

    fn = naive if method == "naive" else chunked
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
        del out
    times.sort()
    print(json.dumps({"method": method, "extra_peak_mb": _peak_mb() - base,
                      "median_s": times[len(times) // 2], "logits_mb": logits.numel() * 4 / 2**20}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--positions", type=int, default=8192)
    ap.add_argument("--vocab", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk-size", type=int, default=None)
    ap.add_argument("--child", choices=["naive", "chunked"])
    a = ap.parse_args()
    if a.child:
        _child(a.child, a.positions, a.vocab, a.repeats, a.chunk_size)
        return
    res = {}
    for method in ("naive", "chunked", "naive", "chunked"):  # alternate: machines are noisy
        cmd = [sys.executable, __file__, "--child", method, "--positions", str(a.positions),
               "--vocab", str(a.vocab), "--repeats", str(a.repeats)]
        if a.chunk_size:
            cmd += ["--chunk-size", str(a.chunk_size)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        prev = res.get(method)
        if prev is None or r["median_s"] < prev["median_s"]:
            res[method] = r
    n, c = res["naive"], res["chunked"]
    print(f"logits: {a.positions} x {a.vocab} float32 = {n['logits_mb']:.0f} MiB "
          f"(threads: {os.environ.get('OMP_NUM_THREADS', 'default')})")
    print(f"{'method':<10}{'extra peak MiB':>16}{'median s':>12}")
    for r in (n, c):
        print(f"{r['method']:<10}{r['extra_peak_mb']:>16.0f}{r['median_s']:>12.3f}")
    print(f"extra memory chunked / naive log_softmax copy ({n['logits_mb']:.0f} MiB): "
          f"{c['extra_peak_mb'] / n['logits_mb']:.3f}  (target <= 0.125)")
    print(f"time chunked / naive: {c['median_s'] / n['median_s']:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
