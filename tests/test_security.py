"""Security: checkpoints load only through safe loaders, nothing runs code named by a checkpoint,
a metrics file or a YAML tag, and plugins load only when a config or an entry point names them.

Each attack writes a marker file if its code ever runs; every test asserts the marker is absent.
"""

from __future__ import annotations

import json
import pickle
import re
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch
import yaml
from _train_helpers import tiny_config, write_config

from regulator import registry
from regulator.cli import main
from trainer.logging import read_metrics

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("regulator", "controllers", "trainer", "envs")


class _Payload:
    """Unpickling this touches the marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished 2-step run with a checkpoint at step 2 (copied per test)."""
    tmp = tmp_path_factory.mktemp("secure")
    cfg = tiny_config(tmp, train={"steps": 2, "save_every": 2})
    assert main(["train", str(write_config(tmp, cfg))]) == 0
    return tmp / "run"


def _copy_run(trained: Path, tmp_path: Path) -> Path:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["train"]["out_dir"] = str(run)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


@pytest.mark.parametrize("victim", ["optimizer-rank0.pt", "rng-rank0.pt", "model.safetensors"])
def test_a_pickle_payload_in_a_checkpoint_is_refused(trained, tmp_path, victim, capsys):
    """The file is refused unread (no code runs); with no other checkpoint to fall back to,
    --resume exits 2 with one line naming the checkpoint and the loader's refusal."""
    run = _copy_run(trained, tmp_path)
    marker = tmp_path / "pwned"
    ckpt = run / "checkpoints" / "step-000002"
    assert [p.name for p in (run / "checkpoints").glob("step-*")] == ["step-000002"]
    torch.save({"state": _Payload(marker)}, ckpt / victim)  # a pickle-based .pt file
    assert pickle.loads(pickle.dumps(_Payload(marker))) is None and marker.exists()  # it is live
    marker.unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--set", "train.steps=3"]) == 2
    assert not marker.exists(), "a checkpoint file ran code"
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--resume" in err and "step-000002" in err
    assert "weights_only" in err or "SafetensorError" in err or "header" in err.lower(), err
    assert "\x1b" not in err and "trust the source" not in err  # no advice to load it unsafely


def test_names_in_state_json_and_metrics_are_data_not_code(trained, tmp_path, monkeypatch):
    """state.json and metrics.jsonl may name modules: a resumed run imports none of them."""
    run = _copy_run(trained, tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "evil_mod_xyz.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from regulator import Controller\nclass Boom(Controller):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    state_file = run / "checkpoints" / "step-000002" / "state.json"
    state = json.loads(state_file.read_text())
    state["controller"] = "evil_mod_xyz:Boom"
    state["regulator"]["controller"]["class"] = "evil_mod_xyz:Boom"
    state["reward"] = {"kind": "evil_mod_xyz:Boom"}
    state_file.write_text(json.dumps(state))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row["note"] = "!!python/object/apply:evil_mod_xyz.Boom []"
    row["controller"] = "evil_mod_xyz:Boom"
    lines[0] = json.dumps(row)
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    assert main(["train", "--resume", str(run), "--set", "train.steps=3"]) == 0
    assert "evil_mod_xyz" not in sys.modules and not marker.exists()
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [0, 1, 2]


@pytest.mark.parametrize("command", ["train", "bench"])
def test_yaml_python_tags_are_refused(tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    path = tmp_path / "config.yaml"
    path.write_text(f"train: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:"
                    f"pathlib.Path [{str(marker)!r}]]\n")
    assert main([command, str(path)]) == 2
    assert not marker.exists()
    assert "valid YAML" in capsys.readouterr().err


def test_python_tag_in_a_set_override_stays_a_string(tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = write_config(tmp_path, tiny_config(tmp_path))
    tag = f"!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path [{str(marker)!r}]]"
    assert main(["train", str(path), "--set", f"control.target.value={tag}"]) == 2
    assert not marker.exists()
    assert "control.target.value" in capsys.readouterr().err


def test_plugins_load_only_when_named(tmp_path, monkeypatch):
    """Listing controllers does not import plugin modules; naming one in a config does."""
    marker = tmp_path / "imported"
    (tmp_path / "lazy_plugin_xyz.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from regulator import Controller\n"
        "class Plugged(Controller):\n    def act(self, obs):\n        return self.initial\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = EntryPoint(name="lazyplug", value="lazy_plugin_xyz:Plugged", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.CONTROLLERS, "entry_points", lambda: {"lazyplug": ep})
    assert "lazyplug" in registry.list_controllers()
    assert "lazy_plugin_xyz" in registry.controller_origins()["lazyplug"]
    assert main(["controllers"]) == 0
    assert not marker.exists() and "lazy_plugin_xyz" not in sys.modules
    ctrl = registry.make_controller("lazyplug")  # a config names it: now it loads
    assert type(ctrl).__name__ == "Plugged" and marker.exists()
    monkeypatch.delitem(sys.modules, "lazy_plugin_xyz")


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def _calls(text: str, name: str) -> list[str]:
    """The full text of every call ``name(...)`` (balanced parentheses)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\(", text):
        depth, i = 0, m.end() - 1
        for i in range(m.end() - 1, len(text)):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            if depth == 0:
                break
        out.append(text[m.start():i + 1])
    return out


def test_source_uses_only_safe_loaders():
    """No pickle, no unsafe YAML, no eval/exec, torch.load only with weights_only=True, no
    remote code from the hub, in any of the four packages."""
    from regulator.config import _Loader

    assert issubclass(_Loader, yaml.SafeLoader)
    forbidden = re.compile(r"\bpickle\.loads?\(|\bdill\b|\bcloudpickle\b|\bmarshal\.loads?\(|"
                           r"yaml\.(unsafe_load|full_load|load_all|unsafe_load_all)\(|"
                           r"(?<![\w.])(eval|exec)\(|trust_remote_code\s*=\s*True|weights_only\s*=\s*False")
    n_torch_load = 0
    for path, text in _sources():
        bad = forbidden.search(text)
        assert bad is None, f"{path}: {bad.group(0)}"
        for call in _calls(text, "torch.load"):
            n_torch_load += 1
            assert "weights_only=True" in call, f"{path}: {call}"
        for call in _calls(text, "yaml.load"):
            assert "Loader=_Loader" in call, f"{path}: {call}"
    assert n_torch_load >= 1  # the checkpoint loader is found by the scan
