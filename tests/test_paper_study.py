"""benchmarks/paper_study.py and configs/paper/: every variant is a valid config with a buildable
controller, the table's mean +/- std, and a resumable smoke run of the one command."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

from regulator.config import apply_overrides, load_yaml
from trainer.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import paper_study as ps  # noqa: E402

CONFIG_DIR = ROOT / "configs" / "paper"
SMOLLM2_DIR = CONFIG_DIR / "smollm2"
STUDIES = [(CONFIG_DIR, "max5"), (CONFIG_DIR, "parity"), (SMOLLM2_DIR, "smollm2")]


def test_variant_table_covers_the_issue():
    labels = {v["label"] for v in ps.load_variants(CONFIG_DIR)}
    want = {"grpo", "clip_higher", "clip_lower", "clip_tighter", "clip_free", "pos_only", "neg_only",
            "par_stage", "par_epoch", "par_entropy", "updates_2", "updates_4", "bandit"}
    assert want <= labels
    assert any(x.startswith("pid") for x in labels)
    # the SmolLM2 study: the issue's five arms, two seeds by default, its one task discovered
    assert {v["label"] for v in ps.load_variants(SMOLLM2_DIR)} == {
        "grpo", "pos_only", "neg_only", "w_pos_0.5", "pid_w_pos"}
    assert ps.study_seeds(SMOLLM2_DIR) == [0, 1] and ps.study_tasks(SMOLLM2_DIR) == ["smollm2"]
    assert ps.study_seeds(CONFIG_DIR) == [0, 1, 2] and ps.study_tasks(CONFIG_DIR) == ["max5", "parity"]


@pytest.mark.parametrize("config_dir,task", STUDIES)
def test_every_variant_is_a_valid_config(config_dir, task, tmp_path):
    base = load_yaml(config_dir / f"base_{task}.yaml")
    assert base["train"]["eval_samples"] > 0 and base["train"]["eval_every"] > 0
    for v in ps.load_variants(config_dir):
        raw = apply_overrides(base, ps.overrides_for(v, 1, tmp_path / v["label"], None))
        cfg = TrainConfig.from_mapping(raw)
        assert cfg.train.seed == 1 and cfg.train.out_dir == str(tmp_path / v["label"])
        reg = cfg.control.build(cfg.train.steps)          # the controller's params are checked here
        knobs = reg.step(0, 1.0, accuracy=0.5)
        for key, value in (v.get("set") or {}).items():  # the variant's keys replaced the base's
            section, name = key.split(".", 1)
            assert raw[section][name] == value, (v["label"], key)
        if v["label"] == "pos_only":
            assert knobs.w_neg == 0.0 and knobs.w_pos == 1.0
        if v["label"] == "neg_only":
            assert knobs.w_pos == 0.0 and knobs.w_neg == 1.0
        if v["label"] == "updates_4":
            assert cfg.optim.mini_batches == 4
        if v["label"] == "w_pos_0.5":
            assert knobs.w_pos == 0.5 and knobs.w_neg == 1.0


def _fake_run(rd: Path, entropies: list[float], ece: float, distinct: float = 0.5) -> None:
    rd.mkdir(parents=True)
    rows = [{"step": i, "entropy/measured": h} for i, h in enumerate(entropies)]
    rows[-1].update({"eval/accuracy": 0.5, "eval/avg@8": 0.25, "eval/pass@1": 0.25, "eval/pass@8": 0.75,
                     "eval/distinct_1": distinct, "eval/ece": ece})
    (rd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (rd / "summary.json").write_text(json.dumps({"final_entropy": entropies[-1]}))


def test_report_mean_and_std(tmp_path):
    variants = [{"label": "a"}, {"label": "b"}]
    _fake_run(tmp_path / "max5" / "a" / "seed0", [2.0, 1.0], 0.1)
    _fake_run(tmp_path / "max5" / "a" / "seed1", [2.0, 0.5], 0.3)
    _fake_run(tmp_path / "max5" / "b" / "seed0", [2.0, 0.2], 0.2)   # seed1 of b missing
    _fake_run(tmp_path / "max5" / "c" / "seed0", [2.0, 0.1], 0.4, distinct=0.25)
    variants.append({"label": "c"})
    ps.write_report(tmp_path, ["max5"], variants, [0, 1], n=8)
    md = (tmp_path / "paper_table.md").read_text().splitlines()
    assert md[0].startswith("| task | variant | seeds | final H |") and "pass@8" in md[0]
    sd = statistics.stdev([0.1, 0.3])
    assert md[2] == (f"| max5 | a | 2 | 0.750 ± {statistics.stdev([1.0, 0.5]):.3f} | 0.500 ± 0.000 | "
                     f"0.250 ± 0.000 | 0.250 ± 0.000 | 0.750 ± 0.000 | 0.500 ± 0.000 | 0.200 ± {sd:.3f} |")
    assert md[3].startswith("| max5 | b | 1 | 0.200 ± 0.000 |")
    # final H 1.0, 0.5, 0.2, 0.1 vs ECE 0.1, 0.3, 0.2, 0.4: rho = -0.8; distinct 0.5 x3, 0.25
    assert "rho(final H, ECE) = -0.80" in md[-1] and "4 runs" in md[-1]
    assert "rho(final H, distinct-1) = 0.77" in md[-1]
    assert (tmp_path / "entropy_curves.png").stat().st_size > 1000
    assert "eval/ece_mean" in (tmp_path / "paper_table.csv").read_text()


def test_one_command_smoke_and_resume(tmp_path, capsys):
    args = ["--out", str(tmp_path), "--tasks", "max5", "--variants", "grpo", "--seeds", "0",
            "--steps", "2", "--workers", "1", "--no-plant"]
    assert ps.main(args) == 0
    rd = tmp_path / "max5" / "grpo" / "seed0"
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1] and "eval/pass@8" in rows[-1]
    mtime = (rd / "summary.json").stat().st_mtime
    assert ps.main(args) == 0                                      # finished runs are skipped
    assert "1 of 1 runs already finished; running 0" in capsys.readouterr().out
    assert (rd / "summary.json").stat().st_mtime == mtime


def test_plant_side_table(tmp_path):
    """benchmarks/paper_plant.py: every variant in both regimes, and the per-weight gains."""
    import paper_plant

    text = paper_plant.run(tmp_path, [0, 1], 12)
    lines = (tmp_path / "plant_table.md").read_text().splitlines()
    assert lines[0].startswith("| variant | pretrained: final H") and "scratch: accuracy" in lines[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in lines[2:7]}
    assert list(rows) == list(paper_plant.VARIANTS)
    assert all(line.count("±") == 4 for line in rows.values())
    assert "- pretrained (start" in text and "- scratch (start" in text and "raising w_neg" in text


def test_the_entropy_figure_has_a_panel_per_family_and_legends_that_cover_no_curve():
    variants = ps.load_variants(CONFIG_DIR)
    res = {(task, v["label"]): [{"curve": [2.8 * 0.98 ** (t * (i + 1) / 5) for t in range(50)]}]
           for task in ("max5", "parity") for i, v in enumerate(variants)}
    fig = ps.entropy_figure(res, ["max5", "parity"], variants, 0.2)
    families = list(dict.fromkeys(ps._family(v["label"]) for v in variants if v["label"] != "grpo"))
    axes = fig.axes
    assert len(axes) == 2 * len(families) and len(families) >= 4  # 17 series split up
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    shown = set()
    for ax in axes[: len(families)]:  # the top row carries the legends
        legend = ax.get_legend()
        labels = [t.get_text() for t in legend.get_texts()]
        assert labels[0] == "grpo" and len(labels) <= 6
        shown.update(labels)
        box = legend.get_window_extent(renderer)
        for other in axes:  # above the panels: it overlaps no plotting area
            assert not box.overlaps(other.get_window_extent(renderer))
    assert shown == {v["label"] for v in variants}  # every variant appears in some legend
    for ax in axes:
        assert ax.get_yscale() == "log" and ax.lines  # curves drawn, in every panel
