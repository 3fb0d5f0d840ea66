"""Views decoded without PIL (torchvision's JPEG decoder, a stream's frame arrays) are the pixels PIL gives."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vla_foundry.data.processors.images import decode_planar


def jpeg(image: np.ndarray, quality: int = 90, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).convert(mode).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def camera_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A gradient with noise: every DCT block has detail, so decoders that differ would show it."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 255, h * w * 3).reshape(h, w, 3)
    return (ramp + rng.normal(0, 25, (h, w, 3))).clip(0, 255).astype(np.uint8)


def pil_planar(data: bytes) -> np.ndarray:
    """(3, H, W) as PIL decodes it, channel planes taken apart by numpy."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).transpose(2, 0, 1)


@pytest.mark.parametrize(("quality", "mode"), [(95, "RGB"), (60, "RGB"), (90, "L")])
def test_a_jpeg_decodes_to_the_pixels_pil_gives(quality: int, mode: str):
    data = jpeg(camera_image(), quality, mode)
    np.testing.assert_array_equal(decode_planar(data, (48, 64)), pil_planar(data))


def test_a_frame_array_is_its_channel_planes():
    frame = camera_image(seed=1)
    np.testing.assert_array_equal(decode_planar(frame, None), np.stack([frame[..., c] for c in range(3)]))


def test_another_size_or_format_is_left_to_pil():
    assert decode_planar(jpeg(camera_image()), (32, 32)) is None
    assert decode_planar(camera_image(), (32, 32)) is None
    png = io.BytesIO()
    Image.fromarray(camera_image()).save(png, "PNG")
    assert decode_planar(png.getvalue(), None) is None
    assert decode_planar(b"\xff\xd8 not really a jpeg", None) is None
