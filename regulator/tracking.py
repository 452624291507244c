"""Tracking-quality figures of an entropy trajectory against its target (numpy only).

Used by ``regulator bench``'s leaderboard and by the trainer's ``summary.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

#: a target counts as out of reach where the feasible reference differs from it by more than
#: this share of it (the reference's rate limits come from noisy paths: finer lags are noise)
OUT_OF_REACH_TOL = 0.01
#: steps over which a measured path's rate at either end is averaged (its noise, not its
#: motion, sets a single step's slope)
EDGE_RATE_STEPS = 20.0


def ema(x: Sequence[float], alpha: float = 0.6) -> np.ndarray:
    """Exponential moving average y_t = alpha y_{t-1} + (1 - alpha) x_t, y_0 = x_0.

    ``alpha`` is the weight of the past, as the paper's "EMA 0.6" smoothing of entropy curves.
    """
    x = np.asarray(x, dtype=float)
    y = np.empty_like(x)
    acc = math.nan
    for i, v in enumerate(x):
        acc = v if i == 0 or not math.isfinite(acc) else alpha * acc + (1 - alpha) * v
        y[i] = acc
    return y


def tracking_summary(
    entropy: Sequence[float],
    target: Sequence[float],
    knobs: Mapping[str, Sequence[float]] | None = None,
    burn_in: int = 0,
    ema_alpha: float = 0.6,
    settle_band: float = 0.1,
) -> dict[str, float]:
    """RMSE (raw and EMA-smoothed) and MAE after ``burn_in`` steps, overshoot, settling step and
    knob total variation.

    overshoot: the largest excursion of entropy beyond the target on the side opposite to where
    it started (nats, 0 if none). settling step: first step after which the smoothed entropy stays
    within ``settle_band`` x target of the target (NaN if never). Non-finite points are skipped.
    """
    h = np.asarray(entropy, dtype=float)
    t = np.asarray(target, dtype=float)
    if h.shape != t.shape:
        raise ValueError(f"entropy and target lengths differ: {h.shape} vs {t.shape}")
    sm = ema(h, ema_alpha)
    sl = slice(min(burn_in, max(len(h) - 1, 0)), None)
    err, err_sm = (h - t)[sl], (sm - t)[sl]
    ok = np.isfinite(err)
    rmse = float(np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else math.nan
    ok_sm = np.isfinite(err_sm)
    rmse_sm = float(np.sqrt(np.mean(err_sm[ok_sm] ** 2))) if ok_sm.any() else math.nan
    mae = float(np.mean(np.abs(err[ok]))) if ok.any() else math.nan
    overshoot = 0.0
    if len(h) and math.isfinite(h[0] - t[0]):
        side = np.sign(h[0] - t[0])
        beyond = -side * (h - t)
        beyond = beyond[np.isfinite(beyond)]
        overshoot = float(max(beyond.max(initial=0.0), 0.0)) if side != 0 else 0.0
    inside = np.abs(sm - t) <= settle_band * np.maximum(np.abs(t), 1e-8)
    settling = math.nan
    if inside.size and inside[-1]:
        outside = np.nonzero(~inside)[0]
        settling = float(outside[-1] + 1) if outside.size else 0.0
    out = {
        "rmse": rmse,
        "rmse_ema": rmse_sm,
        "mae": mae,
        "overshoot": overshoot,
        "settling_step": settling,
        "mean_target": float(np.nanmean(t[sl])) if len(t) else math.nan,
    }
    tv = 0.0
    for series in (knobs or {}).values():
        k = np.asarray(series, dtype=float)
        k = k[np.isfinite(k)]
        tv += float(np.abs(np.diff(k)).sum()) if k.size > 1 else 0.0
    out["knob_tv"] = tv
    return out


class _Curve(NamedTuple):
    """A path's monotone fit: a piecewise-linear curve through its blocks' centres."""

    centres: np.ndarray
    """Step of each block's centre."""
    values: np.ndarray
    """Each block's mean level, strictly increasing."""
    first: float
    """Mean slope over the first ``EDGE_RATE_STEPS`` (the rate below the covered levels)."""
    last: float
    """Mean slope over the last ``EDGE_RATE_STEPS`` (the rate above them)."""


def _monotone_curve(path: np.ndarray) -> _Curve:
    """The least-squares non-decreasing fit of ``path`` (pool adjacent violators), as a
    piecewise-linear curve through its blocks' centres, with the slopes at its two ends.
    Noise averages out instead of ratcheting a running maximum up."""
    blocks: list[list[float]] = []  # [sum, count, first step]
    for i, y in enumerate(path):
        blocks.append([float(y), 1.0, float(i)])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            total, count, _ = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    centres = np.array([b[2] + (b[1] - 1) / 2 for b in blocks])
    values = np.array([b[0] / b[1] for b in blocks])
    if len(values) < 2:  # a plant seen rising nowhere rises 0
        return _Curve(centres, values, 0.0, 0.0)
    span = min(EDGE_RATE_STEPS, centres[-1] - centres[0])
    first = (float(np.interp(centres[0] + span, centres, values)) - values[0]) / span
    last = (values[-1] - float(np.interp(centres[-1] - span, centres, values))) / span
    return _Curve(centres, values, first, last)


def _one_step_on(curve: _Curve, level: float) -> tuple[float, float]:
    """(distance from ``level`` to the levels the curve covers, the level one step later).

    Inside the covered range the step follows the curve (a time shift); outside it, the
    curve's slope at the nearer end."""
    centres, values = curve.centres, curve.values
    if level < values[0]:
        return values[0] - level, level + curve.first
    if level > values[-1]:
        return level - values[-1], level + curve.last
    if len(values) < 2:
        return 0.0, level
    tau = float(np.interp(level, values, centres)) + 1.0
    if tau <= centres[-1]:
        return 0.0, float(np.interp(tau, centres, values))
    return 0.0, float(values[-1] + (tau - centres[-1]) * curve.last)


def _furthest_step(curves: Sequence[_Curve], level: float) -> float:
    """The furthest level one step from ``level`` along the curves measured nearest to it (the
    fastest of those that cover it)."""
    steps = [_one_step_on(c, level) for c in curves]
    nearest = min(d for d, _ in steps)
    return max(x for d, x in steps if d == nearest)


def project_into_band(target: Sequence[float], lo: Sequence[float], hi: Sequence[float],
                      rate_limited: bool = True, rises: Sequence[Sequence[float]] = (),
                      falls: Sequence[Sequence[float]] = ()) -> np.ndarray:
    """The closest path to ``target`` that the knobs can produce: the feasible reference.

    Each step the target is clipped into the reachable band [lo, hi] (NaN bounds: no limit).
    With ``rate_limited``, the reference also moves no faster than the plant did at the same
    level: from level r it falls at most as far in one step as the fastest path (``lo``, and
    any of ``falls``) fell where it passed r, and rises at most as far as the highest path
    (``hi``, and any of ``rises``: paths that climb from lower levels, e.g. after a descent)
    rose there. A step in the target thus becomes the fastest move the plant showed, not a
    jump no controller can make. Each path's rate is read off its monotone fit (noise
    averages out); a level no path passed takes the rate of the nearest level one did.
    """
    t = np.asarray(target, dtype=float)
    lo_a = np.nan_to_num(np.asarray(lo, dtype=float), nan=-np.inf)
    hi_a = np.nan_to_num(np.asarray(hi, dtype=float), nan=np.inf)
    proj = np.minimum(np.maximum(t, lo_a), hi_a)
    if not rate_limited or len(proj) < 2 or not (np.isfinite(lo_a).all() and np.isfinite(hi_a).all()):
        return proj

    def curves(paths: Sequence[Sequence[float]], sign: float) -> list[_Curve]:
        arrays = [sign * np.asarray(p, dtype=float) for p in paths]
        return [_monotone_curve(a[np.isfinite(a)]) for a in arrays if np.isfinite(a).any()]

    down = curves([lo_a, *falls], -1.0)  # descents, negated into rises
    up = curves([hi_a, *rises], 1.0)
    ref = proj.copy()
    for i in range(1, len(ref)):
        floor, ceiling = -_furthest_step(down, -ref[i - 1]), _furthest_step(up, ref[i - 1])
        ref[i] = min(max(min(max(proj[i], floor), ceiling), lo_a[i]), hi_a[i])
    return ref


def feasible_tracking(entropy: Sequence[float], target: Sequence[float], lo: Sequence[float],
                      hi: Sequence[float], burn_in: int = 0, ema_alpha: float = 0.6,
                      rate_limited: bool = True, rises: Sequence[Sequence[float]] = (),
                      falls: Sequence[Sequence[float]] = ()) -> dict[str, float]:
    """Tracking scored against what the knobs can reach.

    ``lo`` / ``hi`` are the fastest and slowest open-loop entropy paths under the knob bounds
    (``envs.band``); ``rises`` / ``falls`` further open-loop paths that measured how fast
    entropy moves from other levels. The target is projected into them (``project_into_band``:
    into [lo, hi] at each step, and with ``rate_limited`` moving no faster than the plant did
    at the same level). Band and rates are estimates from open-loop paths at the corners of the
    knob box (a policy held at a level for a while, or a closed loop mixing the corners, can move
    faster than any of them did), so a step where the entropy lies between the reference and
    the target itself counts as on track: the error is the distance to that interval. Beating
    the estimate towards the target is never an error; stopping short of the reference is.
    ``rmse_feasible`` is the RMSE of that error of the EMA-smoothed entropy after ``burn_in``,
    ``rmse_feasible_rel`` the same over the mean reference, and ``out_of_reach`` the share of
    those steps whose target the reference moved by more than ``OUT_OF_REACH_TOL`` of it (no
    controller is blamed for physics; no infeasible target counts as tracked).
    """
    h = np.asarray(entropy, dtype=float)
    n = min(len(h), len(target), len(lo), len(hi))
    h, t = h[:n], np.asarray(target, dtype=float)[:n]
    ref = project_into_band(t, lo[:n], hi[:n], rate_limited, rises, falls)
    sl = slice(min(burn_in, max(n - 1, 0)), None)
    sm = ema(h, ema_alpha)
    err = (sm - np.clip(sm, np.minimum(ref, t), np.maximum(ref, t)))[sl]
    ok = np.isfinite(err)
    rmse = float(np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else math.nan
    mean_ref = float(np.nanmean(ref[sl])) if n else math.nan
    outside = np.abs(t[sl] - ref[sl]) > OUT_OF_REACH_TOL * np.abs(t[sl])
    return {
        "rmse_feasible": rmse,
        "rmse_feasible_rel": rmse / mean_ref if mean_ref and math.isfinite(mean_ref) else math.nan,
        "out_of_reach": float(np.mean(outside)) if outside.size else math.nan,
    }
