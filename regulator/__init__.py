"""entropy-regulator: keep the policy entropy of an RLVR-trained language model on a target curve.

The control interface. This package is light: it imports torch and numpy, never deepspeed,
transformers or vllm, and none of ``controllers``, ``trainer`` or ``envs`` at import time.
"""

from regulator.controller import Controller
from regulator.entropy import TokenStats, token_entropy, token_stats
from regulator.errors import ConfigError
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs
from regulator.loss import masked_mean, predicted_entropy_change, regulated_policy_loss
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

__version__ = "0.1.0"

__all__ = [
    "KNOB_NAMES", "ConfigError", "Controller", "KnobBounds", "Knobs", "Observation", "Regulator",
    "TargetCurve", "TokenStats", "controller_origins", "ema", "get_controller_class",
    "list_controllers", "make_controller", "make_target", "masked_mean",
    "predicted_entropy_change", "register_controller", "regulated_policy_loss", "token_entropy",
    "token_stats", "tracking_summary",
]
