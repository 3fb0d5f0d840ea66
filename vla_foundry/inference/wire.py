"""The policy server's two wire formats (docs/formats.md §7), with the limits checked before anything is parsed.

Binary (`application/x-vla-foundry`): `VLAF`, a little-endian uint32 header length, a JSON header, then the raw
bytes of every array. The header holds the message tree with arrays replaced by `{"__array__": i}` and, per array,
its dtype, shape and byte offset: no pickle, and no copy of the arrays on either side.

JSON (`application/json`): the same tree as plain JSON. Arrays are nested lists; in a request, a camera frame may
also be a base64 PNG or JPEG string. Any HTTP client can speak it; it is slower and larger than the binary format.

A JSON text (the binary header, or a JSON body) is checked for size, value count and nesting depth on its bytes
before it is parsed: the parser would otherwise spend seconds and gigabytes on a body of a few megabytes.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import struct
from typing import Any

import numpy as np

MAGIC = b"VLAF"
CONTENT_TYPE = "application/x-vla-foundry"
JSON_CONTENT_TYPE = "application/json"
_ALLOWED_DTYPES = {"uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64", "bool"}
# The binary header is metadata (the arrays travel as raw bytes): a batch of 64 observations with 4 frames each
# needs about 30 kB and 3,000 values.
MAX_HEADER_BYTES = 1 << 20
MAX_HEADER_VALUES = 50_000
# A JSON body carries its arrays as nested lists: a 224 x 224 RGB frame is about 200,000 values (lists and
# commas); 2,000,000 values cost at most about 150 MB while parsed. Larger frames travel better as base64 PNG.
MAX_JSON_VALUES = 2_000_000
MAX_JSON_DEPTH = 32
# A base64 frame may decode to at most this many pixels (a 4K frame); a small PNG can describe a huge image.
MAX_FRAME_PIXELS = 3840 * 2160
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_IMAGE_FORMATS = {"PNG", "JPEG"}


class WireFormatError(ValueError):
    """A message that is not in the policy server's format, or one over its limits."""


class TooLargeError(WireFormatError):
    """A message that is well formed but larger than the server accepts (answered 413)."""


def check_json_text(text: bytes | bytearray, what: str, max_values: int, max_depth: int = MAX_JSON_DEPTH) -> None:
    """WireFormatError unless the JSON `text` holds at most `max_values` values and nests at most `max_depth`
    deep. Works on the bytes (strings masked, brackets and commas counted), so nothing is built before it passes.

    Each list or object counts one, and so does each comma between items: `[1, 2, 3]` counts 3, `[[], []]` 4."""
    skeleton = _JSON_STRING.sub(b'""', text)  # commas and brackets inside strings are not structure
    opened = skeleton.count(b"[") + skeleton.count(b"{")
    values = opened + skeleton.count(b",")
    if values > max_values:
        raise WireFormatError(
            f"{what} holds more than {max_values:,} JSON values ({values:,} lists, objects and commas); "
            "send large arrays as binary arrays (application/x-vla-foundry) or frames as base64 PNG/JPEG"
        )
    closed = skeleton.count(b"]") + skeleton.count(b"}")
    if closed != opened:
        raise WireFormatError(f"{what} is not JSON: {opened} brackets opened, {closed} closed")
    # Depth = the running sum of +1 per opening and -1 per closing bracket, over the brackets alone.
    brackets = np.frombuffer(skeleton.translate(None, _NOT_BRACKETS), dtype=np.uint8)
    if brackets.size:
        # '[' 0x5B and '{' 0x7B have (b & 6) == 2; ']' 0x5D and '}' 0x7D have (b & 6) == 4.
        depth = int(np.cumsum(3 - (brackets & 6).astype(np.int32)).max())
        if depth > max_depth:
            raise WireFormatError(f"{what} nests {depth} lists/objects deep; at most {max_depth} are accepted")


_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def parse_json_text(text: bytes | bytearray, what: str, max_values: int) -> Any:
    """`check_json_text`, then the parsed JSON; WireFormatError naming `what` for anything that is not JSON."""
    check_json_text(text, what, max_values)
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise WireFormatError(f"{what} is not JSON: {e}") from None


def encode_message(obj: Any) -> bytearray:
    """Nested dicts / lists / scalars / strings with numpy arrays -> bytes (each array copied once, into place)."""
    arrays: list[dict] = []
    chunks: list[np.ndarray] = []
    offset = 0

    def walk(x: Any) -> Any:
        nonlocal offset
        if isinstance(x, np.ndarray):
            data = np.ascontiguousarray(x)
            if data.dtype.name not in _ALLOWED_DTYPES:
                raise WireFormatError(f"array dtype {data.dtype} cannot be sent; use one of {sorted(_ALLOWED_DTYPES)}")
            arrays.append(
                {"dtype": data.dtype.name, "shape": list(data.shape), "offset": offset, "nbytes": data.nbytes}
            )
            chunks.append(data)
            offset += data.nbytes
            return {"__array__": len(arrays) - 1}
        if isinstance(x, dict):
            return {str(k): walk(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [walk(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        return x

    tree = walk(obj)
    header = json.dumps({"tree": tree, "arrays": arrays}).encode("utf-8")
    start = 8 + len(header)
    out = bytearray(start + offset)
    out[:8] = MAGIC + struct.pack("<I", len(header))
    out[8:start] = header
    for spec, data in zip(arrays, chunks):
        target = np.frombuffer(out, dtype=np.uint8, count=spec["nbytes"], offset=start + spec["offset"])
        target[:] = data.reshape(-1).view(np.uint8)
    return out


def decode_message(data: bytes | bytearray) -> Any:
    """The inverse of `encode_message`. Arrays are views into `data` (no copy): writable when it is a bytearray.

    Anything malformed (a header over MAX_HEADER_BYTES / MAX_HEADER_VALUES / MAX_JSON_DEPTH, a header that is not
    the expected JSON, array specs that do not fit the body, an array reference to no array) raises WireFormatError
    naming what is wrong, before the header is parsed where it can be; nothing is allocated beyond `data`."""
    if len(data) < 8 or data[:4] != MAGIC:
        raise WireFormatError("not a policy-server message (it must start with b'VLAF' and a header length)")
    (n,) = struct.unpack("<I", data[4:8])
    if n > MAX_HEADER_BYTES:
        raise WireFormatError(
            f"message header of {n:,} bytes exceeds the {MAX_HEADER_BYTES:,}-byte limit; the header holds only the "
            "message tree, arrays travel as raw bytes after it"
        )
    if 8 + n > len(data):
        raise WireFormatError(f"message header of {n} bytes runs past the {len(data)}-byte message")
    header = parse_json_text(data[8 : 8 + n], "message header", MAX_HEADER_VALUES)
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise WireFormatError("message header must be a JSON object with 'tree' and a list 'arrays'")
    body = memoryview(data)[8 + n :]
    arrays = [_decode_array(spec, body, i) for i, spec in enumerate(header.get("arrays", []))]

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            if set(x) == {"__array__"}:
                index = x["__array__"]
                if not isinstance(index, int) or not 0 <= index < len(arrays):
                    raise WireFormatError(f"array reference {index!r} names no array of the message")
                return arrays[index]
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return walk(header.get("tree"))


def _decode_array(spec: Any, body: memoryview, i: int) -> np.ndarray:
    """One array of a message from its header spec {dtype, shape, offset, nbytes}, checked against the body."""
    if not isinstance(spec, dict) or spec.get("dtype") not in _ALLOWED_DTYPES:
        dtype = spec.get("dtype") if isinstance(spec, dict) else spec
        raise WireFormatError(f"array {i}: dtype {dtype!r} is not allowed; use one of {sorted(_ALLOWED_DTYPES)}")
    shape, offset, nbytes = spec.get("shape"), spec.get("offset"), spec.get("nbytes")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise WireFormatError(f"array {i}: shape {shape!r} must be a list of non-negative integers")
    if not (isinstance(offset, int) and isinstance(nbytes, int) and offset >= 0 and nbytes >= 0):
        raise WireFormatError(f"array {i}: offset {offset!r} and nbytes {nbytes!r} must be non-negative integers")
    itemsize = np.dtype(spec["dtype"]).itemsize
    if int(np.prod(shape, dtype=np.int64)) * itemsize != nbytes:
        raise WireFormatError(f"array {i}: shape {shape} of {spec['dtype']} does not hold {nbytes} bytes")
    if offset + nbytes > len(body):
        raise WireFormatError(f"array {i} of {nbytes} bytes at offset {offset} runs past the message")
    return np.frombuffer(body[offset : offset + nbytes], dtype=spec["dtype"]).reshape(shape)


def encode_json(obj: Any) -> bytes:
    """A reply as JSON: numpy arrays become nested lists, numpy scalars plain numbers."""

    def default(x: Any) -> Any:
        if isinstance(x, (np.ndarray, np.generic)):
            return x.tolist()
        raise TypeError(f"{type(x).__name__} is not JSON serialisable")

    return json.dumps(obj, default=default).encode("utf-8")


def decode_json_request(text: bytes | bytearray, max_frame_bytes: int) -> Any:
    """A JSON /predict body -> the request with every camera frame as a uint8 (H, W, 3) array.

    Frames are `observation.images[camera][i]` (of each observation, when `observation` is a list): a nested list
    of integers 0..255, or a base64 PNG / JPEG string (a `data:image/...;base64,` prefix is allowed). The decoded
    frames of one request may hold at most `max_frame_bytes` bytes (TooLargeError); other fields stay JSON values
    (the policy checks them)."""
    request = parse_json_text(text, "JSON request body", MAX_JSON_VALUES)
    if not isinstance(request, dict):
        return request  # parse_predict_request names what a request must be
    observations = request.get("observation")
    budget = [max_frame_bytes]
    if isinstance(observations, dict):
        _decode_frames(observations, "observation", budget)
    elif isinstance(observations, list):
        for i, obs in enumerate(observations):
            if isinstance(obs, dict):
                _decode_frames(obs, f"observation[{i}]", budget)
    return request


def _decode_frames(obs: dict, where: str, budget: list[int]) -> None:
    images = obs.get("images")
    if not isinstance(images, dict):
        return  # Policy.check_observation names the field
    for cam, frames in images.items():
        if isinstance(frames, list):
            images[cam] = [
                _decode_frame(f, f"{where}['images'][{cam!r}][{i}]", budget) if isinstance(f, (str, list)) else f
                for i, f in enumerate(frames)
            ]


def _decode_frame(frame: str | list, where: str, budget: list[int]) -> np.ndarray:
    """One JSON frame -> uint8 (H, W, 3); WireFormatError naming `where` when it is not an image."""
    if isinstance(frame, list):
        try:
            arr = np.asarray(frame)
        except ValueError:
            raise WireFormatError(f"{where} is not a rectangular (H, W, 3) list of integers 0..255") from None
        if arr.size and (arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() > 255):
            raise WireFormatError(f"{where} must hold integers 0..255 (got {arr.dtype} values); or send base64 PNG")
        arr = arr.astype(np.uint8)
    else:
        from PIL import Image

        data = frame.split(",", 1)[1] if frame.startswith("data:") else frame
        try:
            raw = base64.b64decode(data, validate=True)
            image = Image.open(io.BytesIO(raw))
        except (binascii.Error, ValueError, OSError) as e:
            raise WireFormatError(f"{where} is neither a nested list nor a base64 PNG/JPEG image ({e})") from None
        if image.format not in _IMAGE_FORMATS:
            raise WireFormatError(f"{where} is a {image.format} image; send PNG or JPEG")
        w, h = image.size  # read from the image header: nothing is decoded yet
        if w * h > MAX_FRAME_PIXELS:
            raise TooLargeError(f"{where} is {w}x{h} pixels; at most {MAX_FRAME_PIXELS:,} pixels per frame")
        _spend(budget, w * h * 3, where)
        return np.asarray(image.convert("RGB"))
    _spend(budget, arr.nbytes, where)
    return arr


def _spend(budget: list[int], nbytes: int, where: str) -> None:
    budget[0] -= nbytes
    if budget[0] < 0:
        raise TooLargeError(f"the decoded frames exceed the server's request limit (--max_request_mb) at {where}")
