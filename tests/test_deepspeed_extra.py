"""The trainer's DeepSpeed section: a `deepspeed.extra` DeepSpeed refuses is one config error line
(exit 2); bf16 on a CPU that only emulates it is warned about."""

from __future__ import annotations

from _train_helpers import tiny_config, write_config

from regulator.cli import main


def test_a_deepspeed_extra_deepspeed_refuses_is_one_line(tmp_path, capsys):
    cfg = tiny_config(tmp_path, train={"steps": 2, "save_every": 0})
    path = write_config(tmp_path, cfg)
    code = main(["train", str(path), "--set", "deepspeed.extra={zero_optimization: {stage: abc}}"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "deepspeed.extra:" in err and "'abc'" in err and "stage" in err


def test_bf16_on_a_cpu_that_emulates_it_is_warned_about(tmp_path, monkeypatch, caplog):
    import logging

    from trainer import engine

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert engine.cpu_has_native_bf16(str(info)) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n")
    assert engine.cpu_has_native_bf16(str(info)) is True
    assert engine.cpu_has_native_bf16(str(tmp_path / "missing")) is None

    monkeypatch.setattr(engine, "on_cpu", lambda: True)
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="trainer.engine"):
        engine.warn_slow_cpu_bf16(False)
        assert not caplog.records
        engine.warn_slow_cpu_bf16(True)
    assert "deepspeed.bf16: false" in caplog.text
    caplog.clear()
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: None)  # cannot tell: no warning
    engine.warn_slow_cpu_bf16(True)
    assert not caplog.records
