"""log.backends: the metrics rows also reach wandb (offline) or a tracker class of the user's."""

from __future__ import annotations

import sys
import textwrap

import pytest
from _train_helpers import tiny_config

from regulator.errors import ConfigError
from trainer.api import train
from trainer.config import LogConfig
from trainer.logging import read_metrics


@pytest.fixture
def user_tracker(tmp_path, monkeypatch):
    (tmp_path / "my_tracking.py").write_text(textwrap.dedent("""
        import json
        class Recorder:
            def __init__(self, *, run_dir, config, start_step, path, tag="x"):
                self.f = open(path, "a")
                self.f.write(json.dumps({"start": start_step, "tag": tag,
                                         "lr": config["optim"]["lr"]}) + "\\n")
            def log(self, row, step):
                self.f.write(json.dumps({"step": step, **row}) + "\\n")
            def close(self):
                self.f.close()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_tracking:Recorder"
    sys.modules.pop("my_tracking", None)


def test_a_user_tracker_gets_every_row_and_the_config(tmp_path, user_tracker):
    import json

    out = tmp_path / "tracked.jsonl"
    cfg = tiny_config(tmp_path, train={"steps": 4, "save_every": 2},
                      log={"backends": [{"kind": user_tracker, "path": str(out), "tag": "t"}]})
    train(cfg)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0] == {"start": 0, "tag": "t", "lr": cfg["optim"]["lr"]}
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [x["step"] for x in lines[1:]] == [r["step"] for r in rows] == [0, 1, 2, 3]
    for got, row in zip(lines[1:], rows):
        assert got["entropy/measured"] == pytest.approx(row["entropy/measured"])
        assert got["knobs/w_pos"] == pytest.approx(row["knobs/w_pos"])
    # a resumed run tells the tracker where it starts
    train(cfg, resume=tmp_path / "run", overrides=["train.steps=6"])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert {"start": 4, "tag": "t", "lr": cfg["optim"]["lr"]} in lines
    assert [x["step"] for x in lines if "step" in x][-2:] == [4, 5]


def test_wandb_offline_writes_its_run_under_the_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    cfg = tiny_config(tmp_path, train={"steps": 3, "save_every": 0}, log={"backends": ["wandb"]})
    train(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("run-*.wandb"))  # the run's records, for `wandb sync`


@pytest.mark.parametrize(("backends", "key", "says"), [
    ("wandb", "log.backends", "a list of trackers"),
    (["wandbb"], "log.backends[0]", "wandb"),
    ([{"project": "p"}], "log.backends[0]", "kind: NAME"),
    ([3], "log.backends[0]", "a tracker name"),
])
def test_bad_backends_name_the_entry(backends, key, says):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")) as e:
        LogConfig.from_mapping({"backends": backends})
    assert says in str(e.value)


def test_a_tracker_that_cannot_load_stops_before_step_0_and_leaves_nothing(tmp_path, user_tracker):
    cfg = tiny_config(tmp_path, log={"backends": ["no_such_module_xyz:Tracker"]})
    with pytest.raises(ConfigError, match=r"log.backends\[0\]"):
        train(cfg)
    assert not (tmp_path / "run").exists()
    bad_option = tiny_config(tmp_path, log={"backends": [{"kind": user_tracker, "nope": 1}]})
    with pytest.raises(ConfigError, match="options the tracker accepts"):
        train(bad_option)
    assert not (tmp_path / "run").exists()


@pytest.fixture
def grumpy_trackers(tmp_path, monkeypatch):
    """Trackers whose constructors raise multi-line errors (as wandb's Settings does)."""
    (tmp_path / "grumpy_tracking.py").write_text(textwrap.dedent("""
        from typing import Literal
        from pydantic import BaseModel
        class Settings(BaseModel):
            mode: Literal["online", "offline"]
        class Pydantic:
            def __init__(self, *, run_dir, config, start_step, mode="offline"):
                Settings(mode=mode)
        class Verbose:
            def __init__(self, *, run_dir, config, start_step, **options):
                raise ValueError("\\nbad option\\n  details line 2\\n  details line 3")
        class Good:
            closed = []
            def __init__(self, **_):
                pass
            def close(self):
                self.closed.append(True)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "grumpy_tracking"
    sys.modules.pop("grumpy_tracking", None)


@pytest.mark.parametrize(("cls", "says"), [
    ("Pydantic", "mode: Input should be 'online' or 'offline'"),
    ("Verbose", "(bad option)"),
])
def test_a_tracker_constructor_error_is_one_line_naming_the_entry(tmp_path, grumpy_trackers,
                                                                    cls, says):
    from trainer.trackers import make_trackers

    backends = [{"kind": f"{grumpy_trackers}:{cls}", "mode": "bogus"}]
    with pytest.raises(ConfigError) as e:
        make_trackers(backends, run_dir=tmp_path, config={}, start_step=0)
    msg = str(e.value)
    assert msg.startswith("log.backends[0]: ") and "\n" not in msg and says in msg
    with pytest.raises(ConfigError, match=r"log.backends\[1\]"):
        make_trackers([f"{grumpy_trackers}:Good", *backends], run_dir=tmp_path, config={},
                      start_step=0)
    assert sys.modules[grumpy_trackers].Good.closed == [True]  # the one already built is closed
