"""`regulator plot -o`, `--control FILE` errors and the subcommands' help texts."""

from __future__ import annotations

import argparse

import pytest

from regulator.cli import build_parser, main
from regulator.metrics_io import write_metrics


def _run(tmp_path):
    run = tmp_path / "run"
    write_metrics(run / "metrics.jsonl", [
        {"step": s, "entropy/measured": 1.0 - 0.1 * s, "entropy/target": 0.8, "knobs/w_pos": 1.0}
        for s in range(4)])
    return run


def _one_line_error(capsys, *needles: str) -> None:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_plot_out_with_an_unsupported_suffix_is_one_config_error(tmp_path, capsys):
    run = _run(tmp_path)
    assert main(["plot", str(run), "-o", str(tmp_path / "x.txt")]) == 2
    _one_line_error(capsys, "--out", ".png", ".pdf", "x.txt")
    assert not (tmp_path / "x.txt").exists()


def test_plot_out_without_a_suffix_gets_png_and_says_so(tmp_path, capsys):
    run = _run(tmp_path)
    assert main(["plot", str(run), "-o", str(tmp_path / "noext")]) == 0
    assert (tmp_path / "noext.png").is_file()
    assert capsys.readouterr().out.strip().endswith(f"-> {tmp_path / 'noext.png'}")


def test_plot_out_into_a_directory_writes_plot_png_inside(tmp_path, capsys):
    run = _run(tmp_path)
    out_dir = tmp_path / "plots"
    out_dir.mkdir()
    assert main(["plot", str(run), "-o", str(out_dir)]) == 0
    assert (out_dir / "plot.png").is_file() and not (tmp_path / "plots.png").exists()
    assert capsys.readouterr().out.strip().endswith(f"-> {out_dir / 'plot.png'}")


def test_plot_out_in_another_format(tmp_path, capsys):
    run = _run(tmp_path)
    assert main(["plot", str(run), "-o", str(tmp_path / "p.svg")]) == 0
    assert (tmp_path / "p.svg").read_text().lstrip().startswith("<?xml")


def test_a_missing_control_file_names_the_control_option(tmp_path, capsys):
    assert main(["train", "configs/default.yaml", "--control", str(tmp_path / "none.yaml")]) == 2
    _one_line_error(capsys, "--control:", "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("control: [\n")
    assert main(["train", "configs/default.yaml", "--control", str(bad)]) == 2
    _one_line_error(capsys, "--control:", "valid YAML at line")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["train", "plot", "bench", "tune", "config"])
def test_every_argument_of_a_subcommand_has_help(command):
    parser = _subparsers()[command]
    missing = [a.dest for a in parser._actions if not a.help]
    assert missing == []
