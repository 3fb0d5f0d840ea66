"""Low-dimensional field statistics (stats.json, docs/formats.md §3): compute, load, crop to a window, merge.

Standard deviations are population (ddof=0) statistics over the rows valid under the sample masks. Merging several
datasets is exact for mean/std/min/max (count-weighted means, pooled variance) and approximate for percentiles
(count-weighted mean of each dataset's percentile), which the merged entry flags with `percentiles_approximate`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PERCENTILES = (1, 2, 5, 95, 98, 99)
GLOBAL_KEYS = ("mean", "std", "min", "max", *(f"percentile_{p}" for p in PERCENTILES))
Stats = dict[str, dict[str, Any]]


class StatsError(ValueError):
    """stats.json is missing, malformed, or lacks a requested field; names the file and the field."""


def compute_field_stats(values: np.ndarray, valid: np.ndarray) -> dict[str, Any]:
    """Statistics of one field from windows `values` (N, T, D) and row validity `valid` (N, T) bool."""
    values = np.asarray(values, dtype=np.float64)
    valid = np.asarray(valid, dtype=bool)
    _, t, d = values.shape
    rows = values[valid]  # (n_valid, D)
    entry: dict[str, Any] = {
        "mean": rows.mean(0).tolist(),
        "std": rows.std(0).tolist(),
        "min": rows.min(0).tolist(),
        "max": rows.max(0).tolist(),
        "count": valid.sum(0).astype(int).tolist(),
    }
    for p in PERCENTILES:
        entry[f"percentile_{p}"] = np.percentile(rows, p, axis=0).tolist()
    per_t: dict[str, list] = {k: [] for k in GLOBAL_KEYS}
    for i in range(t):
        col = values[valid[:, i], i]  # (n_i, D)
        if len(col) == 0:
            # No valid row at this timestep: fall back to the global statistics so normalisation stays finite.
            for k in GLOBAL_KEYS:
                per_t[k].append(entry[k])
            continue
        per_t["mean"].append(col.mean(0).tolist())
        per_t["std"].append(col.std(0).tolist())
        per_t["min"].append(col.min(0).tolist())
        per_t["max"].append(col.max(0).tolist())
        for p in PERCENTILES:
            per_t[f"percentile_{p}"].append(np.percentile(col, p, axis=0).tolist())
    for k in GLOBAL_KEYS:
        entry[f"{k}_per_timestep"] = per_t[k]
    assert len(entry["mean"]) == d
    return entry


def load_stats(path: str) -> Stats:
    """Read a stats.json (local or s3://); every field entry needs at least mean/std/min/max lists."""
    from vla_foundry.structured_files import read_structured_file

    stats = read_structured_file(
        path,
        StatsError,
        fix="re-run preprocessing to rewrite it (or restore the run's copy); it holds one entry per low-dim field",
        missing=f"{path} does not exist; robotics datasets need stats.json (docs/formats.md §3)",
    )
    stats = {k: v for k, v in stats.items() if isinstance(v, dict)}
    bad = nonfinite_stats(stats)
    if bad:
        raise StatsError(
            f"{path} holds NaN/Inf statistics ({'; '.join(bad)}): every normalised value would be NaN; re-run "
            "preprocessing on finite data (its fail_on_nan check names the episodes)"
        )
    return stats


def nonfinite_stats(stats: Stats) -> list[str]:
    """Every "<field>: <key>" of `stats` whose global mean/std/min/max holds a NaN or Inf (or a non-number)."""
    bad = []
    for name, entry in stats.items():
        for key in ("mean", "std", "min", "max"):
            if key not in entry:
                continue
            try:
                finite = bool(np.isfinite(np.asarray(entry[key], dtype=np.float64)).all())
            except (TypeError, ValueError):
                finite = False
            if not finite:
                bad.append(f"{name}: {key}")
    return bad


def field_dim(stats: Stats, name: str, where: str) -> int:
    """Width D of field `name`; raises StatsError naming `where` and the available fields when absent."""
    entry = stats.get(name)
    if entry is None or "mean" not in entry:
        raise StatsError(
            f"{where} has no statistics for field {name!r}; available fields: {', '.join(sorted(stats)) or 'none'}"
        )
    return len(entry["mean"])


def crop_stats_window(stats: Stats, stored_past: int, past: int, future: int) -> Stats:
    """Keep the per-timestep rows of the training window (anchor at row `stored_past` of the stored window)."""
    lo, hi = stored_past - past, stored_past + future + 1
    out: Stats = {}
    for name, entry in stats.items():
        new = dict(entry)
        for key, value in entry.items():
            if key.endswith("_per_timestep") or key == "count":
                new[key] = value[lo:hi] if isinstance(value, list) and len(value) >= hi else value
        out[name] = new
    return out


def _total_count(entry: dict[str, Any]) -> float:
    count = entry.get("count")
    if count is None:
        raise StatsError("a stats entry without 'count' cannot be merged (counts weight the datasets)")
    return float(np.sum(count))


def merge_stats(all_stats: list[Stats], fields: list[str] | None = None) -> Stats:
    """Merge several datasets' stats: exact count-weighted mean, pooled std, elementwise min/max.

    Per-timestep entries merge with per-timestep counts (the windows must have been cropped to the same length).
    Percentiles are count-weighted means (approximate) and the result says so.
    """
    if len(all_stats) == 1:
        return {k: dict(v) for k, v in all_stats[0].items() if fields is None or k in fields}
    names = fields if fields is not None else sorted(set.intersection(*(set(s) for s in all_stats)))
    merged: Stats = {}
    for name in names:
        entries = [s[name] for s in all_stats]
        n = np.array([_total_count(e) for e in entries])  # (K,)
        out: dict[str, Any] = {}
        out.update(_merge_moments(entries, n, "mean", "std"))
        out["min"] = np.min([e["min"] for e in entries], axis=0).tolist()
        out["max"] = np.max([e["max"] for e in entries], axis=0).tolist()
        counts = [np.asarray(e["count"], dtype=np.float64) for e in entries]
        if all(len(c) == len(counts[0]) for c in counts):
            out["count"] = np.sum(counts, axis=0).astype(int).tolist()
            nt = np.stack(counts)  # (K, T)
            if all("mean_per_timestep" in e and "std_per_timestep" in e for e in entries):
                out.update(_merge_moments(entries, nt, "mean_per_timestep", "std_per_timestep"))
            for key in ("min_per_timestep", "max_per_timestep"):
                if all(key in e for e in entries):
                    op = np.min if key.startswith("min") else np.max
                    out[key] = op([e[key] for e in entries], axis=0).tolist()
            for p in PERCENTILES:
                key = f"percentile_{p}_per_timestep"
                if all(key in e for e in entries):
                    out[key] = _weighted_mean([e[key] for e in entries], nt).tolist()
        else:
            out["count"] = [int(n.sum())]
        for p in PERCENTILES:
            key = f"percentile_{p}"
            if all(key in e for e in entries):
                out[key] = _weighted_mean([e[key] for e in entries], n).tolist()
        out["percentiles_approximate"] = True
        merged[name] = out
    return merged


def _weighted_mean(values: list, weights: np.ndarray) -> np.ndarray:
    """Count-weighted mean over datasets; `values` (K, [T,] D), `weights` (K,) or (K, T)."""
    v = np.asarray(values, dtype=np.float64)
    w = weights.reshape(weights.shape + (1,) * (v.ndim - weights.ndim))
    return (v * w).sum(0) / np.maximum(w.sum(0), 1e-12)


def _merge_moments(entries: list[dict], weights: np.ndarray, mean_key: str, std_key: str) -> dict[str, list]:
    """Pooled mean and population std: var = sum n_k (std_k^2 + (mean_k - mean)^2) / sum n_k."""
    means = np.asarray([e[mean_key] for e in entries], dtype=np.float64)
    stds = np.asarray([e[std_key] for e in entries], dtype=np.float64)
    w = weights.reshape(weights.shape + (1,) * (means.ndim - weights.ndim))
    total = np.maximum(w.sum(0), 1e-12)
    mean = (means * w).sum(0) / total
    var = (w * (stds**2 + (means - mean) ** 2)).sum(0) / total
    return {mean_key: mean.tolist(), std_key: np.sqrt(var).tolist()}
