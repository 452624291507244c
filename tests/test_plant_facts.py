"""The simulated plant reproduces the paper's qualitative facts (measured over seeds).

Every comparison runs its variants as one batched plant with the same seeds (paired: seed s of
each variant starts from the same task and policy). Bounds are set well inside the measured
effects (figures in comments, also in docs/envs.md) and well outside the seed-to-seed spread.
"""

from __future__ import annotations

import pytest
import torch

from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from regulator.knobs import Knobs

SEEDS = 8


def _run(config: PlantConfig, variants: list[Knobs], steps: int, seeds: int = SEEDS):
    """Entropy [steps, variants, seeds] and mean clip fractions [variants, seeds]."""
    knobs = [k for k in variants for _ in range(seeds)]
    plant = SimPlant(config, len(knobs), seeds=[100 + s for _ in variants for s in range(seeds)])
    ent, acc, clip_hi = [], [], []
    for _ in range(steps):
        m = plant.rollout()
        u = plant.update(knobs)
        ent.append(m["entropy"])
        acc.append(m["accuracy"])
        clip_hi.append(u["clip_frac_high"])
    shape = (len(variants), seeds)
    return (torch.stack(ent).view(steps, *shape), torch.stack(acc).view(steps, *shape),
            torch.stack(clip_hi).mean(0).view(*shape))


@pytest.fixture(scope="module")
def pretrained_weights():
    # GRPO, w_pos = 0, w_neg = 0 on the default (pretrained) plant, 300 steps.
    return _run(PlantConfig(), [Knobs(), Knobs(w_pos=0.0), Knobs(w_neg=0.0)], 300)


def test_pretrained_grpo_collapses_and_w_pos_0_keeps_entropy(pretrained_weights):
    ent, acc, _ = pretrained_weights
    h0 = ent[0].mean()
    final = ent[-30:].mean(0)  # [variant, seed]
    grpo, wpos0 = final[0], final[1]
    # measured: start 0.50 nats; GRPO ends at 0.05 (10% of the start, seeds 0.035-0.072);
    # w_pos = 0 ends at 0.59, above its start (accuracy ~0.48 vs 0.95: it barely learns).
    assert grpo.max() < 0.3 * h0
    assert (wpos0 > 3 * grpo).all()
    assert wpos0.mean() > 0.8 * h0
    assert acc[-30:].mean(0)[0].mean() > acc[-30:].mean(0)[1].mean() + 0.2


def test_pretrained_w_neg_0_collapses_fastest(pretrained_weights):
    ent, _, _ = pretrained_weights
    first = ent[:150].mean(0)  # mean entropy over the first half: the speed of the collapse
    # measured: w_neg = 0 0.26, GRPO 0.34, w_pos = 0 0.52 (seed spread ~0.02)
    assert first[2].mean() < first[0].mean() - 0.04
    assert (first[2] < first[0]).sum() >= SEEDS - 1
    assert (first[2] < first[1]).all()


def test_pretrained_more_updates_per_step_collapse_faster():
    firsts = []
    for mb in (1, 2, 4):
        ent, _, _ = _run(PlantConfig(mini_batches=mb), [Knobs()], 150)
        firsts.append(ent.mean(0)[0])  # [seeds]
    # measured first-half means: 0.34 / 0.28 / 0.23 nats for 1 / 2 / 4 updates per step
    assert firsts[1].mean() < firsts[0].mean() - 0.03
    assert firsts[2].mean() < firsts[1].mean() - 0.015
    assert (firsts[2] < firsts[0]).all()


def test_pretrained_clip_bites_and_removing_the_upper_bound_keeps_entropy_higher():
    """Clip facts need off-policy updates: 4 mini-batches x 4 epochs, and format positions with
    rare alternative tokens the verifier accepts (``alternates``), whose growth in positive
    samples the upper bound limits (DAPO's Clip-Higher mechanism). The effect is small against
    the seed-to-seed spread, so 48 paired seeds."""
    cfg = PlantConfig(mini_batches=4, epochs=4, alternates=3, alt_share=0.95)
    ent, _, clip_hi = _run(cfg, [Knobs(eps_high=0.2), Knobs(eps_high=float("inf"))], 150, seeds=48)
    # measured: clip_frac_high 0.7% of tokens at eps_high 0.2 (0 without the bound); a clip
    # fraction ~0 (as with 1 update per step, or tabular Adam at lr 0.02) would mean no authority.
    assert clip_hi[0].mean() > 0.002
    assert clip_hi[1].max() == 0.0
    late = ent[75:].mean(0)  # mean entropy over the second half, per variant and seed
    d = late[1] - late[0]  # paired: same seed, same task and start
    t = d.mean() / (d.std() / d.numel() ** 0.5)
    # measured: +0.021 nats (t = 4.7, higher for 39 of 48 seeds); at 16 seeds t ranged 1.2-2.8
    # over three disjoint seed sets. eps_high 0.5 vs 0.2 was within noise (|t| < 1): two
    # effects cancel there (docs/envs.md), so it is not asserted.
    assert d.mean() > 0.005 and t > 2.5


@pytest.fixture(scope="module")
def scratch_weights():
    return _run(PlantConfig(regime="scratch"), [Knobs(), Knobs(w_pos=0.0), Knobs(w_neg=0.0)], 200)


def test_scratch_regime_directions(scratch_weights):
    """From scratch (uniform start, one-token answers) the late-training direction reverses:
    w_neg = 0 keeps entropy highest, w_pos = 0 ends lowest (docs/regimes.md §1)."""
    ent, _, _ = scratch_weights
    assert ent[0].mean() == pytest.approx(torch.log(torch.tensor(12.0)).item(), abs=1e-4)
    final = ent[-30:].mean(0)
    # measured finals: GRPO 0.154, w_pos = 0 0.113, w_neg = 0 0.387 (seed spread < 0.02)
    assert (final[2] > 2 * final[0]).all()
    assert (final[1] < final[0]).all()
    # early on, w_pos = 0 still slows the fall (first-half means 1.89 vs 1.67)
    first = ent[:100].mean(0)
    assert (first[1] > first[0] + 0.1).all()
