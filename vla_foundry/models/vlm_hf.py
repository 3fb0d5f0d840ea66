"""`vlm_hf`: a `transformers` image-text-to-text model (SmolVLM / Idefics3, PaliGemma, ...) by name or local path.

Same interface as the native `VLM`: `forward(input_ids, images, attention_mask) -> logits`, `hidden_states`,
`generate`. `input_ids` carry the model's own image placeholder id (its config's `image_token_id` /
`image_token_index`), as its processor writes them; `images` are (B, N_img, 3, H, W) pixel values.
`load_pretrained=False` builds the architecture from its config with fresh weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vla_foundry.models.hf_loading import load_hf_model, no_split_block_types
from vla_foundry.models.language_modeling import next_token_loss, shift_for_next_token
from vla_foundry.models.registry import BatchHandler, LossOutput, register_batch_handler, register_model
from vla_foundry.models.sampling import hf_generate_options
from vla_foundry.models.transformer_hf import last_layer_states
from vla_foundry.models.weights import freeze
from vla_foundry.params.model_params import VLMHFParams

# Model families whose forward takes pixel_values as (B, N_img, 3, H, W); the others take (B * N_img, 3, H, W).
_PER_SAMPLE_IMAGE_STACKS = ("idefics2", "idefics3", "smolvlm")
_VISION_TOWER_NAMES = ("vision_model", "vision_tower", "visual")


class HFVisionLanguageModel(nn.Module):
    """A transformers image-text-to-text model behind the native `VLM` interface."""

    def __init__(self, params: VLMHFParams, load_pretrained: bool = True) -> None:
        super().__init__()
        from transformers import AutoModelForImageTextToText

        params.validate()
        self.params = params
        self.model = load_hf_model(
            AutoModelForImageTextToText,
            params.hf_pretrained,
            "image-text-to-text model",
            load_pretrained,
            trust_remote_code=params.trust_remote_code,
        )
        config = self.model.config
        self.model_type = config.model_type
        self.image_token_id = getattr(config, "image_token_id", None)
        if self.image_token_id is None:
            self.image_token_id = getattr(config, "image_token_index", None)
        self.hidden_dim = config.get_text_config().hidden_size
        if params.freeze_vision:
            freeze(self.vision_tower())

    def vision_tower(self) -> nn.Module:
        for owner in (getattr(self.model, "model", None), self.model):
            for name in _VISION_TOWER_NAMES:
                tower = getattr(owner, name, None) if owner is not None else None
                if isinstance(tower, nn.Module):
                    return tower
        raise AttributeError(f"{self.params.hf_pretrained}: no vision tower among {', '.join(_VISION_TOWER_NAMES)}")

    def fsdp_block_types(self) -> tuple[type, ...]:
        return no_split_block_types(self.model)

    def _inputs(
        self, input_ids: torch.Tensor, images: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> dict[str, Any]:
        inputs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask.long() if attention_mask is not None else None,
        }
        if images is not None:
            if images.dim() == 4:
                images = images[:, None]  # (B, 1, 3, H, W)
            n_img = images.shape[1]
            count = int((input_ids == self.image_token_id).sum()) if self.image_token_id is not None else None
            if count == 0 and n_img > 0:
                raise ValueError(
                    f"the batch has {images.shape[0] * n_img} images but no image placeholder tokens (id "
                    f"{self.image_token_id}) in input_ids: write prompts with {self.params.hf_pretrained!r}'s own "
                    "processor (data.processor), which inserts them"
                )
            per_sample = self.model_type in _PER_SAMPLE_IMAGE_STACKS
            inputs["pixel_values"] = images if per_sample else images.flatten(0, 1)
        return inputs

    def forward(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab)."""
        return self.model(**self._inputs(input_ids, images, attention_mask), use_cache=False).logits

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_layers: int = 1,
    ) -> list[torch.Tensor]:
        """The language model's last `num_layers` hidden states, each (B, T, D)."""
        out = self.model(**self._inputs(input_ids, images, attention_mask), output_hidden_states=True, use_cache=False)
        return last_layer_states(out.hidden_states, num_layers, self.params.hf_pretrained)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        attention_mask: torch.Tensor | None = None,
        **sampling: Any,
    ) -> torch.Tensor:
        """New tokens only, (B, <= max_new_tokens). `sampling`: temperature, top_k, top_p, eos_token_id (see
        `TransformerLM.generate`; transformers samples from the global RNG, so a `generator` is ignored)."""
        sampling.pop("generator", None)
        out = self.model.generate(
            **self._inputs(input_ids, images, attention_mask), **hf_generate_options(max_new_tokens, **sampling)
        )
        return out[:, input_ids.shape[1] :]


@register_model("vlm_hf")
def build_vlm_hf(params: VLMHFParams, load_pretrained: bool = True) -> HFVisionLanguageModel:
    return HFVisionLanguageModel(params, load_pretrained)


@register_batch_handler("vlm_hf")
class VLMHFBatchHandler(BatchHandler):
    """image_caption batches (placeholders written by the model's processor) -> next-token cross-entropy."""

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        inputs, targets, mask, attention_mask = shift_for_next_token(batch)
        image_token_id = getattr(model, "image_token_id", None)
        if image_token_id is not None:
            mask = mask & (targets != image_token_id)
        logits = model(input_ids=inputs, images=batch.get("images"), attention_mask=attention_mask)  # (B, T, V)
        return next_token_loss(logits, targets, mask, self.model_params.z_loss_weight)
