"""Image-caption pipeline: `KEY.jpg|png|webp` + `KEY.txt` -> images and a caption after `<image>` placeholders.

Batch: input_ids (B, seq_len + 1) = img_num_tokens x `<image>` id, then BOS, caption tokens, EOS, padding;
loss_mask (B, seq_len + 1) False on `<image>` and pad positions; images (B, 1, 3, S, S) normalised with
image_mean / image_std after resize-shorter-side + centre crop to S = image_size.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

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


class ImageCaptionPipeline:
    def __init__(self, data_params: Any, model_params: Any = None) -> None:
        self.image_size = data_params.image_size or getattr(getattr(model_params, "vit", None), "img_size", None)
        self.img_num_tokens = data_params.img_num_tokens or getattr(model_params, "img_num_tokens", None)
        if not self.image_size or not self.img_num_tokens:
            raise ConfigError(
                "image_caption data needs data.image_size and data.img_num_tokens; they are shared from the VLM "
                "(model.vit.img_size, model.img_num_tokens) by init_shared_attributes, or can be set directly"
            )
        if data_params.processor is not None:
            raise ConfigError(
                "data.processor (a transformers processor) is used by the vlm_hf batch handler; the built-in "
                "image_caption pipeline takes data.tokenizer with data.image_size instead"
            )
        self.length = data_params.seq_len + 1
        self.tokenizer = get_tokenizer(data_params.tokenizer)
        self.mean, self.std = tuple(data_params.image_mean), tuple(data_params.image_std)
        if self.img_num_tokens >= self.length:
            raise ConfigError(
                f"data.img_num_tokens={self.img_num_tokens} leaves no room for text in seq_len + 1 = {self.length}"
            )

    def process(self, raw: dict[str, Any], dataset_index: int, rng: np.random.Generator) -> list[dict]:
        ext = next((e for e in IMAGE_EXTENSIONS if e in raw), None)
        if ext is None:
            raise SampleError(f"no image member ({'/'.join(IMAGE_EXTENSIONS)})")
        try:
            image = decode_image(raw[ext])
        except ValueError as e:
            raise SampleError(f"{ext}: {e}") from None
        image = resize_shorter_and_center_crop(image, self.image_size)
        pixels = normalize_image(to_float_tensor(image), self.mean, self.std)  # (3, S, S)

        if "txt" in raw:
            caption = raw["txt"].decode("utf-8", errors="replace")
        elif "json" in raw:
            try:
                caption = json.loads(raw["json"]).get("caption", "")
            except (json.JSONDecodeError, AttributeError) as e:
                raise SampleError(f"json has no caption: {e}") from None
        else:
            raise SampleError("no caption member (txt)")
        text_ids = self.tokenizer.encode(caption.strip(), add_bos=True, add_eos=True)
        ids = [self.tokenizer.image_token_id] * self.img_num_tokens + text_ids
        ids = ids[: self.length]
        input_ids = torch.full((self.length,), self.tokenizer.pad_token_id, dtype=torch.long)
        input_ids[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        loss_mask = torch.zeros(self.length, dtype=torch.bool)
        loss_mask[self.img_num_tokens : len(ids)] = True
        return [{"input_ids": input_ids, "loss_mask": loss_mask, "images": pixels[None]}]

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return {k: torch.stack([it[k] for it in items]) for k in items[0]}
