"""The example plugin (examples/custom_controller) works through all three discovery routes:
``module:Class``, an entry point (in-memory), and a real install of the package (pip --target)
whose generated dist-info metadata importlib.metadata finds on sys.path."""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from regulator import ConfigError, KnobBounds, Knobs, Regulator, make_controller, registry
from regulator.config import ControlConfig

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "examples" / "custom_controller"
MODULE = "regulator_custom_controller"


def _entry_point_spec() -> tuple[str, str]:
    eps = tomllib.loads((PKG / "pyproject.toml").read_text())["project"]["entry-points"]
    ((name, value),) = eps[registry.ENTRY_POINT_GROUP].items()
    return name, value


def _check_runs(controller) -> None:
    """The plugin moves w_pos down while entropy is below target (gain 0.5, direction -1)."""
    reg = Regulator(controller, 0.5, initial=Knobs(w_pos=1.0), bounds=KnobBounds(),
                    actuate=("w_pos",), total_steps=10)
    assert reg.step(0, 0.3).w_pos == pytest.approx(1.0 - 0.5 * 0.2)
    assert reg.step(1, 0.3).w_pos == pytest.approx(1.0 - 2 * 0.5 * 0.2)
    state = controller.state_dict()
    assert state == {"value": pytest.approx(0.8)}


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch):
    """Plugins loaded here must not leak into other tests' registry or sys.modules."""
    monkeypatch.setattr(registry.CONTROLLERS, "_items", dict(registry.CONTROLLERS._items))
    monkeypatch.setattr(registry.CONTROLLERS, "_origins", dict(registry.CONTROLLERS._origins))
    yield
    sys.modules.pop(MODULE, None)


@pytest.fixture
def plugin_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PKG / "src"))


def test_plugin_by_module_and_class(plugin_on_path):
    c = make_controller(f"{MODULE}:ProportionalStep", gain=0.5)
    _check_runs(c)


def test_plugin_through_an_in_memory_entry_point(plugin_on_path, monkeypatch):
    name, value = _entry_point_spec()
    ep = md.EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.CONTROLLERS, "entry_points", lambda: {name: ep})
    assert name in registry.list_controllers()
    cfg = ControlConfig.from_mapping({"controller": name, "params": {"gain": 0.5}})
    _check_runs(cfg.build(total_steps=10).controller)
    with pytest.raises(ConfigError) as info:
        make_controller(name, gain=-1.0)
    assert info.value.key == "control.params.gain"


def test_plugin_installed_package_is_found_by_entry_point(tmp_path, monkeypatch):
    pytest.importorskip("setuptools")
    src = tmp_path / "src_copy"
    shutil.copytree(PKG, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    monkeypatch.syspath_prepend(str(target))
    importlib.invalidate_caches()
    try:
        name, _ = _entry_point_spec()
        found = {ep.name: ep for ep in md.entry_points(group=registry.ENTRY_POINT_GROUP)}
        assert name in found and found[name].dist.name == "regulator-custom-controller"
        # the registry's own discovery (no monkeypatching of its entry_points)
        assert name in registry.list_controllers()
        assert "regulator-custom-controller" in registry.controller_origins()[name]
        _check_runs(make_controller(name, gain=0.5))
    finally:
        sys.modules.pop(MODULE, None)
    # and the CLI lists it with its origin (a fresh process that sees the install)
    path = [str(target), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in path if p)}
    out = subprocess.run([sys.executable, "-m", "regulator.cli", "controllers"], capture_output=True,
                         text=True, timeout=120, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.split() and ln.split()[0] == name)
    assert "regulator-custom-controller" in line
    for builtin in ("static", "schedule", "pid", "bang_bang", "bandit"):
        assert builtin in out.stdout
