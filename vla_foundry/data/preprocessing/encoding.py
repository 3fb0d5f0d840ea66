"""Byte-level encoders of sample members: images (resize + JPEG/PNG), npz without timestamps, JSON.

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


def resize_image(image: np.ndarray, size: tuple[int, int] | list[int] | None, mode: str) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 at size [h, w] by center_crop, fit (letterbox) or stretch."""
    if size is None or tuple(image.shape[:2]) == tuple(size):
        return image
    from PIL import Image

    out_h, out_w = int(size[0]), int(size[1])
    pil = Image.fromarray(image)
    in_w, in_h = pil.size
    if mode == "stretch":
        return np.asarray(pil.resize((out_w, out_h), Image.BILINEAR))
    if mode == "center_crop":
        scale = max(out_w / in_w, out_h / in_h)
    elif mode == "fit":
        scale = min(out_w / in_w, out_h / in_h)
    else:
        raise ValueError(f"resize mode {mode!r} is not one of center_crop, fit, stretch")
    new_w, new_h = max(1, round(in_w * scale)), max(1, round(in_h * scale))
    pil = pil.resize((new_w, new_h), Image.BILINEAR)
    if mode == "center_crop":
        left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
        return np.asarray(pil.crop((left, top, left + out_w, top + out_h)))
    canvas = np.zeros((out_h, out_w, 3), np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    canvas[top : top + new_h, left : left + new_w] = np.asarray(pil)
    return canvas


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """PNG/JPEG/... bytes -> (H, W, 3) uint8."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


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
