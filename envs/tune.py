"""``regulator tune CONFIG``: identify each knob's sign, gain, delay and noise by open-loop step
probes on the user's own setup, and recommend knobs and PI gains (``envs.identify``).

CONFIG is either a sim-plant spec (has ``plant: sim``)::

    plant: sim
    plant_params: {regime: pretrained}     # PlantConfig fields (docs/envs.md)
    knobs: [w_pos, w_neg]                  # candidate knobs
    initial: {w_pos: 1.0, w_neg: 1.0}      # the operating point k0
    bounds: {w_pos: [0, 2], w_neg: [0, 2]}
    delta: {w_pos: 0.5, w_neg: 0.5}        # probe step per knob (default: a quarter of the span)
    start: 0                               # steps at k0 before the step; a list = several
                                           # phases of training, each probed (signs compared)
    probe_steps: 30                        # steps after it
    seeds: 3                               # n (0..n-1) or a list
    target: {kind: constant, value: 0.35}  # copied into the recommended control section
    tau_c: null                            # closed-loop time constant (steps); null = rule
    joint: true                            # also probe all knobs moved together (default with
                                           # 2+ knobs; recommended unless clearly beaten)
    relative: true                         # recommend relative_error gains (scaled at the
                                           # probed entropy level)
    out_dir: runs/tune

or a training config (``regulator train``'s), whose ``control`` section gives the defaults
(knobs = control.actuate, initial, bounds, target) and whose optional ``tune:`` mapping holds
the keys above except ``plant``/``plant_params`` (defaults there: start 10, probe_steps 20,
seeds 3, out_dir = train.out_dir + "/tune"). Every mistake is a ConfigError naming the key.

Writes OUT/identification.json, OUT/probes.png and OUT/control.yaml; prints the table and the
``control:`` section. With several ``start`` phases, a knob whose sign differs between phases
(with authority in both) gets ``direction: auto`` in the recommendation, its prior the first
phase's sign, and the SIMC gains use the mean |g| over the phases.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import PlainValidator, model_validator

from envs.config_types import BoundValues, KnobValues, MaybeActuate, TuneSeeds, check_out_dir
from envs.identify import (
    GAIN_MAGNITUDE,
    KnobModel,
    control_section,
    identify_knob,
    is_joint,
    joint_name,
    recommend,
)
from envs.plant_config import PlantConfig
from regulator.config import ControlConfig, apply_overrides, load_yaml
from regulator.errors import ConfigError
from regulator.knobs import KNOB_NAMES, KnobBounds, Knobs
from regulator.plant import run_open_loop
from regulator.schema import Field, Schema, parse
from regulator.targets import TargetField

log = logging.getLogger(__name__)

#: runner(schedules, seeds, steps) -> entropy [len(schedules), len(seeds), steps]; schedule[t]
#: is the Knobs of step t
Runner = Callable[[list[list[Knobs]], list[int], int], np.ndarray]

#: the knobs probed when neither the spec nor a training config's ``control.actuate`` names any
PROBED_KNOBS: tuple[str, ...] = ("w_pos", "w_neg")


def _starts(v: Any) -> list[int] | None:
    if v is None:
        return None
    many = isinstance(v, list)
    for i, st in enumerate(v if many else [v]):
        if isinstance(st, bool) or not isinstance(st, int) or st < 0:
            raise ConfigError(f"[{i}]" if many and len(v) > 1 else "", "a step >= 0 or a list of them", st)
    v = v if many else [v]
    if not v or sorted(set(v)) != v:
        raise ConfigError("", "a step or a non-empty increasing list of steps", v)
    return list(v)


#: ``start:`` a step, or an increasing list of steps (one probe phase each)
Starts = Annotated[list[int] | None, PlainValidator(_starts)]


@dataclass
class TuneSpec:
    """The probe plan: the settings with the training config's ``control:`` section and the
    defaults filled in (``parse_tune_spec``)."""

    knobs: list[str]
    initial: Knobs
    bounds: KnobBounds
    delta: dict[str, float]
    starts: list[int]
    probe_steps: int
    seeds: list[int]
    target: Any
    tau_c: float | None
    out_dir: str
    joint: bool = False
    relative: bool = True
    plant: str = "sim"
    plant_params: dict[str, Any] = field(default_factory=dict)
    train_raw: dict[str, Any] | None = None

    @property
    def joint_du(self) -> float:
        """The joint probe's step in u units: every knob k moves by GAIN_MAGNITUDE[k] x du."""
        return min(self.delta[k] / GAIN_MAGNITUDE[k] for k in self.knobs)

    def probe_directions(self) -> list[tuple[str, dict[str, float]]]:
        """(name, knob -> step of a +1 probe) per probed direction: each knob, then the joint."""
        out = [(k, {k: self.delta[k]}) for k in self.knobs]
        if self.joint:
            out.append((joint_name(self.knobs), {k: self.joint_du * GAIN_MAGNITUDE[k] for k in self.knobs}))
        return out

    def schedules(self, start: int) -> tuple[list[list[Knobs]], list[tuple[str, str]]]:
        """The base run and a +delta and -delta run per direction (labels: (name, 'up'|'down'))."""
        steps = start + self.probe_steps + 1
        out, labels = [[self.initial] * steps], [("", "base")]
        for name, step in self.probe_directions():
            for sgn, lab in ((1, "up"), (-1, "down")):
                probe = self.initial.replace(**{k: self._clamped(k, sgn * d) for k, d in step.items()})
                out.append([self.initial] * start + [probe] * (steps - start))
                labels.append((name, lab))
        return out, labels

    def _clamped(self, knob: str, step: float) -> float:
        lo, hi = self.bounds.range(knob)
        return min(max(getattr(self.initial, knob) + step, lo), hi)

    def applied(self, name: str, step: dict[str, float]) -> tuple[float, float]:
        """The up and down steps a probe really applied (bounds clip them), in the direction's
        units: knob units for a single knob, u for the joint (mean over its knobs)."""
        scale = {k: (GAIN_MAGNITUDE[k] if is_joint(name) else 1.0) for k in step}
        up = [(self._clamped(k, d) - getattr(self.initial, k)) / scale[k] for k, d in step.items()]
        dn = [(getattr(self.initial, k) - self._clamped(k, -d)) / scale[k] for k, d in step.items()]
        return float(np.mean(up)), float(np.mean(dn))


class TuneSettings(Schema):
    """The probe settings: the top level of a sim-plant spec, or a training config's ``tune:``
    (there the ``control:`` section gives knobs, initial, bounds and target)."""

    knobs: MaybeActuate = None
    """Candidate knobs to probe; default: ``control.actuate`` of a training config, else
    [w_pos, w_neg]."""
    initial: KnobValues = Field(default_factory=dict)
    """The operating point k0 (some knobs; the rest: ``control.initial`` or the ``Knobs``
    defaults); clamped into ``bounds``."""
    bounds: BoundValues = Field(default_factory=dict)
    """Knob ranges the probes stay in (some knobs, over ``control.bounds`` or the defaults)."""
    delta: dict[str, float] = Field(default_factory=dict)
    """Probe step per knob, in (0, the bound span]; default: a quarter of the span."""
    start: Starts = None
    """Steps at k0 before the step, or an increasing list of them (several phases of training,
    each probed and their signs compared); default: 0 on the sim plant, 10 for a training config."""
    probe_steps: int | None = Field(None, ge=4)
    """Steps after the knob step; default: 30 on the sim plant, 20 for a training config."""
    seeds: TuneSeeds = Field(default_factory=lambda: [0, 1, 2])
    """A number n (seeds 0..n-1, n >= 2) or a list of distinct seeds >= 0; each direction runs
    +delta and -delta per seed, paired with a base run."""
    target: TargetField = None
    """Target spec copied into the recommended ``control:`` section; default: the training
    config's ``control.target``, else the default of ``control.target``."""
    tau_c: float | None = Field(None, gt=0.0)
    """Closed-loop time constant (steps) of the recommended gains; null = the SIMC rule."""
    joint: bool | None = None
    """Also probe all knobs moved together; default: true with 2+ knobs (and false with one)."""
    relative: bool = True
    """Recommend ``relative_error`` gains (scaled at the probed entropy level)."""
    out_dir: str | None = Field(None, min_length=1)
    """Output folder; default: ``runs/tune`` for a sim-plant spec, ``train.out_dir``/tune for a
    training config."""


class SimTuneConfig(TuneSettings):
    """A sim-plant spec: the probe settings at the top level, on a simulated plant."""

    plant: Literal["sim"]
    """``sim`` (a training config has no ``plant`` key)."""
    plant_params: PlantConfig = Field(default_factory=PlantConfig)
    """The simulated plant (PlantConfig fields, ``regime`` included)."""

    @model_validator(mode="before")
    @classmethod
    def _empty_plant(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "plant_params" in data and data["plant_params"] is None:
            return {k: v for k, v in data.items() if k != "plant_params"}
        return data


def parse_tune_spec(raw: Mapping[str, Any]) -> TuneSpec:
    """A sim-plant spec or a training config (module doc) -> TuneSpec."""
    if not isinstance(raw, Mapping):
        raise ConfigError("config", "a mapping (a sim-plant spec or a training config)", raw)
    if "plant" in raw:
        sim = parse(SimTuneConfig, raw)
        return _spec(sim, "", {}, {"start": 0, "probe_steps": 30, "out_dir": "runs/tune"},
                     plant="sim", plant_params=sim.plant_params.resolved())
    if "model" in raw or "train" in raw:
        from trainer.config import TrainConfig

        train_raw = {k: v for k, v in raw.items() if k != "tune"}
        cfg = TrainConfig.from_mapping(train_raw)
        control = {"knobs": list(cfg.control.actuate), "initial": cfg.control.initial.as_dict(),
                   "target": (raw.get("control") or {}).get("target"),
                   "bounds": {k: list(cfg.control.bounds.range(k)) for k in KNOB_NAMES}}
        defaults = {"start": 10, "probe_steps": 20, "out_dir": str(Path(cfg.train.out_dir) / "tune")}
        return _spec(parse(TuneSettings, raw.get("tune"), "tune"), "tune.", control, defaults,
                     plant="trainer", train_raw=train_raw)
    raise ConfigError("plant", "'plant: sim' (a sim-plant spec) or a training config with "
                      "'model' and 'train' sections", None)


def _spec(t: TuneSettings, prefix: str, control: Mapping[str, Any], defaults: Mapping[str, Any],
          **where: Any) -> TuneSpec:
    """The settings over the training config's control section and the defaults."""
    knobs = list(t.knobs if t.knobs is not None else control.get("knobs", PROBED_KNOBS))
    if not knobs:
        raise ConfigError(f"{prefix}knobs", "a non-empty list of knob names", knobs)
    initial = Knobs.from_mapping({**control.get("initial", {}), **t.initial}, key=f"{prefix}initial")
    bounds = KnobBounds.from_mapping({**control.get("bounds", {}), **t.bounds}, key=f"{prefix}bounds")
    initial = bounds.clamp(initial, only=tuple(knobs))
    for k in t.delta:
        if k not in knobs:
            raise ConfigError(f"{prefix}delta.{k}", f"a knob listed in {prefix}knobs", k)
    delta = {}
    for k in knobs:
        lo, hi = bounds.range(k)
        span = (hi - lo) if math.isfinite(hi - lo) else 1.0
        d = t.delta.get(k, 0.25 * span)
        if not 0 < d <= span:
            raise ConfigError(f"{prefix}delta.{k}", f"a probe step in (0, {span}] (the bound span)", d)
        delta[k] = float(d)
    out_dir = t.out_dir or defaults["out_dir"]
    try:
        check_out_dir(out_dir)
    except ConfigError as e:
        raise e.with_key(f"{prefix}out_dir") from None
    joint = len(knobs) > 1 if t.joint is None else t.joint
    if joint and len(knobs) < 2:
        raise ConfigError(f"{prefix}joint", "false with a single knob (nothing to move jointly)", joint)
    return TuneSpec(knobs, initial, bounds, delta,
                    t.start if t.start is not None else [defaults["start"]],
                    t.probe_steps if t.probe_steps is not None else defaults["probe_steps"],
                    t.seeds, _target(t.target, control), t.tau_c,
                    out_dir, joint, t.relative, **where)


def _target(given: Any, control: Mapping[str, Any]) -> Any:
    """The recommended section's target: the spec's, else the training config's, else the one a
    ``control:`` section without a target runs (``regulator train --control FILE`` replaces the
    whole section, so the file must name its target)."""
    if given is not None:
        return given
    if control.get("target") is not None:
        return control["target"]
    return ControlConfig.from_mapping({}).resolved()["target"]


# --- runners --------------------------------------------------------------------------------------
def sim_runner(plant_params: Mapping[str, Any], progress: bool = True) -> Runner:
    """Every (schedule, seed) as one plant of a batched SimPlant (paired by seed), open loop."""
    def run(schedules: list[list[Knobs]], seeds: list[int], steps: int) -> np.ndarray:
        from envs.plant import SimPlant
        from envs.plant_config import PlantConfig
        from envs.sim_loop import SimPlants

        sim = SimPlant(PlantConfig.from_mapping(dict(plant_params), key="plant_params"),
                       len(schedules) * len(seeds), seeds=[s for _ in schedules for s in seeds])
        bar = iter(_progress(range(steps), progress, "probing"))
        H = run_open_loop(SimPlants(sim, steps), [sch for sch in schedules for _ in seeds], steps,
                          on_step=lambda _t: next(bar, None))
        return np.asarray(H, dtype=float).reshape(len(schedules), len(seeds), steps)
    return run


def trainer_runner(train_raw: Mapping[str, Any], progress: bool = True) -> Runner:
    """Each (schedule, seed) as one short run of the real trainer (a TrainerPlant), open loop:
    the schedule's knobs go straight to its updates, as on the sim plant."""
    def run(schedules: list[list[Knobs]], seeds: list[int], steps: int) -> np.ndarray:
        from trainer.plant import TrainerPlant

        out = np.zeros((len(schedules), len(seeds), steps))
        bar = iter(_progress(range(len(schedules) * len(seeds) * steps), progress, "probing"))
        for i, sch in enumerate(schedules):
            for j, seed in enumerate(seeds):
                plant = TrainerPlant.from_config(train_raw, [
                    f"train.seed={seed}", f"train.steps={steps}", "train.eval_every=0",
                    "train.save_every=0"])
                out[i, j] = run_open_loop(plant, [sch], steps, on_step=lambda _t: next(bar, None))[0]
        return out
    return run


def _progress(it: Any, on: bool, desc: str) -> Any:
    if not on:
        return it
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return it
    return tqdm(it, desc=desc, leave=False)


# --- the procedure ---------------------------------------------------------------------------------
def identify(spec: TuneSpec, runner: Runner, start: int | None = None
             ) -> tuple[list[KnobModel], np.ndarray, list]:
    """Probe every direction (each knob, then the joint one) from step ``start`` (default: the
    first phase) and fit each."""
    start = spec.starts[0] if start is None else start
    schedules, labels = spec.schedules(start)
    steps = start + spec.probe_steps + 1
    H = runner(schedules, spec.seeds, steps)
    base = H[0]
    models = []
    for name, step in spec.probe_directions():
        up = H[labels.index((name, "up"))]
        dn = H[labels.index((name, "down"))]
        # a step clipped at a bound is smaller than asked; use the mean applied step
        d_up, d_dn = spec.applied(name, step)
        if d_up <= 0 or d_dn <= 0:  # operating point on a bound: one-sided probe
            d = max(d_up, d_dn)
            same = up if d_up > 0 else dn
            models.append(identify_knob(name, base, same if d_up > 0 else 2 * base - same,
                                        2 * base - same if d_up > 0 else same, start, d))
        else:
            models.append(identify_knob(name, base, up, dn, start, 0.5 * (d_up + d_dn)))
    return models, H, labels


def merge_phases(phases: list[list[KnobModel]]) -> tuple[list[KnobModel], list[str]]:
    """One model per knob over the phases, and the knobs whose sign flips between phases.

    Sign: the first phase with authority (``strong``); gain magnitude: mean |g| over the strong
    phases; delay and noise: the largest. A knob flips if strong phases disagree on its sign."""
    merged, flips = [], []
    for i, m0 in enumerate(phases[0]):
        ms = [p[i] for p in phases]
        strong = [m for m in ms if m.verdict == "strong"]
        if len(ms) == 1 or not strong:
            merged.append(max(ms, key=lambda m: m.zscore))
            continue
        if len({m.sign for m in strong}) > 1:
            flips.append(m0.knob)
        mag = float(np.mean([abs(m.gain) for m in strong]))
        merged.append(KnobModel(m0.knob, strong[0].sign * mag, min(m.stderr for m in strong),
                                max(m.delay for m in strong), max(m.noise for m in strong),
                                m0.delta, float(np.mean([m.asymmetry for m in strong])),
                                float(np.mean([m.level for m in strong]))))
    return merged, flips


def tune_sim(plant: Any, *, actuate: Sequence[str] = ("w_pos", "w_neg"),
             bounds: Mapping[str, Sequence[float]] | None = None, seeds: Sequence[int] = (0, 1, 2),
             start: int | list[int] = 0, probe_steps: int = 30, target: Any = None,
             joint: bool | None = None, relative: bool = True) -> dict[str, Any]:
    """Programmatic ``regulator tune`` on a sim plant (a PlantConfig): models + control section."""
    raw = {"plant": "sim", "plant_params": plant.as_dict() if hasattr(plant, "as_dict") else dict(plant),
           "knobs": list(actuate), "bounds": {k: list(v) for k, v in (bounds or {}).items()},
           "seeds": list(seeds), "start": start, "probe_steps": probe_steps, "target": target,
           "relative": relative}
    if joint is not None:
        raw["joint"] = joint
    raw["plant_params"]["betas"] = list(raw["plant_params"].get("betas", (0.9, 0.999)))
    spec = parse_tune_spec(raw)
    runner = sim_runner(spec.plant_params, progress=False)
    return _result(spec, [identify(spec, runner, st)[0] for st in spec.starts])


def _result(spec: TuneSpec, phases: list[list[KnobModel]]) -> dict[str, Any]:
    b = {k: spec.bounds.range(k) for k in KNOB_NAMES}
    models, flips = merge_phases(phases)
    rec = recommend(models, b, tau_c=spec.tau_c, relative=spec.relative)
    out: dict[str, Any] = {"phases": [{"start": st, "models": [m.as_dict() for m in ms]}
                                      for st, ms in zip(spec.starts, phases)],
                           "models": [m.as_dict() for m in models], "flips": flips,
                           "recommendation": rec}
    if rec["knobs"]:
        out["control"] = control_section(rec, spec.initial.as_dict(), b, spec.target)
        if any(k in flips for k in rec["models"]):
            out["control"]["params"]["direction"] = "auto"
    return out


def format_table(phases: list[list[KnobModel]], starts: list[int]) -> str:
    lines = ["from step  knob          sign  gain (nats/step/unit)   +-se      delay  noise   z      "
             "authority",
             "-" * 99]
    for st, models in zip(starts, phases):
        lines += _rows(models, f"{st:9d}  ")
    return "\n".join(lines)


def _rows(models: list[KnobModel], lead: str) -> list[str]:
    lines = []
    for m in models:
        lines.append(f"{lead}{m.knob:13s} {'+' if m.sign > 0 else '-':>4s}  {m.gain:+.5f}               "
                     f"{m.stderr:.5f}   {m.delay:5d}  {m.noise:.4f}  {min(m.zscore, 999):5.1f}  "
                     f"{m.verdict}")
    return lines


def plot_probes(path: Path, spec: TuneSpec, phases: list[tuple[int, list[KnobModel], np.ndarray, list]]
                ) -> None:
    """Per phase and knob: H(probe) - H(base) per seed, their mean, and the fitted model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(phases[0][1])
    fig, axes = plt.subplots(len(phases), n, figsize=(4.5 * n, 3.5 * len(phases)), squeeze=False)
    j = np.arange(1, spec.probe_steps + 1)
    panels = [(ax, start, m, H, labels) for (start, models, H, labels), row in zip(phases, axes)
              for ax, m in zip(row, models)]
    for ax, start, m, H, labels in panels:
        for lab, sgn, color in (("up", 1, "tab:red"), ("down", -1, "tab:blue")):
            D = H[labels.index((m.knob, lab))][:, start + 1:] - H[0][:, start + 1:]
            for d in D:
                ax.plot(j, d, color=color, alpha=0.25, lw=0.8)
            ax.plot(j, D.mean(0), color=color, lw=2, label=f"{m.knob} {'+' if sgn > 0 else '-'}{m.delta:g}")
            ax.plot(j, sgn * m.delta * m.gain * np.maximum(j - m.delay, 0), color=color, ls="--", lw=1)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"{m.knob} from step {start}: g={m.gain:+.4f}/step ({m.verdict})", fontsize=10)
        ax.set_xlabel("steps after the knob step")
        ax.set_ylabel("H(probe) - H(base), nats")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tune_main(config_path: str, overrides: Sequence[str] = ()) -> int:
    """Entry point of ``regulator tune``: 0 on success, 1 if the probes fail (ConfigError -> 2)."""
    raw = apply_overrides(load_yaml(config_path), list(overrides))
    spec = parse_tune_spec(raw)
    runner = (sim_runner(spec.plant_params) if spec.plant == "sim"
              else trainer_runner(spec.train_raw or {}))
    n_dirs = len(spec.probe_directions())
    n_runs = (1 + 2 * n_dirs) * len(spec.seeds)
    lengths = " + ".join(str(st + spec.probe_steps + 1) for st in spec.starts)
    what = f"{len(spec.knobs)} knobs" + (" + joint" if spec.joint else "")
    print(f"regulator tune: {what} x (+-) x {len(spec.seeds)} seeds + base = {n_runs} "
          f"runs of {lengths} steps on the {spec.plant} plant", flush=True)
    t0 = time.perf_counter()
    try:
        probed = [(st, *identify(spec, runner, st)) for st in spec.starts]
    except ConfigError:
        raise
    except Exception as e:  # a failure during the probes
        log.error("tune failed: %s: %s", type(e).__name__, e)
        return 1
    out = Path(spec.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    phases = [p[1] for p in probed]
    result = _result(spec, phases)
    result["probe"] = {"start": spec.starts, "probe_steps": spec.probe_steps, "seeds": spec.seeds,
                       "delta": spec.delta, "wall_s": time.perf_counter() - t0}
    (out / "identification.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    plot_probes(out / "probes.png", spec, probed)
    print(format_table(phases, spec.starts))
    if result["flips"]:
        print(f"\nsign changes between phases: {', '.join(result['flips'])} -> direction: auto")
    rec = result["recommendation"]
    if not rec["knobs"]:
        print(f"\nno recommendation: {rec['reason']}; probe longer, with larger steps or more seeds")
        return 0
    moved = " together" if rec.get("mode") == "joint" else ""
    print(f"\nrecommended: {', '.join(rec['knobs'])}{moved} (SIMC, integrating plant: "
          f"k={rec['process_gain']:.4g} "
          f"nats/step per unit u, theta={rec['theta']:g}, tau_c={rec['tau_c']:.3g} steps)")
    text = yaml.safe_dump({"control": result["control"]}, sort_keys=False, default_flow_style=None)
    (out / "control.yaml").write_text(text)
    print(text, end="")
    print(f"regulator tune: {time.perf_counter() - t0:.1f} s -> {out}/control.yaml, {out}/probes.png")
    return 0
