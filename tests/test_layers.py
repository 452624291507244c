"""The layers hold by construction: import-linter's contracts pass and the light packages load no torch."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("regulator", "controllers", "trainer", "envs")
HEAVY = ("torch", "deepspeed", "transformers", "vllm")
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-c", LINT, "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout and "BROKEN" not in done.stdout, done.stdout


def test_import_contracts_catch_a_violation(tmp_path):
    """A copy of the tree with a torch import in the interface, in a new regulator module and in
    envs' __init__, and an envs import in a controller: lint-imports fails and names each."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    knobs = tmp_path / "regulator" / "knobs.py"
    knobs.write_text("import torch  # noqa\n" + knobs.read_text())
    static = tmp_path / "controllers" / "static.py"
    static.write_text("import envs  # noqa\n" + static.read_text())
    (tmp_path / "regulator" / "new_module.py").write_text("import torch  # noqa\n")
    init = tmp_path / "envs" / "__init__.py"
    init.write_text(init.read_text() + "\nfrom envs.plant import SimPlant  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0, done.stdout
    assert "regulator.knobs -> torch" in done.stdout, done.stdout
    assert "controllers.static -> envs" in done.stdout, done.stdout
    assert "regulator.new_module -> torch" in done.stdout, done.stdout
    assert "envs is not allowed to import torch" in done.stdout, done.stdout


@pytest.mark.parametrize("module", ["regulator", "regulator.cli", "regulator.config", "controllers",
                                    "envs", "envs.adapters", "envs.commands"])
def test_import_loads_no_torch(module):
    code = (f"import sys, {module}\n"
            f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_torch_functions_load_on_first_access():
    code = (
        "import sys, regulator\n"
        "assert 'torch' not in sys.modules\n"
        "from regulator import regulated_policy_loss, token_entropy, masked_mean\n"
        "assert 'torch' in sys.modules\n"
        "import regulator.loss, regulator.entropy\n"
        "assert regulated_policy_loss is regulator.loss.regulated_policy_loss\n"
        "assert masked_mean is regulator.loss.masked_mean\n"
        "assert token_entropy is regulator.entropy.token_entropy\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("package", ["regulator", "envs"])
def test_every_public_name_resolves(package):
    mod = __import__(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name
        assert name in dir(mod), name
    star: dict = {}
    exec(f"from {package} import *", star)
    assert set(mod.__all__) <= set(star)
    with pytest.raises(AttributeError, match="no_such_name"):
        mod.no_such_name  # noqa: B018
    assert not hasattr(mod, "no_such_name")


def test_import_envs_registers_the_gym_ids():
    import gymnasium as gym

    import envs

    assert gym.spec(envs.SIM_ID).entry_point == "envs.sim_env:EntropySimEnv"
    assert gym.spec(envs.TRAIN_ID).entry_point == "envs.train_env:EntropyTrainEnv"
