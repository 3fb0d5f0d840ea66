"""Reading arrays out of `lowdim.npz` members without numpy's generic header parser.

`np.load` parses every `.npy` header with `ast.literal_eval`, which dominates the cost of small arrays. The header
is a fixed-form dict (`{'descr': '<f4', 'fortran_order': False, 'shape': (16, 4), }`), read here with a regular
expression; anything unusual (object arrays, other header forms) falls back to numpy's own reader.
"""

from __future__ import annotations

import io
import re
import zipfile

import numpy as np

_MAGIC = b"\x93NUMPY"
_HEADER = re.compile(
    r"\{'descr':\s*'(?P<descr>[^']+)',\s*'fortran_order':\s*(?P<fortran>True|False),\s*'shape':\s*\((?P<shape>[^)]*)\),?\s*\}"
)


class NpzArrays:
    """Lazy mapping name -> array over the bytes of an .npz file; a missing name raises KeyError(name)."""

    def __init__(self, data: bytes) -> None:
        self._zip = zipfile.ZipFile(io.BytesIO(data))
        self.files = [n[: -len(".npy")] for n in self._zip.namelist() if n.endswith(".npy")]

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            raw = self._zip.read(f"{name}.npy")
        except KeyError:
            raise KeyError(name) from None
        return parse_npy(raw)


def parse_npy(raw: bytes) -> np.ndarray:
    """The array of `.npy` bytes (format versions 1-3); pickled (object) arrays are refused."""
    if raw[:6] == _MAGIC:
        major = raw[6]
        if major == 1:
            start, length = 10, int.from_bytes(raw[8:10], "little")
        else:
            start, length = 12, int.from_bytes(raw[8:12], "little")
        match = _HEADER.match(raw[start : start + length].decode("latin1"))
        if match and "O" not in match["descr"]:
            dtype = np.dtype(match["descr"])
            shape = tuple(int(x) for x in match["shape"].replace(" ", "").split(",") if x)
            count = int(np.prod(shape)) if shape else 1
            arr = np.frombuffer(raw, dtype=dtype, count=count, offset=start + length)
            return arr.reshape(shape, order="F" if match["fortran"] == "True" else "C")
    return np.load(io.BytesIO(raw), allow_pickle=False)
