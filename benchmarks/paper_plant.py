"""The knob-direction finding on the simulated plant's two regimes (issue 6, beside the trainer).

    python benchmarks/paper_plant.py                 # both regimes, 5 seeds, 300 steps (~1 min)
    python benchmarks/paper_study.py                 # runs this too (OUT/plant_table.md)

GRPO, advantage >= 0 only (w_neg 0), advantage <= 0 only (w_pos 0), fixed w_pos 0.5 and fixed
w_neg 0.5 on ``envs.plant.SimPlant`` in the ``pretrained`` regime (confident, imperfect start:
the paper's) and the ``scratch`` regime (uniform start: our tiny trainer's). All variants of a
regime advance as one batched plant with paired seeds. Figures: final entropy and accuracy (mean
of the last 30 steps), mean +/- std over seeds, and each weight's open-loop gain,
(H(w = 0.5) - H(GRPO)) / (0.5 - 1) in nats per unit weight: its sign is the direction in which
*raising* the weight moves entropy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from regulator.knobs import Knobs  # noqa: E402

#: label -> knobs (every other knob at GRPO's values)
VARIANTS = {"grpo": Knobs(), "pos_only": Knobs(w_neg=0.0), "neg_only": Knobs(w_pos=0.0),
            "w_pos_0.5": Knobs(w_pos=0.5), "w_neg_0.5": Knobs(w_neg=0.5)}
REGIMES = ("pretrained", "scratch")


def run_regime(regime: str, seeds: list[int], steps: int, tail: int = 30
               ) -> dict[str, dict[str, list[float]]]:
    """label -> {entropy0, entropy, accuracy}: per-seed figures (final = mean of the last ``tail``)."""
    import torch

    from envs.plant import SimPlant
    from envs.plant_config import PlantConfig

    labels = list(VARIANTS)
    knobs = [VARIANTS[v] for v in labels for _ in seeds]
    plant = SimPlant(PlantConfig(regime=regime), len(knobs), seeds=[s for _ in labels for s in seeds])
    ent, acc = [], []
    for _ in range(steps):
        m = plant.rollout()
        plant.update(knobs)
        ent.append(m["entropy"])
        acc.append(m["accuracy"])
    shape = (steps, len(labels), len(seeds))
    E, A = torch.stack(ent).view(shape), torch.stack(acc).view(shape)
    return {v: {"entropy0": E[0, i].tolist(), "entropy": E[-tail:, i].mean(0).tolist(),
                "accuracy": A[-tail:, i].mean(0).tolist()} for i, v in enumerate(labels)}


def _ms(xs: list[float]) -> str:
    return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.3f}"


def report(results: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    """The markdown table: variants as rows, per regime final entropy / accuracy; then the gains."""
    head = "| variant | " + " | ".join(f"{r}: final H | {r}: accuracy" for r in results) + " |"
    lines = [head, "|---|" + "---|---|" * len(results)]
    for v in VARIANTS:
        cells = [f"{_ms(res[v]['entropy'])} | {_ms(res[v]['accuracy'])}" for res in results.values()]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    lines.append("")
    for r, res in results.items():
        g = statistics.fmean(res["grpo"]["entropy"])
        h0 = statistics.fmean(res["grpo"]["entropy0"])
        gains = {w: (statistics.fmean(res[f"{w}_0.5"]["entropy"]) - g) / (0.5 - 1.0)
                 for w in ("w_pos", "w_neg")}
        lines.append(f"- {r} (start {h0:.2f} nats): raising w_pos moves final entropy by "
                     f"{gains['w_pos']:+.3f} nats per unit, raising w_neg by {gains['w_neg']:+.3f}")
    return "\n".join(lines) + "\n"


def run(out: Path | None, seeds: list[int], steps: int) -> str:
    t0 = time.perf_counter()
    results = {r: run_regime(r, seeds, steps) for r in REGIMES}
    text = report(results) + f"\n({len(seeds)} seeds, {steps} steps, {time.perf_counter() - t0:.0f} s)\n"
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "plant_table.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="also write OUT/plant_table.md")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args(argv)
    print(run(a.out, a.seeds, a.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
