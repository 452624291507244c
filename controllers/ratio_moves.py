"""Moves of the weights' *ratio*: the faster descent and the ascent that ``auto``'s law cannot make.

Under Adam (and every optimiser that divides the gradient by its running scale) the size of the
loss weights barely matters once the optimiser has adapted: scaling w_pos and w_neg by c scales
the gradient by c, and Adam divides it out. What sets the update is their ratio. So turning every
weight *up* cannot descend faster than plain GRPO (measured on the simulated pretrained plant:
(w_pos, w_neg) = (1, 1) and (2, 2) give the same path), and turning every weight down holds
entropy still but cannot raise it. Only a tilt of the ratio does either:

- **descent tilt**: while the loop asks for a faster descent than it has (its command pinned at
  the "lower" limit, entropy above its aim and not due to reach it within ``lag + 2`` steps at
  the current rate), the weight that raises entropy is cut by ``descent_tilt`` of its value,
  ramped in over 4 steps and released by halves as the aim comes near. A wrong side slows the
  descent it was meant to speed up, or reverses it: late from scratch, cutting w_neg holds
  entropy up or raises it. So a tilt that, after ``2 x BASELINE`` steps, has brought the mean
  entropy no lower than it was before the tilt began ends, and is not tried again for
  ``ascent_retry`` x 2^k steps after its k-th failure.
- **ascent trial**: while entropy sits below its aim by more than ``ASCENT_GAP`` of it plus two
  noise deviations, with every weight braked (the law cannot do more), the raising weight is
  given ``ascent_level``. If the mean filtered entropy over the trial falls ``ascent_z``
  standard errors below its mean over the ``BASELINE`` steps before it, or one filtered sample
  falls ``FAST_REFUTE_Z`` noise deviations below that mean, the plant has no ascent there (from
  scratch, late in training: nothing raises entropy); the trial ends at once and is not tried
  again for ``ascent_retry`` x 2^k steps after the k-th refutation. Judging the mean keeps a
  slow climb (the plant's lag, the sensor's noise) from being refuted by one low sample; the
  fast test ends a steep fall before the mean catches up. A smaller shortfall is not worth a
  trial: where nothing raises entropy the failed trial's fall is never undone.

Which weight raises entropy: the data's, once the balance direction's estimate (w_pos down,
w_neg up) reaches ``tilt_z`` standard errors; until then w_neg, from the first-order picture of
policy-gradient entropy dynamics: a positive-advantage update concentrates probability on the
tokens sampled (mostly the likely ones), a negative one spreads it away from them.
"""

from __future__ import annotations

import math
from typing import Any

TILT_RAMP = 0.25  # tilt added per step while it is wanted (full after 4 steps)
BASELINE = 8  # steps before an ascent trial whose mean entropy it is judged against
ASCENT_GAP = 0.1  # relative shortfall below the aim (beyond 2 noise deviations) worth a trial
FAST_REFUTE_Z = 4.0  # a filtered sample this many noise deviations below the baseline refutes


class RatioMoves:
    """The state of the descent tilt and the ascent trial (one per ``auto`` run)."""

    def __init__(self, descent_tilt: float, tilt_z: float, ascent_level: float, ascent_z: float,
                 ascent_retry: int, lead: float) -> None:
        self.descent_tilt = descent_tilt
        self.tilt_z = tilt_z
        self.ascent_level = ascent_level
        self.ascent_z = ascent_z
        self.ascent_retry = ascent_retry
        self.lead = lead  # steps ahead at which an approach counts as arriving
        self.clear()

    def clear(self) -> None:
        self.tilt = 0.0  # share of descent_tilt applied, 0..1
        self.ascent = 0.0  # share of ascent_level applied, 0..1
        self.ascent_block = -1  # no trial starts before this step
        self.refutations = 0
        self.recent: list[float] = []  # the filtered entropy of the last BASELINE steps
        self.trial_sum = 0.0  # sum of the filtered entropy over the trial so far
        self.trial_n = 0
        self.base = math.nan  # mean filtered entropy over the BASELINE steps before the trial
        self.tilt_n = 0  # steps the current tilt has run
        self.tilt_seen: list[float] = []  # the filtered entropy of its last BASELINE steps
        self.tilt_before = math.nan  # its mean over the BASELINE steps before the tilt began
        self.tilt_block = -1  # no tilt starts before this step
        self.tilt_refutations = 0

    @staticmethod
    def _release(x: float) -> float:
        return 0.5 * x if x > 0.02 else 0.0

    def raising_weight(self, gain: float, z: float) -> str:
        """The weight whose share raises entropy: the balance estimate's once |z| >= tilt_z
        (``gain``: entropy change per unit of w_pos down / w_neg up), else w_neg."""
        if abs(z) >= self.tilt_z:
            return "w_neg" if gain > 0 else "w_pos"
        return "w_neg"

    def _retry_at(self, step: int, failures: int) -> int:
        """The step from which a move refuted ``failures`` times before may be tried again."""
        return step + self.ascent_retry * 2**failures

    def _tilt_refuted(self) -> bool:
        """Whether the running tilt brought no fall: after 2 x BASELINE steps, the mean of its
        last BASELINE readings is no lower than the mean of the BASELINE before it began. Late
        from scratch the weight that raises entropy is w_pos, not the guess: the tilt then
        stalls the descent or climbs, where the untilted mix still descends."""
        if self.tilt_n < 2 * BASELINE or not math.isfinite(self.tilt_before):
            return False
        return sum(self.tilt_seen) / len(self.tilt_seen) >= self.tilt_before

    def update(self, step: int, h: float, rate: float, high_aim: float, aim: float, sigma: float,
               descend_pinned: bool, brake_pinned: bool) -> None:
        """One step. ``h``: filtered entropy; ``rate``: its smoothed change per step;
        ``high_aim``: the level an approach from above aims at; ``aim``: the target seen
        through the preview; ``sigma``: the filtered noise deviation; ``descend_pinned``: the
        law's command sits at its descending limit; ``brake_pinned``: it has held the full brake
        long enough to drain the optimiser's momentum."""
        arriving_down = h + self.lead * min(rate, 0.0) <= high_aim
        if (self.descent_tilt > 0 and descend_pinned and h > high_aim and not arriving_down
                and step >= self.tilt_block):
            if self.tilt == 0.0:
                self.tilt_n, self.tilt_seen = 0, []
                self.tilt_before = sum(self.recent) / len(self.recent) if self.recent else math.nan
            self.tilt_n += 1
            self.tilt_seen = [*self.tilt_seen, h][-BASELINE:]
            if self._tilt_refuted():  # off, and not tried again for a while
                self.tilt, self.tilt_n, self.tilt_seen = 0.0, 0, []
                self.tilt_block = self._retry_at(step, self.tilt_refutations)
                self.tilt_refutations += 1
            else:
                self.tilt = min(1.0, self.tilt + TILT_RAMP)
        else:
            self.tilt = self._release(self.tilt)
        if self.ascent_level > 0:
            self._ascent_step(step, h, rate, aim, sigma, brake_pinned)
        self.recent = [*self.recent, h][-BASELINE:]

    def _ascent_step(self, step: int, h: float, rate: float, aim: float, sigma: float,
                     brake_pinned: bool) -> None:
        """The ascent trial's part of ``update`` (``recent`` still holds the steps before)."""
        below = h < aim - 2.0 * sigma
        far_below = h < (1.0 - ASCENT_GAP) * aim - 2.0 * sigma  # beyond the gap and the noise
        if self.ascent > 0:
            self.trial_sum += h
            self.trial_n += 1
            # refuted: the trial's mean lies ascent_z standard errors below the mean before it
            # (a filtered sample carries about a third of an independent one)
            se = sigma * math.sqrt(3.0 / self.trial_n + 3.0 / BASELINE)
            falling = h < self.base - FAST_REFUTE_Z * sigma  # a fast fall, before the mean shows it
            if falling or self.trial_sum / self.trial_n < self.base - self.ascent_z * se:
                self.ascent = 0.0
                self.ascent_block = self._retry_at(step, self.refutations)
                self.refutations += 1
            elif not below or h + self.lead * max(rate, 0.0) >= aim:
                self.ascent = self._release(self.ascent)
            else:
                self.ascent = min(1.0, self.ascent + TILT_RAMP)
        elif far_below and brake_pinned and step >= self.ascent_block and len(self.recent) == BASELINE:
            self.ascent = TILT_RAMP
            self.base, self.trial_sum, self.trial_n = sum(self.recent) / BASELINE, 0.0, 0

    def apply(self, values: dict[str, float], raising: str) -> None:
        """Tilt the knob values (w_pos, w_neg present) in place."""
        if self.tilt > 0:
            values[raising] *= 1.0 - self.descent_tilt * self.tilt
        if self.ascent > 0:
            values[raising] = max(values[raising], self.ascent * self.ascent_level)

    def state_dict(self) -> dict[str, Any]:
        return {"tilt": self.tilt, "ascent": self.ascent, "ascent_block": self.ascent_block,
                "refutations": self.refutations, "recent": list(self.recent),
                "trial_sum": self.trial_sum, "trial_n": self.trial_n, "base": self.base,
                "tilt_n": self.tilt_n, "tilt_seen": list(self.tilt_seen), "tilt_before": self.tilt_before,
                "tilt_block": self.tilt_block, "tilt_refutations": self.tilt_refutations}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tilt = float(state["tilt"])
        self.ascent = float(state["ascent"])
        self.ascent_block = int(state["ascent_block"])
        self.refutations = int(state["refutations"])
        self.recent = [float(x) for x in state.get("recent", [])]
        self.trial_sum = float(state.get("trial_sum", 0.0))
        self.trial_n = int(state.get("trial_n", 0))
        self.base = float(state.get("base", math.nan))
        self.tilt_n = int(state.get("tilt_n", 0))
        self.tilt_seen = [float(x) for x in state.get("tilt_seen", [])][-BASELINE:]
        self.tilt_before = float(state.get("tilt_before", math.nan))
        self.tilt_block = int(state.get("tilt_block", -1))
        self.tilt_refutations = int(state.get("tilt_refutations", 0))
