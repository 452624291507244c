"""Every Regulator event names its step once, and so does the trainer's log line of it."""

from __future__ import annotations

import json
import logging
import math

from regulator import Controller, KnobBounds, Regulator


class Scripted(Controller):
    """w_pos: raises at step 1, returns a non-Knobs at step 2, asks for 5.0 (clamped) at step 3."""

    def act(self, obs):
        if obs.step == 1:
            raise RuntimeError("boom")
        if obs.step == 2:
            return {"w_pos": 0.5}
        return self.initial.replace(w_pos=5.0 if obs.step == 3 else 0.5)


def _events() -> dict[int, str]:
    reg = Regulator(Scripted(), 0.3, bounds=KnobBounds(w_pos=(0.0, 1.0)), actuate=("w_pos",),
                    total_steps=6)
    out = {}
    for step, entropy in enumerate([1.0, 1.0, 1.0, 1.0, math.nan]):
        reg.step(step, entropy)
        out[step] = reg.last_event
    return out


def test_each_regulator_event_starts_with_its_step_and_names_it_once():
    events = _events()
    assert events[0] == ""
    for step in (1, 2, 3, 4):
        assert events[step].startswith(f"step {step}: "), events[step]
        assert events[step].count("step ") == 1, events[step]
    assert "raised RuntimeError: boom" in events[1] and "not Knobs" in events[2]
    assert "clamped" in events[3] and "non-finite entropy nan" in events[4]


def test_a_freeze_after_a_clamp_is_one_event_with_one_step():
    # the controller asks for 0, the floors are 0.2 and 0.1: clamped onto them, i.e. frozen
    class Brake(Controller):
        def act(self, obs):
            return obs.knobs.replace(w_pos=0.0, w_neg=0.0)

    reg = Regulator(Brake(), 0.3,
                    bounds=KnobBounds(w_pos=(0.2, 1.0), w_neg=(0.1, 2.0)),
                    actuate=("w_pos", "w_neg"), total_steps=3)
    reg.step(2, 1.0)
    assert reg.last_event.startswith("step 2: clamped") and reg.last_event.count("step 2") == 1
    assert "not learning" in reg.last_event


def test_the_run_log_prints_an_event_s_step_once(tmp_path, caplog):
    from trainer.logging import RunLogger

    logger = RunLogger(tmp_path, total_steps=5, start_step=0, tensorboard=False, progress=False)
    events = _events()
    with caplog.at_level(logging.INFO, logger="trainer"):
        for step, message in events.items():
            logger.event(step, message)
    logger.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "trainer"]
    assert len(lines) == 4
    for step, line in zip((1, 2, 3, 4), lines):
        assert line.startswith(f"regulator: step {step}: ") and line.count("step ") == 1, line
    written = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in written] == [1, 2, 3, 4]
    assert [e["event"] for e in written] == [events[s] for s in (1, 2, 3, 4)]
