"""Spartan camera arrays stream from observations.npz one frame at a time, stored or compressed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vla_foundry.data.preprocessing.spartan_source import iter_npz_rows


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_rows_stream_in_order_with_the_array_shape(tmp_path: Path, save):
    images = np.random.default_rng(0).integers(0, 255, size=(5, 4, 6, 3), dtype=np.uint8)
    save(tmp_path / "obs.npz", cam0=images, other=np.zeros(3))
    shape, rows = iter_npz_rows(str(tmp_path / "obs.npz"), "cam0")
    assert shape == (5, 4, 6, 3)
    np.testing.assert_array_equal(np.stack(list(rows)), images)


def test_rows_keep_streaming_after_the_file_is_removed(tmp_path: Path):
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.savez(tmp_path / "obs.npz", cam0=images)
    _, rows = iter_npz_rows(str(tmp_path / "obs.npz"), "cam0")
    (tmp_path / "obs.npz").unlink()
    np.testing.assert_array_equal(np.stack(list(rows)), images)
