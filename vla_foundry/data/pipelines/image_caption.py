"""Image-caption pipelines: `KEY.jpg|png|webp` + `KEY.txt` -> images and a caption after image placeholders.

Built-in (`data.tokenizer`): input_ids (B, seq_len + 1) = img_num_tokens x `<image>` id, then BOS, caption tokens,
EOS, padding; loss_mask (B, seq_len + 1) False on `<image>` and pad positions; images (B, 1, 3, S, S) normalised with
image_mean / image_std after resize-shorter-side + centre crop to S = image_size.

With `data.processor` (a transformers processor name or local path, for `vlm_hf` models): the processor writes the
model's own image placeholders and pixel values; input_ids / loss_mask as above (False up to the last image
placeholder and on padding), images (B, N_crops, 3, H, W) as the processor returns them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from vla_foundry.data.pipelines import register_pipeline
from vla_foundry.data.processors.images import (
    IMAGE_EXTENSIONS,
    decode_image,
    normalize_image,
    resize_shorter_and_center_crop,
    to_float_tensor,
)
from vla_foundry.data.processors.tokenizers import get_tokenizer
from vla_foundry.data.robotics.processor import SampleError
from vla_foundry.params.base_params import ConfigError


def read_image(raw: dict[str, Any]) -> np.ndarray:
    """The sample's image as uint8 (H, W, 3); SampleError when absent or undecodable."""
    ext = next((e for e in IMAGE_EXTENSIONS if e in raw), None)
    if ext is None:
        raise SampleError(f"no image member ({'/'.join(IMAGE_EXTENSIONS)})")
    try:
        return decode_image(raw[ext])
    except ValueError as e:
        raise SampleError(f"{ext}: {e}") from None


def read_caption(raw: dict[str, Any]) -> str:
    if "txt" in raw:
        return raw["txt"].decode("utf-8", errors="replace").strip()
    if "json" in raw:
        try:
            caption = json.loads(raw["json"]).get("caption")
        except (json.JSONDecodeError, AttributeError) as e:
            raise SampleError(f"json is not an object with a caption: {e}") from None
        if isinstance(caption, str):
            return caption.strip()
    raise SampleError("no caption member (txt, or json with 'caption')")


class ImageCaptionPipeline:
    def __init__(self, data_params: Any, model_params: Any = None) -> None:
        self.image_size = data_params.image_size or getattr(getattr(model_params, "vit", None), "img_size", None)
        self.img_num_tokens = data_params.img_num_tokens or getattr(model_params, "img_num_tokens", None)
        if not self.image_size or not self.img_num_tokens:
            raise ConfigError(
                "image_caption data needs data.image_size and data.img_num_tokens; they are shared from the VLM "
                "(model.vit.img_size, model.img_num_tokens) by derive_params, or can be set directly"
            )
        self.length = data_params.seq_len + 1
        self.tokenizer = get_tokenizer(data_params.tokenizer)
        self.mean, self.std = tuple(data_params.image_mean), tuple(data_params.image_std)
        if self.img_num_tokens >= self.length:
            raise ConfigError(
                f"data.img_num_tokens={self.img_num_tokens} leaves no room for text in seq_len + 1 = {self.length}"
            )

    def process(self, raw: dict[str, Any], dataset_index: int, rng: np.random.Generator) -> list[dict]:
        image = resize_shorter_and_center_crop(read_image(raw), self.image_size)
        pixels = normalize_image(to_float_tensor(image), self.mean, self.std)  # (3, S, S)

        caption = read_caption(raw)
        text_ids = self.tokenizer.encode(caption, add_bos=True, add_eos=True)
        ids = [self.tokenizer.image_token_id] * self.img_num_tokens + text_ids
        ids = ids[: self.length]
        input_ids = torch.full((self.length,), self.tokenizer.pad_token_id, dtype=torch.long)
        input_ids[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        loss_mask = torch.zeros(self.length, dtype=torch.bool)
        loss_mask[self.img_num_tokens : len(ids)] = True
        return [{"input_ids": input_ids, "loss_mask": loss_mask, "images": pixels[None]}]

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class HFImageCaptionPipeline:
    """Captions processed by a transformers processor (`data.processor`), for `vlm_hf` models."""

    def __init__(self, data_params: Any) -> None:
        from vla_foundry.data.processors.tokenizers import load_hf_processor

        self.processor = load_hf_processor(data_params.processor)
        self.tokenizer = self.processor.tokenizer
        self.length = data_params.seq_len + 1
        self.image_token = getattr(self.processor, "image_token", None) or "<image>"
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(self.image_token)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_id = self.tokenizer.eos_token_id

    def process(self, raw: dict[str, Any], dataset_index: int, rng: np.random.Generator) -> list[dict]:
        from PIL import Image

        image = Image.fromarray(read_image(raw))
        out = self.processor(text=[self.image_token + read_caption(raw)], images=[image], return_tensors="pt")
        ids = out["input_ids"][0].tolist()
        if self.eos_id is not None and ids[-1] != self.eos_id:
            ids.append(self.eos_id)
        image_positions = [i for i, t in enumerate(ids) if t == self.image_token_id]
        if not image_positions:
            raise ConfigError(f"processor {type(self.processor).__name__} wrote no {self.image_token!r} token")
        prompt_end = image_positions[-1] + 1
        if prompt_end >= self.length:
            raise ConfigError(
                f"data.seq_len + 1 = {self.length} cannot hold the {prompt_end} image placeholder tokens the processor "
                "writes; raise data.seq_len"
            )
        ids = ids[: self.length]
        input_ids = torch.full((self.length,), self.pad_id, dtype=torch.long)
        input_ids[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        loss_mask = torch.zeros(self.length, dtype=torch.bool)
        loss_mask[prompt_end : len(ids)] = True
        pixels = out["pixel_values"]
        pixels = pixels.reshape(-1, *pixels.shape[-3:]).float()  # (N_crops, 3, H, W)
        return [{"input_ids": input_ids, "loss_mask": loss_mask, "images": pixels}]

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        crops = {tuple(it["images"].shape) for it in items}
        if len(crops) > 1:
            raise ValueError(
                f"the processor gave images of different shapes {sorted(crops)} in one batch; disable image "
                "splitting / use a fixed image size in the processor config"
            )
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@register_pipeline("image_caption")
def build_image_caption_pipeline(
    data_params: Any, plan: Any, training: bool, model_params: Any, batch_size: Any
) -> Any:
    # A Hugging Face processor (an HF backbone's own) replaces the built-in image and text processing.
    if data_params.processor is not None:
        return HFImageCaptionPipeline(data_params)
    return ImageCaptionPipeline(data_params, model_params)
