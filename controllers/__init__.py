"""Built-in controllers; importing this package registers them.

Registry names: ``auto`` (the default), ``static``, ``schedule``, ``pid``, ``bang_bang``,
``bandit``, ``predictive``. Parameters and defaults: each class's docstring and ``docs/controllers.md``.
"""

from controllers.auto import AutoController
from controllers.bandit import BanditController
from controllers.bang_bang import BangBangController
from controllers.pid import PIDController
from controllers.predictive import PredictiveController
from controllers.schedule import ScheduleController
from controllers.static import StaticController

__all__ = ["AutoController", "BanditController", "BangBangController", "PIDController",
           "PredictiveController", "ScheduleController", "StaticController"]
