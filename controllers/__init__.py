"""Built-in controllers, published as entry points of the ``regulator.controllers`` group (the
project's pyproject.toml), so the registry finds them without importing this package by name.

Names: ``auto`` (the default), ``static``, ``schedule``, ``pid``, ``bang_bang``, ``bandit``,
``predictive``. Each class's ``Params`` model documents its parameters and defaults
(``regulator config --explain control.params``).
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
