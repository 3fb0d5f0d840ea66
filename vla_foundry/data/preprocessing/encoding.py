"""Byte-level encoders of sample members (images as JPEG/PNG, npz without timestamps, JSON) and the image decoder.

Everything here is deterministic: the same input gives the same bytes (zip entries carry a fixed date), so
the same inputs and seed give byte-identical shards.
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import numpy as np

# Fixed zip entry date (the earliest a zip can hold) so npz bytes do not depend on when they were written.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG/WebP bytes -> uint8 (H, W, 3), decoded fully by PIL alone (no torch: the validator imports this and
    stays fast to start). Raises ValueError for undecodable bytes."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.array(img if img.mode == "RGB" else img.convert("RGB"))
    except Exception as e:
        raise ValueError(f"undecodable image ({e.__class__.__name__})") from None


def encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed .npz readable by np.load, with fixed entry dates (byte-reproducible)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(arrays):
            array_buf = io.BytesIO()
            np.lib.format.write_array(array_buf, np.asanyarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, array_buf.getvalue())
    return buf.getvalue()


def encode_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")
