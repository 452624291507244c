"""docs/envs_config.md: every key of the research harness's configs (``regulator bench``,
``regulator tune``, the simulated plant, the gym environments' keyword arguments), generated from
the models' field docstrings: ``python -m envs.config_docs --markdown``."""

from __future__ import annotations

from collections.abc import Sequence

from envs.bench_config import BenchConfig, ControlDefaults, ControllerEntry
from envs.plant_config import PlantConfig
from envs.sim_env_args import SimEnvArgs, TrainEnvArgs
from envs.tune import SimTuneConfig, TuneSettings
from regulator.schema_docs import markdown_main, model_section

INTRO = """\
# Config reference: bench, tune, the simulated plant and the environments

Every key of the research harness's configs, generated from the field docstrings of their models
by `python -m envs.config_docs --markdown` (a test checks this file is up to date). Unknown keys,
wrong types and out-of-range values are errors that name the key (exit 2 from the CLI). The
`regulator train` config is in [config.md](config.md); how the bench and the plant work is in
[envs.md](envs.md), tuning in [tuning.md](tuning.md)."""

#: (title, model, what the section is) in the order the page shows them
SECTIONS = [
    ("`regulator bench CONFIG`", BenchConfig, ""),
    ("`controllers:` entries of a bench", ControllerEntry, ""),
    ("`control:` of a bench", ControlDefaults, ""),
    ("`plant_params:` (the simulated plant)", PlantConfig,
     "The simulated GRPO plant (`envs.plant.SimPlant`): a bench's `plant_params`, a tune spec's "
     "`plant_params` and `EntropySim-v0`'s `plant=`. The regime's own `length` and `forks` fill "
     "in when they are left out."),
    ("`regulator tune CONFIG`: a sim-plant spec", SimTuneConfig, ""),
    ("`tune:` of a training config", TuneSettings, ""),
    ("`gymnasium.make(\"regulator/EntropySim-v0\", ...)`", SimEnvArgs, ""),
    ("`gymnasium.make(\"regulator/EntropyTrain-v0\", config=..., ...)`", TrainEnvArgs, ""),
]


def markdown() -> str:
    """The whole page."""
    blocks = [INTRO] + [model_section(title, model, intro) for title, model, intro in SECTIONS]
    return "\n\n".join(b.strip("\n") for b in blocks) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    return markdown_main(
        argv, prog="python -m envs.config_docs",
        description=__doc__, page="docs/envs_config.md", markdown=markdown)


if __name__ == "__main__":
    raise SystemExit(main())
