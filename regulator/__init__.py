"""entropy-regulator: keep the policy entropy of an RLVR-trained language model on a target curve.

The control interface. Importing it loads no torch, deepspeed, transformers or vllm, and none of
``controllers``, ``trainer`` or ``envs``. The torch functions (the regulated loss and the token
statistics) are imported from ``regulator.loss`` and ``regulator.entropy`` on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from regulator.controller import Controller
from regulator.errors import ConfigError
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs
from regulator.lazy import lazy_exports
from regulator.observation import Observation
from regulator.registry import (
    controller_origins,
    get_controller_class,
    list_controllers,
    make_controller,
    register_controller,
)
from regulator.safety import Regulator
from regulator.targets import TargetCurve, make_target
from regulator.tracking import ema, tracking_summary

if TYPE_CHECKING:
    from regulator.entropy import TokenStats, token_entropy, token_stats
    from regulator.loss import masked_mean, predicted_entropy_change, regulated_policy_loss

__version__ = "0.1.0"

#: public names that need torch -> the module that defines them (imported on first access)
_LAZY = {
    "TokenStats": "regulator.entropy",
    "token_entropy": "regulator.entropy",
    "token_stats": "regulator.entropy",
    "masked_mean": "regulator.loss",
    "predicted_entropy_change": "regulator.loss",
    "regulated_policy_loss": "regulator.loss",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "KNOB_NAMES", "ConfigError", "Controller", "KnobBounds", "Knobs", "Observation", "Regulator",
    "TargetCurve", "TokenStats", "controller_origins", "ema", "get_controller_class",
    "list_controllers", "make_controller", "make_target", "masked_mean",
    "predicted_entropy_change", "register_controller", "regulated_policy_loss", "token_entropy",
    "token_stats", "tracking_summary",
]
