"""Gymnasium environments, the simulated RLVR plant and controller <-> policy adapters.

``import envs`` registers ``regulator/EntropySim-v0`` (simulated plant; ``entry_point`` and
``vector_entry_point``) and ``regulator/EntropyTrain-v0`` (the real trainer, resolved lazily from
``envs.train_env``). It imports no deepspeed, transformers or vllm.
"""

from __future__ import annotations

import gymnasium as gym

from envs.adapters import ControllerPolicy, PolicyController
from envs.plant import SimPlant
from envs.plant_config import PlantConfig
from envs.spaces import OBSERVATION_FIELDS

SIM_ID = "regulator/EntropySim-v0"
TRAIN_ID = "regulator/EntropyTrain-v0"


def _register() -> None:
    if SIM_ID not in gym.registry:
        gym.register(
            id=SIM_ID,
            entry_point="envs.sim_env:EntropySimEnv",
            vector_entry_point="envs.sim_env:EntropySimVectorEnv",
        )
    if TRAIN_ID not in gym.registry:
        gym.register(id=TRAIN_ID, entry_point="envs.train_env:EntropyTrainEnv")


_register()

__all__ = ["OBSERVATION_FIELDS", "SIM_ID", "TRAIN_ID", "ControllerPolicy", "PlantConfig",
           "PolicyController", "SimPlant"]
