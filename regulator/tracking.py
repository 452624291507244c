"""Tracking-quality figures of an entropy trajectory against its target (numpy only).

Used by ``regulator bench``'s leaderboard and by the trainer's ``summary.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


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


def project_into_band(target: Sequence[float], lo: Sequence[float], hi: Sequence[float]) -> np.ndarray:
    """The target clipped, step by step, into the reachable band [lo, hi] (NaN bounds: no limit)."""
    t = np.asarray(target, dtype=float)
    lo_a = np.nan_to_num(np.asarray(lo, dtype=float), nan=-np.inf)
    hi_a = np.nan_to_num(np.asarray(hi, dtype=float), nan=np.inf)
    return np.minimum(np.maximum(t, lo_a), hi_a)


def feasible_tracking(entropy: Sequence[float], target: Sequence[float], lo: Sequence[float],
                      hi: Sequence[float], burn_in: int = 0, ema_alpha: float = 0.6) -> dict[str, float]:
    """Tracking scored against what the knobs can reach.

    ``lo`` / ``hi`` are the fastest and slowest open-loop entropy paths under the knob bounds
    (``envs.band``). The target is projected into [lo, hi]; ``rmse_feasible`` is the RMSE of the
    EMA-smoothed entropy against that projection after ``burn_in``, ``rmse_feasible_rel`` the same
    over the mean projected target, and ``out_of_reach`` the share of those steps whose target lay
    outside the band (no controller is blamed for physics; no infeasible target counts as tracked).
    """
    h = np.asarray(entropy, dtype=float)
    n = min(len(h), len(target), len(lo), len(hi))
    h, t = h[:n], np.asarray(target, dtype=float)[:n]
    proj = project_into_band(t, lo[:n], hi[:n])
    sl = slice(min(burn_in, max(n - 1, 0)), None)
    err = (ema(h, ema_alpha) - proj)[sl]
    ok = np.isfinite(err)
    rmse = float(np.sqrt(np.mean(err[ok] ** 2))) if ok.any() else math.nan
    mean_proj = float(np.nanmean(proj[sl])) if n else math.nan
    outside = np.abs(t[sl] - proj[sl]) > 1e-12
    return {
        "rmse_feasible": rmse,
        "rmse_feasible_rel": rmse / mean_proj if mean_proj and math.isfinite(mean_proj) else math.nan,
        "out_of_reach": float(np.mean(outside)) if outside.size else math.nan,
    }
