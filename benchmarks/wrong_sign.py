"""Direction finding from a knob saturated the wrong way: the default control vs fixed PIDs.

    python benchmarks/wrong_sign.py [--seeds 5] [--steps 300]

The plant is the simplest one where the sign matters: one knob (w_pos; w_neg stays at 1) sets the
entropy *rate*, dH = sign * gain * (w_pos - 1), with white sensor noise, from 1.5 nats to a
constant target of 1.0. Either sign; the knob starts at the bound that drives entropy up, away
from the target. Printed per sign: the EMA(0.6) RMSE after step 50 (mean and per seed) of the
default control (`auto`, told nothing) and of fixed PIDs given the right sign (the bench suites'
gains kp 2 / ki 0.2, and stiffer ones), and `pid` with ``direction: auto``.
"""

from __future__ import annotations

import argparse
import logging
import math
from typing import Any

import numpy as np

from regulator import KnobBounds, Knobs, Regulator, make_controller
from regulator.tracking import tracking_summary


def integrating_plant(controller: str, params: dict, sign: float, seed: int, steps: int = 300,
                      gain: float = 0.01, noise: float = 0.02) -> tuple[float, list[float], Any]:
    """One closed-loop run: (EMA RMSE after step 50, the logged throttle share per step, the
    controller as the run left it)."""
    rng = np.random.default_rng(seed)
    ctrl = make_controller(controller, **params)
    reg = Regulator(ctrl, 1.0, initial=Knobs(w_pos=2.0 if sign > 0 else 0.0), actuate=("w_pos",),
                    bounds=KnobBounds(w_pos=(0.0, 2.0)), total_steps=steps)
    h, hs, shares = 1.5, [], []
    for t in range(steps):
        meas = h + noise * rng.normal()
        k = reg.step(t, meas, mixed_groups=0.5)
        hs.append(meas)
        shares.append(ctrl.metrics().get("control/share/throttle", math.nan))
        h += sign * gain * (k.w_pos - 1.0)
    return tracking_summary(hs, [1.0] * steps, burn_in=50, ema_alpha=0.6)["rmse_ema"], shares, ctrl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    logging.getLogger("regulator.safety").setLevel(logging.ERROR)  # the freeze events
    for sign in (1.0, -1.0):
        print(f"sign {sign:+.0f} (w_pos up {'raises' if sign > 0 else 'lowers'} entropy), "
              f"knob starting at w_pos = {2.0 if sign > 0 else 0.0}")
        entries = [("auto (default)", "auto", {})]
        for kp, ki in ((2.0, 0.2), (5.0, 0.5), (20.0, 2.0)):
            entries.append((f"pid kp {kp:g} ki {ki:g}, right sign", "pid",
                            {"kp": kp, "ki": ki, "gains": {"w_pos": sign}}))
        entries.append(("pid direction auto", "pid", {"kp": 5.0, "ki": 0.5, "direction": "auto"}))
        for label, name, params in entries:
            r = [integrating_plant(name, params, sign, s, args.steps)[0] for s in range(args.seeds)]
            print(f"  {label:28s} {np.mean(r):.4f}  [{' '.join(f'{x:.3f}' for x in r)}]")


if __name__ == "__main__":
    main()
