"""The lowdim.npz reader returns exactly what numpy stores, for every array layout the writers produce."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from vla_foundry.data.robotics.npz import NpzArrays


@pytest.mark.parametrize("compressed", [False, True])
def test_arrays_round_trip_exactly(compressed):
    rng = np.random.default_rng(0)
    arrays = {
        "robot__actual__poses__left::panda__xyz": rng.normal(size=(16, 3)).astype(np.float32),
        "action": rng.normal(size=(16, 20)),
        "past_mask": np.array([True] + [False] * 15),
        "scalar": np.float64(3.5),
        "fortran": np.asfortranarray(rng.normal(size=(4, 3))),
        "camera_names": np.array(["scene_left_0", "wrist_left"]),
    }
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    npz = NpzArrays(buf.getvalue())
    assert sorted(npz.files) == sorted(arrays)
    for name, expected in arrays.items():
        got = npz[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected)


def test_missing_array_raises_key_error_with_its_name():
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(2))
    with pytest.raises(KeyError, match="'b'"):
        NpzArrays(buf.getvalue())["b"]


def test_object_arrays_are_refused():
    buf = io.BytesIO()
    np.savez(buf, o=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        NpzArrays(buf.getvalue())["o"]


def test_a_corrupt_member_is_reported_with_its_name():
    buf = io.BytesIO()
    np.savez(buf, action=np.arange(64, dtype=np.float64))
    data = bytearray(buf.getvalue())
    data[data.index(np.arange(64, dtype=np.float64).tobytes()) + 8] ^= 0xFF  # flip one bit pattern of the payload
    with pytest.raises(zipfile.BadZipFile, match="action.npy"):
        NpzArrays(bytes(data))["action"]


def test_an_archive_the_fast_reader_does_not_handle_is_read_by_zipfile():
    buf = io.BytesIO()
    np.savez(buf, a=np.arange(3))
    with zipfile.ZipFile(buf, "a") as z:
        z.comment = b"written by another tool"  # an archive comment moves the end-of-directory record
    npz = NpzArrays(buf.getvalue())
    np.testing.assert_array_equal(npz["a"], np.arange(3))


def test_bytes_that_are_not_a_zip_raise_bad_zip_file():
    with pytest.raises(zipfile.BadZipFile):
        NpzArrays(b"garbage")
