"""Image decoding, resize/crop, normalisation and augmentation shared by the image pipelines.

Images travel as uint8 arrays (H, W, 3) until the end, then as float tensors (3, H, W) in [0, 1]; robotics batches
stay uint8 (B, N, 3, H, W) until the consumer converts them on its device with `images_to_unit_float`.
Augmentation draws its parameters once per sample and applies them to every view of that sample, so several
cameras of one timestep stay consistent.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch

# The one image decoder, re-exported for the pipelines: it lives with the encoders, free of torch.
from vla_foundry.data.preprocessing.encoding import decode_image  # noqa: F401

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def open_image(data: bytes | np.ndarray):
    """JPEG/PNG/WebP bytes (or an already decoded (H, W, 3) uint8 frame, as a stream delivers it) -> the PIL image
    in RGB mode. Raises ValueError for undecodable bytes."""
    from PIL import Image

    if isinstance(data, np.ndarray):
        if data.ndim != 3 or data.shape[2] != 3 or data.dtype != np.uint8:
            raise ValueError(f"a decoded frame must be (H, W, 3) uint8, got {data.dtype} {data.shape}")
        return Image.fromarray(data)
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
        return img if img.mode == "RGB" else img.convert("RGB")
    except Exception as e:
        raise ValueError(f"undecodable image ({e.__class__.__name__})") from None


def decode_planar(data: bytes | np.ndarray, size: tuple[int, int] | None) -> np.ndarray | None:
    """A stored view -> uint8 (3, H, W) without PIL, when that is exact: an (H, W, 3) uint8 frame (as a stream
    delivers it) or JPEG bytes (decoded by torchvision's libjpeg-turbo, the same pixels PIL's decoder gives), whose
    size is already `size` ((H, W); None: any). None otherwise (another format, another size, undecodable), so
    the caller takes the PIL path.

    PIL's JPEG reader parses the headers in Python and hands the pixels back band by band: for the small camera
    images of robot datasets that costs more than the decoding itself."""
    if isinstance(data, np.ndarray):
        frame = data.ndim == 3 and data.shape[2] == 3 and data.dtype == np.uint8
        if frame and (size is None or tuple(data.shape[:2]) == tuple(size)):
            return data.transpose(2, 0, 1)  # (3, H, W) view; copied by the caller
        return None
    if data[:2] != b"\xff\xd8":  # not a JPEG (PNG, WebP)
        return None
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        chw = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB).numpy()
    except RuntimeError:
        return None  # PIL reports what is wrong with it
    if size is not None and tuple(chw.shape[1:]) != tuple(size):
        return None
    return chw


def planar_uint8(img, out: np.ndarray | None = None) -> np.ndarray:
    """RGB PIL image -> uint8 (3, H, W) (written into `out` when given, e.g. a row of a batch buffer), each channel
    plane packed by PIL and copied once.

    Cheaper than `np.asarray(img)` followed by a channels-first transpose: PIL writes each band contiguously, so
    neither side does a per-pixel strided gather.
    """
    w, h = img.size
    if out is None:
        out = np.empty((3, h, w), dtype=np.uint8)
    elif out.shape != (3, h, w) or out.dtype != np.uint8:
        raise ValueError(f"output array is {out.dtype} {out.shape}; the image needs uint8 (3, {h}, {w})")
    for c, band in enumerate("RGB"):
        out[c] = np.frombuffer(img.tobytes("raw", band), dtype=np.uint8).reshape(h, w)
    return out


def resize_image(image: np.ndarray, size: tuple[int, int] | list[int] | None, mode: str) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) uint8 at size [h, w] by center_crop, fit (letterbox) or stretch (bilinear).

    The resize preprocessing stores camera images with; inference brings raw frames to the stored size with it too,
    so a policy sees frames prepared exactly as its training data was.
    """
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


def resize_shorter_and_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the shorter side is `size` (bicubic), then crop the centre `size` x `size` square."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    from PIL import Image

    return np.asarray(cover_and_center_crop_pil(Image.fromarray(image), size))


def cover_and_center_crop_pil(img, height: int, width: int | None = None):
    """PIL image -> scaled (bicubic) to cover (height, width) (square when width is None), centre cropped; returned
    as is when it already has that size."""
    from PIL import Image

    width = height if width is None else width
    w, h = img.size
    if (w, h) == (width, height):
        return img
    scale = max(height / h, width / w)
    new_w, new_h = max(width, round(w * scale)), max(height, round(h * scale))
    top, left = (new_h - height) // 2, (new_w - width) // 2
    return img.resize((new_w, new_h), Image.Resampling.BICUBIC).crop((left, top, left + width, top + height))


def to_float_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 (3, H, W) in [0, 1]."""
    return unit_float_tensor(image.transpose(2, 0, 1))


def unit_float_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 array of any layout -> float32 tensor of the same shape in [0, 1] (numpy's vectorised division: the
    same values as `images_to_unit_float`)."""
    return torch.from_numpy(np.divide(image, np.float32(255.0), dtype=np.float32))


def to_uint8_tensor(image: torch.Tensor) -> torch.Tensor:
    """float (..., H, W) in [0, 1] -> uint8, rounded to the nearest level (exact inverse of `to_float_tensor`)."""
    return image.mul(255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def images_to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (any shape) -> float32 in [0, 1], computed where the tensor lives (the GPU for a training
    batch); float images are returned unchanged, so callers may pass either.

    Dividing by a 0-dim tensor on the images' device (not a Python scalar, which CUDA turns into a multiplication
    by the reciprocal) keeps the values bit-identical to numpy's `uint8 / float32(255)` on the CPU; it is filled on
    the device (`torch.full`), so no host-to-device copy synchronises the stream.
    """
    if images.dtype == torch.uint8:
        return images.to(torch.float32) / torch.full((), 255.0, dtype=torch.float32, device=images.device)
    if not images.is_floating_point():
        raise TypeError(f"images must be uint8 (0..255) or float in [0, 1]; got {images.dtype}")
    return images


def normalize_image(image: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(..., 3, H, W) in [0, 1] -> (x - mean) / std per channel."""
    m = torch.tensor(mean, dtype=image.dtype).view(3, 1, 1)
    s = torch.tensor(std, dtype=image.dtype).view(3, 1, 1)
    return (image - m) / s


@dataclass(frozen=True)
class AugmentationDraw:
    """One sample's augmentation parameters (applied identically to all its views)."""

    crop_top: float
    crop_left: float
    crop_scale: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    # Pixels the image moves down and right (negative: up and left).
    shift_y: int = 0
    shift_x: int = 0


def draw_augmentation(rng: np.random.Generator, params) -> AugmentationDraw:
    """Sample crop position and colour-jitter factors from `AugmentationParams`."""

    def factor(x: float) -> float:
        return float(rng.uniform(max(0.0, 1 - x), 1 + x)) if x > 0 else 1.0

    return AugmentationDraw(
        crop_top=float(rng.uniform()),
        crop_left=float(rng.uniform()),
        crop_scale=float(params.crop_scale),
        brightness=factor(params.brightness),
        contrast=factor(params.contrast),
        saturation=factor(params.saturation),
        hue=float(rng.uniform(-params.hue, params.hue)) if params.hue > 0 else 0.0,
        # Drawn last and only when on, so runs without a shift draw the same values as before it existed.
        **_draw_shift(rng, params.shift),
    )


def _draw_shift(rng: np.random.Generator, shift: int) -> dict[str, int]:
    if shift <= 0:
        return {}
    dy, dx = rng.integers(-shift, shift + 1, size=2)
    return {"shift_y": int(dy), "shift_x": int(dx)}


def augment(image: torch.Tensor, draw: AugmentationDraw) -> torch.Tensor:
    """Random shift, random crop (resized back to the input size) and colour jitter of a (3, H, W) image in [0, 1]."""
    _, h, w = image.shape
    if draw.shift_y or draw.shift_x:
        image = shift_image(image, draw.shift_y, draw.shift_x)
    if draw.crop_scale < 1.0:
        ch, cw = max(1, round(h * draw.crop_scale)), max(1, round(w * draw.crop_scale))
        top, left = int(draw.crop_top * (h - ch)), int(draw.crop_left * (w - cw))
        crop = image[:, top : top + ch, left : left + cw]
        image = torch.nn.functional.interpolate(crop[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    if draw.brightness != 1.0:
        image = image * draw.brightness
    if draw.contrast != 1.0:
        gray_mean = _grayscale(image).mean()
        image = (image - gray_mean) * draw.contrast + gray_mean
    if draw.saturation != 1.0:
        gray = _grayscale(image)
        image = (image - gray) * draw.saturation + gray
    image = image.clamp(0.0, 1.0)
    if draw.hue != 0.0:
        image = shift_hue(image, draw.hue)
    return image


def shift_image(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """(3, H, W) -> (3, H, W) moved `dy` pixels down and `dx` right; the uncovered rows and columns repeat the
    nearest edge pixels."""
    _, h, w = image.shape
    py, px = abs(dy), abs(dx)
    padded = torch.nn.functional.pad(image[None], (px, px, py, py), mode="replicate")[0]  # (3, H + 2py, W + 2px)
    top, left = py - dy, px - dx
    return padded[:, top : top + h, left : left + w]


def shift_hue(image: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of a (3, H, W) image in [0, 1] by `shift` turns of the colour wheel (via HSV)."""
    r, g, b = image
    maxc, minc = image.max(0).values, image.min(0).values  # (H, W)
    delta = maxc - minc
    safe = delta.clamp_min(1e-12)
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    hue = (hue + shift) % 1.0
    sector = torch.floor(hue * 6.0)
    f = hue * 6.0 - sector
    v = maxc
    p, q, t = v * (1 - sat), v * (1 - sat * f), v * (1 - sat * (1 - f))
    sector = sector.long() % 6  # (H, W) in 0..5
    choices = torch.stack(
        [
            torch.stack([v, q, p, p, t, v]),  # red channel per sector
            torch.stack([t, v, v, q, p, p]),  # green
            torch.stack([p, p, t, v, v, q]),  # blue
        ]
    )  # (3, 6, H, W)
    return choices.gather(1, sector[None, None].expand(3, 1, *sector.shape)).squeeze(1)


def _grayscale(image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) -> (1, H, W) luma."""
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2]).unsqueeze(0)
