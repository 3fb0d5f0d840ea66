"""Reading arrays out of `lowdim.npz` members without the generic zip and `.npy` readers.

A sample's `lowdim.npz` is a small zip (one `.npy` member per field) read for every training sample, so the generic
path (`zipfile.ZipFile`, then `np.load`, which parses each `.npy` header with `ast.literal_eval`) costs more than the
arrays themselves. Here the zip's central directory is read with `struct`, members are sliced out of the bytes
(inflated with zlib when compressed, CRC checked like `zipfile` does), and `.npy` headers -- a fixed-form dict
(`{'descr': '<f4', 'fortran_order': False, 'shape': (16, 4), }`) that repeats from sample to sample -- are parsed
once per distinct header. Anything unusual (zip64 directories, other compression methods, object arrays, other
header forms) falls back to `zipfile` / numpy's own reader.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib

import numpy as np

_MAGIC = b"\x93NUMPY"
_HEADER = re.compile(
    r"\{'descr':\s*'(?P<descr>[^']+)',\s*'fortran_order':\s*(?P<fortran>True|False),\s*'shape':\s*\((?P<shape>[^)]*)\),?\s*\}"
)
# Zip records (APPNOTE.TXT 4.3): end of central directory, central directory entry, local file header.
_END = struct.Struct("<4s4H2LH")
_CENTRAL = struct.Struct("<4s6H3L5H2L")
_LOCAL = struct.Struct("<4s5H3L2H")
_END_SIG, _CENTRAL_SIG, _LOCAL_SIG = b"PK\x05\x06", b"PK\x01\x02", b"PK\x03\x04"
_STORED, _DEFLATED = 0, 8
_ZIP64_MARK = 0xFFFFFFFF

# Parsed `.npy` headers: header bytes -> (dtype, shape, element count, order, data offset), or None for "use
# np.load".
_ParsedHeader = tuple[np.dtype, tuple[int, ...], int, str, int]
_HEADER_CACHE: dict[bytes, _ParsedHeader | None] = {}
_HEADER_CACHE_MAX = 4096


class NpzArrays:
    """Lazy mapping name -> array over the bytes of an .npz file; a missing name raises KeyError(name).

    Bytes that are not a zip raise `zipfile.BadZipFile`; a corrupt member raises it when read.
    """

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._zip: zipfile.ZipFile | None = None
        # name (without .npy) -> (method, crc32, compressed size, size, local header offset)
        self._members = _read_central_directory(self._data)
        if self._members is None:
            self._zip = zipfile.ZipFile(io.BytesIO(data))
            self.files = [n[: -len(".npy")] for n in self._zip.namelist() if n.endswith(".npy")]
        else:
            self.files = list(self._members)

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def __getitem__(self, name: str) -> np.ndarray:
        if self._zip is not None:
            try:
                raw = self._zip.read(f"{name}.npy")
            except KeyError:
                raise KeyError(name) from None
            return parse_npy(raw)
        try:
            method, crc, compressed_size, size, offset = self._members[name]
        except KeyError:
            raise KeyError(name) from None
        sig, _, _, _, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack_from(self._data, offset)
        if sig != _LOCAL_SIG:
            raise zipfile.BadZipFile(f"member {name}.npy: bad local header")
        start = offset + _LOCAL.size + name_len + extra_len
        raw = self._data[start : start + compressed_size]
        if method == _DEFLATED:
            try:
                raw = zlib.decompress(raw, -15)
            except zlib.error as e:
                raise zipfile.BadZipFile(f"member {name}.npy: {e}") from None
        if len(raw) != size or zlib.crc32(raw) != crc:
            raise zipfile.BadZipFile(f"member {name}.npy: bad CRC-32 or size (corrupt)")
        return parse_npy(raw)


def _read_central_directory(data: memoryview) -> dict[str, tuple[int, int, int, int, int]] | None:
    """The `.npy` members of a plain zip, or None when the fast reader does not apply (zip64, archive comment,
    encryption, other compression methods, not a zip): the caller then uses `zipfile`."""
    if len(data) < _END.size:
        return None
    sig, _, _, _, count, dir_size, dir_offset, comment_len = _END.unpack_from(data, len(data) - _END.size)
    if sig != _END_SIG or comment_len or dir_offset == _ZIP64_MARK or dir_offset + dir_size > len(data):
        return None
    members: dict[str, tuple[int, int, int, int, int]] = {}
    pos = dir_offset
    for _ in range(count):
        if pos + _CENTRAL.size > len(data):
            return None
        (sig, _, _, flags, method, _, _, crc, csize, size, name_len, extra_len, comment_len, _, _, _, offset) = (
            _CENTRAL.unpack_from(data, pos)
        )
        if sig != _CENTRAL_SIG or flags & 1 or method not in (_STORED, _DEFLATED) or _ZIP64_MARK in (csize, size):
            return None
        name = bytes(data[pos + _CENTRAL.size : pos + _CENTRAL.size + name_len]).decode("utf-8")
        if name.endswith(".npy"):
            members[name[: -len(".npy")]] = (method, crc, csize, size, offset)
        pos += _CENTRAL.size + name_len + extra_len + comment_len
    return members


def _parse_header(header: bytes) -> _ParsedHeader | None:
    """(dtype, shape, count, order, data offset) of a `.npy` prefix (magic .. end of header dict), None if
    unusual."""
    if header[:6] != _MAGIC:
        return None
    start = 10 if header[6] == 1 else 12
    match = _HEADER.match(header[start:].decode("latin1"))
    if not match or "O" in match["descr"]:
        return None
    shape = tuple(int(x) for x in match["shape"].replace(" ", "").split(",") if x)
    order = "F" if match["fortran"] == "True" else "C"
    count = int(np.prod(shape)) if shape else 1
    return np.dtype(match["descr"]), shape, count, order, len(header)


def parse_npy(raw: bytes | memoryview) -> np.ndarray:
    """The array of `.npy` bytes (format versions 1-3); pickled (object) arrays are refused."""
    if len(raw) >= 12 and raw[:6] == _MAGIC:
        if raw[6] == 1:
            end = 10 + int.from_bytes(raw[8:10], "little")
        else:
            end = 12 + int.from_bytes(raw[8:12], "little")
        header = bytes(raw[:end])
        try:
            parsed = _HEADER_CACHE[header]
        except KeyError:
            parsed = _parse_header(header)
            if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
                _HEADER_CACHE.clear()
            _HEADER_CACHE[header] = parsed
        if parsed is not None:
            dtype, shape, count, order, offset = parsed
            return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape, order=order)
    return np.load(io.BytesIO(raw), allow_pickle=False)
