"""Partial statistics merge to what numpy computes over all valid rows at once."""

from __future__ import annotations

import numpy as np
import pytest

from vla_foundry.data.preprocessing import window_statistics
from vla_foundry.data.preprocessing.window_statistics import WindowStats


def random_windows(seed: int, n: int = 40, window: int = 5, dim: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.normal(seed, 1 + seed, size=(n, window, dim)).astype(np.float32)
    valid = rng.random((n, window)) > 0.25
    return values, valid


def partial(values: np.ndarray, valid: np.ndarray) -> WindowStats:
    stats = WindowStats(seed=0)
    for v, m in zip(values, valid):
        stats.add_sample({"f": v}, m)
    return stats


def test_merged_partials_equal_a_direct_computation_over_valid_rows():
    parts = [random_windows(s) for s in range(3)]
    merged = WindowStats(seed=0)
    for values, valid in parts:
        merged.merge(partial(values, valid))
    out = merged.to_json()["f"]
    values = np.concatenate([p[0] for p in parts]).astype(np.float64)
    valid = np.concatenate([p[1] for p in parts])
    rows = values[valid]  # (n_valid, D)
    np.testing.assert_allclose(out["mean"], rows.mean(0), rtol=1e-10)
    np.testing.assert_allclose(out["std"], rows.std(0), rtol=1e-10)
    np.testing.assert_allclose(out["min"], rows.min(0))
    np.testing.assert_allclose(out["max"], rows.max(0))
    assert out["count"] == valid.sum(0).tolist()
    for q in (1, 2, 5, 95, 98, 99):
        np.testing.assert_allclose(out[f"percentile_{q}"], np.percentile(rows, q, axis=0), rtol=1e-10)
    for t in range(values.shape[1]):
        at_t = values[valid[:, t], t]
        np.testing.assert_allclose(out["mean_per_timestep"][t], at_t.mean(0), rtol=1e-10)
        np.testing.assert_allclose(out["std_per_timestep"][t], at_t.std(0), rtol=1e-10)
        np.testing.assert_allclose(out["percentile_5_per_timestep"][t], np.percentile(at_t, 5, axis=0), rtol=1e-10)


def test_serialised_partials_merge_like_live_ones():
    values, valid = random_windows(1)
    live = partial(values, valid)
    restored = WindowStats.from_npz_dict(partial(values, valid).to_npz_dict())
    assert restored.to_json() == live.to_json()


def test_percentiles_beyond_the_sample_size_are_estimates_close_to_exact(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(window_statistics, "PERCENTILE_SAMPLE_SIZE", 500)
    rng = np.random.default_rng(0)
    merged = WindowStats(seed=0)
    all_rows = []
    for _ in range(8):
        values = rng.uniform(0, 1, size=(300, 1, 1))
        merged.merge(partial(values, np.ones((300, 1), bool)))
        all_rows.append(values[:, 0])
    out = merged.to_json()["f"]
    assert out["count"] == [2400]
    exact = np.percentile(np.concatenate(all_rows), 95, axis=0)
    assert abs(out["percentile_95"][0] - exact[0]) < 0.05
    np.testing.assert_allclose(out["mean"], np.concatenate(all_rows).mean(0), rtol=1e-10)


def test_fields_without_a_window_shape_are_not_counted():
    stats = WindowStats()
    stats.add_sample(
        {"f": np.ones((2, 1)), "intrinsics": np.eye(3)[None], "past_mask": np.ones(2, bool)}, np.ones(2, bool)
    )
    assert list(stats.to_json()) == ["f"]
