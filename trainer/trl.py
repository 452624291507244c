"""Entropy regulation inside TRL's ``GRPOTrainer`` (the ``trl`` extra; written for trl 1.16).

    from trainer.trl import RegulatedGRPOTrainer

    trainer = RegulatedGRPOTrainer(model=model, reward_funcs=reward, args=grpo_config,
                                   train_dataset=data, processing_class=tokenizer,
                                   control={"target": {"kind": "constant", "value": 0.3}})
    trainer.train()

Every optimizer step, on the step's first micro-batch:
1. TRL's forward gives the per-token entropy of the completions under the current policy (before
   this step's update) — the same quantity our trainer measures;
2. the ``Regulator`` built from ``control`` (the ``control:`` section of our configs: only a
   target runs the default controller) turns it into this step's knobs;
3. the knobs act inside TRL's loss: ``w_pos`` / ``w_neg`` multiply the advantages of the
   positive / negative tokens (for the clipped objective, ``-min(r w A, clip(r) w A) =
   w * -min(r A, clip(r) A)`` for any w >= 0: exactly a per-token loss weight by advantage sign;
   the KL and entropy-bonus terms are untouched), ``eps_low`` / ``eps_high`` become TRL's
   ``epsilon_low`` / ``epsilon_high``.

The knobs and the target are logged through TRL's own metrics (``knobs/w_pos`` ...,
``entropy/target``, next to TRL's ``entropy``), and the Regulator's state is saved in every TRL
checkpoint (``regulator_state.json``) and loaded on ``train(resume_from_checkpoint=...)``, so a
resumed run continues exactly. With gradient accumulation the knobs are chosen from the first
micro-batch's entropy (gathered over processes) and held for the whole accumulation window.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from trl import GRPOTrainer

from regulator import Knobs, Regulator
from regulator.config import ControlConfig

STATE_FILE = "regulator_state.json"


class _WeightedInputs(dict):
    """TRL's loss inputs whose ``advantages`` are read with this step's per-sign weights.

    TRL's ``_compute_loss`` computes the entropies (where the Regulator picks the knobs) before
    it reads the advantages, so the weights are applied at the moment they are read."""

    def __init__(self, inputs: Mapping[str, Any], trainer: RegulatedGRPOTrainer) -> None:
        super().__init__(inputs)
        self._trainer = trainer

    def __getitem__(self, key: str) -> Any:
        value = super().__getitem__(key)
        if key == "advantages":
            k = self._trainer.knobs
            value = value * torch.where(value > 0, k.w_pos, torch.where(value < 0, k.w_neg, 1.0))
        return value


class RegulatedGRPOTrainer(GRPOTrainer):
    """``GRPOTrainer`` whose loss weights and clip bounds follow our Regulator.

    ``control``: a ``control:`` section (mapping) or a built ``Regulator``. The run's length for
    the target curve is TRL's ``max_steps`` (optimizer steps)."""

    def __init__(self, *args: Any, control: Mapping[str, Any] | Regulator | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._control = control if control is not None else {"target": {"kind": "constant", "value": 0.3}}
        self.regulator: Regulator | None = control if isinstance(control, Regulator) else None
        updates = max(int(getattr(self.args, "num_iterations", 1)), 1)
        if self.regulator is None:
            self._control_cfg = ControlConfig.from_mapping(self._control, updates_per_step=updates)
        self.knobs = Knobs(eps_low=self.epsilon_low, eps_high=self.epsilon_high)
        self._decided_step = -1
        self._pending_state: dict[str, Any] | None = None

    # -- the Regulator ---------------------------------------------------------------------------
    def _ensure_regulator(self) -> Regulator:
        if self.regulator is None:
            total = int(self.state.max_steps or self.args.max_steps or 1)
            self.regulator = self._control_cfg.build(max(total, 1))
            self.knobs = self.regulator.knobs
        if self._pending_state is not None:
            self.regulator.load_state_dict(self._pending_state)
            self.knobs = self.regulator.knobs
            self._pending_state = None
        return self.regulator

    def _decide(self, entropies: torch.Tensor, inputs: Mapping[str, Any]) -> None:
        """Once per optimizer step: this step's knobs from the first micro-batch's entropy."""
        step = int(self.state.global_step)
        if step == self._decided_step or not self.model.training:
            return
        self._decided_step = step
        reg = self._ensure_regulator()
        mask = inputs["completion_mask"].to(entropies.dtype)
        adv = inputs["advantages"]  # as TRL computed them (unweighted)
        adv = adv if adv.dim() == 1 else adv[:, 0]
        ones = torch.ones_like(adv)
        stats = torch.stack([(entropies.detach() * mask).sum(), mask.sum(),
                             ((adv > 0).to(mask.dtype)[:, None] * mask).sum(),
                             ((adv < 0).to(mask.dtype)[:, None] * mask).sum(),
                             (adv != 0).to(ones.dtype).sum(), ones.sum()])
        stats = self.accelerator.reduce(stats, reduction="sum")
        tokens = max(float(stats[1]), 1.0)
        entropy = float(stats[0]) / tokens if float(stats[1]) > 0 else math.nan
        self.knobs = reg.step(step, entropy, pos_token_frac=float(stats[2]) / tokens,
                              neg_token_frac=float(stats[3]) / tokens,
                              mixed_groups=float(stats[4]) / max(float(stats[5]), 1.0))
        self.epsilon_low, self.epsilon_high = self.knobs.eps_low, self.knobs.eps_high
        metrics = self._metrics["train"]
        for name, value in self.knobs.as_dict().items():
            metrics[f"knobs/{name}"].append(value)
        metrics["entropy/target"].append(reg.target_at(step))
        for name, value in reg.metrics().items():
            if name in ("control/faults", "control/clamped", "control/frozen"):
                metrics[name].append(value)

    # -- TRL hooks ---------------------------------------------------------------------------------
    def _get_per_token_logps_and_entropies(self, *args: Any, **kwargs: Any) -> Any:
        out = super()._get_per_token_logps_and_entropies(*args, **kwargs)
        inputs = getattr(self, "_loss_inputs", None)
        if inputs is not None and kwargs.get("compute_entropy") and out[1] is not None:
            self._loss_inputs = None
            self._decide(out[1], inputs)
        return out

    def _compute_loss(self, model: Any, inputs: Mapping[str, Any]) -> torch.Tensor:
        self._loss_inputs = dict(inputs)
        return super()._compute_loss(model, _WeightedInputs(inputs, self))

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        if self.regulator is not None and self.args.should_save:
            from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

            folder = os.path.join(self._get_output_dir(trial=trial),
                                  f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump({"regulator": self.regulator.state_dict(),
                           "decided_step": self._decided_step}, f)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, STATE_FILE) if checkpoint else None
        if path and os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            self._pending_state = saved["regulator"]
            self._decided_step = int(saved.get("decided_step", -1))
            if self.regulator is not None:
                self._ensure_regulator()
