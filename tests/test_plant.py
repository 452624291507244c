"""The simulated plant's mechanics: the trainer's loss per plant, batching, RNG, resets, config."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

import envs.plant as plant_mod
from envs.counter_rng import uniform
from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from regulator.entropy import token_stats
from regulator.errors import ConfigError
from regulator.knobs import Knobs
from regulator.loss import predicted_entropy_change, regulated_policy_loss

SMALL = PlantConfig(prompts=8, prompts_per_step=4, group_size=4, mini_batches=2, epochs=2)


def _traj(plant: SimPlant, knobs, steps: int) -> torch.Tensor:
    out = []
    for _ in range(steps):
        m = plant.rollout()
        u = plant.update(knobs)
        out.append(torch.stack([m["entropy"], m["accuracy"], u["loss"], u["clip_frac_low"]], -1))
    return torch.stack(out)  # [steps, B, 4]


class _PerPlantKnobs(NamedTuple):
    """[B, 1] knob tensors: ``regulated_policy_loss`` broadcasts them, one plant per row."""

    w_pos: torch.Tensor
    w_neg: torch.Tensor
    eps_low: torch.Tensor
    eps_high: torch.Tensor


def _autograd_update(plant: SimPlant, ks: list[Knobs]) -> None:
    """The plant's update as autograd through the trainer's loss (the reference): each plant is
    one sequence of its tokens, with its own knobs, and the sum over plants is differentiated."""
    c, B = plant.config, plant.num_plants
    P, G, L, M = c.prompts_per_step, c.group_size, c.length, c.mini_batches
    Gm = G // M
    kt = plant_mod.knobs_tensor(ks, B)
    kn = _PerPlantKnobs(*(kt[:, i:i + 1] for i in range(4)))
    idx, actions, old_lp, adv = (plant.batch[k] for k in ("idx", "actions", "old_lp", "adv"))
    rows = lambda x: x.transpose(0, 1).reshape(B, Gm * P * L)
    for _ in range(c.epochs):
        for m in range(M):
            params = plant._params()
            for t in params.values():
                t.requires_grad_(True)
            logp, _ = plant._softmax(plant._logits(idx, plant.theta, plant.W), probs=False)
            A = rows(adv[m::M].unsqueeze(-1).expand(Gm, B, P, L))
            loss, _ = regulated_policy_loss(rows(logp.gather(0, actions[m::M])), rows(old_lp[m::M]),
                                            A, torch.ones_like(A), kn, num_tokens=Gm * P * L)
            grads = torch.autograd.grad(loss, list(params.values()))
            for t in params.values():
                t.requires_grad_(False)
            with torch.no_grad():
                plant._adam_step(params, grads)
    plant.batch = None
    plant.steps_done += 1


@pytest.mark.parametrize("rank", [0, 2])
def test_update_is_the_regulated_loss_summed_over_plants_with_their_own_knobs(rank):
    """The closed-form gradient gives the same parameters as autograd through the trainer's
    loss, with clipping active (2 mini-batches x 2 epochs) and per-plant knobs."""
    import copy

    config = PlantConfig(prompts=8, prompts_per_step=4, group_size=4, mini_batches=2, epochs=2,
                         rank=rank, lr=0.2)
    ks = [Knobs(w_pos=0.3, eps_high=0.02), Knobs(w_neg=0.0, eps_low=0.01), Knobs(w_pos=1.7)]
    ours = SimPlant(config, 3, seeds=[1, 2, 3])
    clipped = 0.0
    for _ in range(4):
        ours.rollout()
        ref = copy.deepcopy(ours)
        out = ours.update(ks)
        _autograd_update(ref, ks)
        for name, t in ours._params().items():
            torch.testing.assert_close(t, ref._params()[name], rtol=1e-5, atol=1e-6)
        clipped += float((out["clip_frac_low"] + out["clip_frac_high"]).sum())
        ours.theta.copy_(ref.theta)  # the next step starts from the same state
    assert clipped > 0  # the comparison covered clipped tokens


def test_plants_are_independent_of_the_batch_they_run_in():
    ks = [Knobs(w_pos=0.2), Knobs(), Knobs(w_neg=0.5, eps_high=0.1)]
    batched = _traj(SimPlant(SMALL, 3, seeds=[3, 5, 7]), ks, 20)
    alone = _traj(SimPlant(SMALL, 1, seeds=[5]), ks[1], 20)
    torch.testing.assert_close(batched[:, 1], alone[:, 0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(batched[:, 0], batched[:, 1])


def test_equal_seeds_equal_trajectories():
    a = _traj(SimPlant(SMALL, 2, seeds=4), Knobs(w_pos=0.5), 15)
    b = _traj(SimPlant(SMALL, 2, seeds=4), Knobs(w_pos=0.5), 15)
    assert torch.equal(a, b)


def test_reset_mask_restarts_only_selected_plants():
    p = SimPlant(SMALL, 2, seeds=[10, 11])
    _traj(p, Knobs(), 5)
    p.reset([20, 11], mask=torch.tensor([True, False]))
    assert p.steps_done.tolist() == [0, 5]
    nxt = _traj(p, Knobs(), 3)
    fresh = _traj(SimPlant(SMALL, 1, seeds=[20]), Knobs(), 3)
    torch.testing.assert_close(nxt[:, 0], fresh[:, 0], rtol=1e-5, atol=1e-6)


def test_rollout_rewards_are_verified_and_advantages_group_normalised():
    p = SimPlant(PlantConfig(), 2, seeds=0)
    m = p.rollout()
    b = p.batch
    G, B, P, L = b["actions"].shape
    V = p.config.vocab
    rows = torch.arange(B)[:, None]
    acc = p.accepted[:, rows, b["idx"]]  # [V, B, P, L]
    ok = torch.stack([acc[b["actions"][g, bb, pp, ll], bb, pp, ll]
                      for g in range(G) for bb in range(B) for pp in range(P) for ll in range(L)])
    reward = ok.view(G, B, P, L).all(-1).float()
    assert m["accuracy"].tolist() == pytest.approx(reward.mean((0, 2)).tolist())
    adv = b["adv"]
    assert adv.mean(0).abs().max() < 1e-5  # zero mean per group
    mixed = reward.std(0) > 0
    assert adv.std(0, unbiased=True)[mixed].sub(1).abs().max() < 1e-3  # unit (unbiased) std where mixed
    assert (adv[:, ~mixed] == 0).all()
    # the trainer's normalisation exactly (trainer.grpo.group_advantages: unbiased std, eps 1e-6)
    from trainer.grpo import group_advantages

    groups = reward.permute(1, 2, 0).reshape(-1, G)  # [B * P, G]
    want, _ = group_advantages(groups.double())
    torch.testing.assert_close(adv.permute(1, 2, 0).reshape(-1, G), want.float(), rtol=1e-5, atol=1e-6)
    assert int(b["actions"].max()) < V


def test_dh_stats_match_token_stats_and_predicted_entropy_change():
    p = SimPlant(PlantConfig(), 2, seeds=3)
    m = p.rollout()
    b = p.batch
    z = p._logits(b["idx"], p.theta, p.W)  # [V, B, P, L]
    G = b["actions"].shape[0]
    for pl in range(2):
        logits = z[:, pl].permute(1, 2, 0).unsqueeze(0).expand(G, -1, -1, -1)  # [G, P, L, V]
        ts = token_stats(logits, b["actions"][:, pl])
        coef = ts.dh_coef.reshape(-1, z.shape[-1])  # [sequences, tokens]
        want = predicted_entropy_change(coef, b["adv"][:, pl].reshape(-1, 1), torch.ones_like(coef))
        assert float(m["dh_pos"][pl]) == pytest.approx(want["dh_pos"], rel=1e-4, abs=1e-7)
        assert float(m["dh_neg"][pl]) == pytest.approx(want["dh_neg"], rel=1e-4, abs=1e-7)
        assert float(m["entropy"][pl]) == pytest.approx(float(ts.entropy.mean()), rel=1e-5)


def test_counter_rng_is_uniform_and_per_seed():
    u = uniform(torch.tensor([0, 1]), torch.tensor([0, 0]), 0, 20000)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(u.var()) == pytest.approx(1 / 12, abs=0.005)
    assert not torch.equal(u[0], u[1])
    again = uniform(torch.tensor([1]), torch.tensor([0]), 0, 20000)
    assert torch.equal(again[0], u[1])
    other_step = uniform(torch.tensor([1]), torch.tensor([1]), 0, 20000)
    assert abs(float(torch.corrcoef(torch.stack([other_step[0], u[1]]))[0, 1])) < 0.03


@pytest.mark.parametrize("values, key", [
    ({"regime": "finetuned"}, "plant.regime"),
    ({"mini_batches": 3}, "plant.mini_batches"),
    ({"prompts_per_step": 64}, "plant.prompts_per_step"),
    ({"lr": 0}, "plant.lr"),
    ({"betas": [0.9]}, "plant.betas"),
    ({"learning_rate": 0.1}, "plant.learning_rate"),
])
def test_plant_config_errors_name_the_key(values, key):
    with pytest.raises(ConfigError) as e:
        PlantConfig.from_mapping(values)
    assert e.value.key == key


def test_plant_config_from_keywords_checks_too_and_round_trips():
    with pytest.raises(ConfigError) as e:
        PlantConfig(lr=-1.0)
    assert e.value.key == "lr" and "-1.0" in str(e.value)
    with pytest.raises(ConfigError) as e:
        PlantConfig(group_size=4, mini_batches=3)
    assert e.value.key == "mini_batches"
    c = PlantConfig(regime="scratch", lr=0.02, betas=(0.5, 0.9))
    assert PlantConfig.from_mapping(c.as_dict()) == c
    assert c.replace(vocab=5).vocab == 5 and c.replace(vocab=5).lr == 0.02


def test_regime_defaults():
    assert (PlantConfig().length, PlantConfig().forks) == (6, 2)
    s = PlantConfig(regime="scratch")
    assert (s.length, s.forks) == (1, 1)
    assert PlantConfig(mini_batches=2, epochs=3).updates_per_step == 6


def test_a_pretrained_plant_whose_every_token_forks_runs():
    """length == forks leaves no format tokens (it used to crash building their alternates)."""
    plant = SimPlant(PlantConfig(length=2, vocab=4), 2, seeds=[0, 1])
    for _ in range(3):
        m = plant.rollout()
        plant.update(Knobs())
    assert torch.isfinite(m["entropy"]).all() and (m["entropy"] > 0).all()
    assert ((m["accuracy"] >= 0) & (m["accuracy"] <= 1)).all()


def test_the_plant_runs_on_one_thread_whatever_the_callers_setting(monkeypatch):
    """Small tensors: one intra-op thread, so its speed does not depend on OMP settings or on
    other busy processes; the caller's thread count is restored, and results do not change."""
    import torch

    from envs.plant import SimPlant
    from envs.plant_config import PlantConfig
    from regulator.knobs import Knobs

    seen = []
    real = SimPlant._dh_stats

    def spy(*a, **k):
        seen.append(torch.get_num_threads())
        return real(*a, **k)

    monkeypatch.setattr(SimPlant, "_dh_stats", staticmethod(spy))
    before = torch.get_num_threads()
    out = []
    for threads in (2, 1):
        torch.set_num_threads(threads)
        plant = SimPlant(PlantConfig(), 4, seeds=0)
        m = plant.rollout()
        plant.update(Knobs())
        out.append(float(m["entropy"].sum()))
        assert torch.get_num_threads() == threads
    torch.set_num_threads(before)
    assert seen and set(seen) == {1}
    assert out[0] == out[1]
