"""`vlm`: vision tower -> pixel shuffle -> MLP projector -> image embeddings at the `<image>` placeholders -> LLM.

Each image becomes `img_num_tokens = (img_size / patch_size)**2 / pixel_shuffle_factor**2` embeddings. The text
holds exactly that many `<image>` placeholder ids (`image_token_id`) per image, in image order; their token
embeddings are replaced by the image embeddings, and the language model reads the merged sequence.

The vision tower is a native `vit` or a `vit_hf`; the language model a native `transformer` or a
`transformer_hf`. `--model.transformer.resume_from_checkpoint RUN_OR_FILE` starts the language model from an
LLM run's weights (likewise `--model.vit.resume_from_checkpoint` for the vision tower).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vla_foundry.checkpoint import read_model_weights, weights_source
from vla_foundry.models.language_modeling import next_token_loss, shift_for_next_token
from vla_foundry.models.registry import (
    BatchHandler,
    LossOutput,
    create_model,
    fsdp_block_types,
    register_batch_handler,
    register_model,
)
from vla_foundry.models.weights import freeze, load_weights_into
from vla_foundry.params.model_params import ModelParams, VLMParams


def pixel_shuffle(tokens: torch.Tensor, grid_size: int, factor: int) -> torch.Tensor:
    """Fold each factor x factor neighbourhood of patch tokens into one wider token.

    (B, grid**2, D) row-major -> (B, (grid/factor)**2, factor**2 * D), row-major over the coarse grid.
    """
    B, n_tokens, D = tokens.shape
    if n_tokens != grid_size**2:
        raise ValueError(f"pixel shuffle expects {grid_size}x{grid_size}={grid_size**2} tokens, got {n_tokens}")
    g = grid_size // factor
    x = tokens.view(B, g, factor, g, factor, D)  # (B, row, dy, col, dx, D)
    x = x.permute(0, 1, 3, 2, 4, 5)  # (B, row, col, dy, dx, D)
    return x.reshape(B, g * g, factor * factor * D)


class Projector(nn.Module):
    """Two-layer GELU MLP from shuffled vision tokens to the language model's width."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class VLM(nn.Module):
    def __init__(self, params: VLMParams, vision: nn.Module, language_model: nn.Module) -> None:
        super().__init__()
        params.validate()
        self.params = params
        self.vision = vision
        self.language_model = language_model
        self.image_token_id = params.image_token_id
        self.img_num_tokens = params.img_num_tokens
        self.shuffle_factor = params.pixel_shuffle_factor
        in_dim = vision.hidden_dim * self.shuffle_factor**2
        out_dim = language_model.hidden_dim
        self.projector = Projector(in_dim, params.projector_hidden_dim or out_dim, out_dim)

    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, N_img, 3, H, W) -> (B, N_img * img_num_tokens, D_lm), image by image."""
        B, n_img = images.shape[:2]
        patches = self.vision(images.flatten(0, 1))  # (B*N_img, grid**2, D_vit)
        shuffled = pixel_shuffle(patches, self.vision.grid_size, self.shuffle_factor)  # (B*N_img, T_img, f²D_vit)
        return self.projector(shuffled).reshape(B, n_img * self.img_num_tokens, -1)  # (B, N_img*T_img, D_lm)

    def merge_embeddings(self, input_ids: torch.Tensor, images: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, D) with the `<image>` placeholders replaced by image embeddings, in order."""
        is_image = input_ids == self.image_token_id  # (B, T)
        # Placeholder ids need not exist in the embedding table (an HF tokenizer's added token): embed a 0 there.
        embeds = self.language_model.embed(input_ids.masked_fill(is_image, 0))  # (B, T, D)
        n_img = 0 if images is None else images.shape[1]
        expected = n_img * self.img_num_tokens
        counts = is_image.sum(dim=1)  # (B,)
        if bool((counts != expected).any()):
            row = int((counts != expected).nonzero()[0, 0])
            raise ValueError(
                f"sample {row} of the batch has {int(counts[row])} <image> placeholder tokens (id "
                f"{self.image_token_id}) but {n_img} images x img_num_tokens {self.img_num_tokens} = {expected} "
                "image embeddings: the text must hold img_num_tokens placeholders per image, and model.image_token_id "
                "must be the tokenizer's <image> id"
            )
        if n_img == 0:
            return embeds
        image_embeds = self.image_embeddings(images).to(embeds.dtype)  # (B, N_img*T_img, D)
        # masked_scatter fills placeholders row by row in sequence order: the k-th placeholder of a sample gets
        # its k-th image embedding.
        return embeds.masked_scatter(is_image[..., None], image_embeds)

    @staticmethod
    def _as_image_stack(images: torch.Tensor | None) -> torch.Tensor | None:
        if images is None or images.dim() == 5:
            return images
        if images.dim() == 4:
            return images[:, None]  # one image per sample: (B, 1, 3, H, W)
        raise ValueError(f"images must be (B, N_img, 3, H, W) or (B, 3, H, W); got shape {tuple(images.shape)}")

    def forward(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab) for input_ids (B, T) with `<image>` placeholders and images (B, N_img, 3, H, W)."""
        embeds = self.merge_embeddings(input_ids, self._as_image_stack(images))
        return self.language_model(inputs_embeds=embeds, attention_mask=attention_mask)

    def hidden_states(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        num_layers: int = 1,
    ) -> list[torch.Tensor]:
        """The language model's last `num_layers` hidden states over the merged sequence, each (B, T, D_lm)."""
        embeds = self.merge_embeddings(input_ids, self._as_image_stack(images))
        return self.language_model.hidden_states(
            inputs_embeds=embeds, attention_mask=attention_mask, num_layers=num_layers
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        images: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        **sampling: Any,
    ) -> torch.Tensor:
        """Continue a prompt with images (e.g. captioning); returns the new tokens (B, <= max_new_tokens).
        `sampling`: attention_mask, temperature, top_k, top_p, eos_token_id (see `TransformerLM.generate`)."""
        embeds = self.merge_embeddings(input_ids, self._as_image_stack(images))
        return self.language_model.generate(inputs_embeds=embeds, max_new_tokens=max_new_tokens, **sampling)

    def fsdp_block_types(self) -> tuple[type, ...]:
        """The vision tower's and the language model's units (native blocks or HF layers)."""
        found = set(fsdp_block_types(self.vision)) | set(fsdp_block_types(self.language_model))
        return tuple(sorted(found, key=lambda t: t.__name__))

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token for samples of `seq_len` tokens holding one image each (the caption case)."""
        return self.flops_per_sample(seq_len, num_images=1) / seq_len

    def flops_per_sample(self, seq_len: int, num_images: int = 1) -> float:
        """Training FLOPs (forward + backward = 3 x forward) for one sample of `seq_len` tokens (image placeholders
        included) holding `num_images` images: vision tower, projector and language model, each counting its own."""
        vision = self.vision.forward_flops_per_image() * num_images
        fc1, fc2 = self.projector.fc1, self.projector.fc2
        # Two matmuls per image token, 2 FLOPs per multiply-add.
        projector = 2 * (fc1.in_features * fc1.out_features + fc2.in_features * fc2.out_features)
        projector *= self.img_num_tokens * num_images
        language = self.language_model.forward_flops_per_token(seq_len) * seq_len
        return 3.0 * (vision + projector + language)


def load_submodule_weights(module: nn.Module, sub_params: ModelParams, field: str) -> None:
    """Load `model.<field>.resume_from_checkpoint` (a run directory or checkpoint file) into a sub-module."""
    path = sub_params.resume_from_checkpoint
    if path:
        load_weights_into(module, read_model_weights(path), f"{weights_source(path)} -> model.{field}")


@register_model("vlm")
def build_vlm(params: VLMParams, load_pretrained: bool = True) -> VLM:
    vision = create_model(params.vit, load_pretrained)
    language_model = create_model(params.transformer, load_pretrained)
    load_submodule_weights(vision, params.vit, "vit")
    load_submodule_weights(language_model, params.transformer, "transformer")
    model = VLM(params, vision, language_model)
    if params.freeze_vit:
        freeze(model.vision)
    if params.freeze_transformer:
        freeze(model.language_model)
    return model


@register_batch_handler("vlm")
class VLMBatchHandler(BatchHandler):
    """image_caption batches: `input_ids` (B, T+1) with placeholders, `loss_mask` (B, T+1) False on pad and
    placeholders, `images` (B, N_img, 3, H, W) -> next-token cross-entropy on the text."""

    def compute_loss(self, model: nn.Module, batch: dict[str, Any]) -> LossOutput:
        inputs, targets, mask, attention_mask = shift_for_next_token(batch)
        if "images" not in batch:
            raise KeyError(f"a VLM batch needs 'images'; got keys {sorted(batch)}")
        # Placeholders are never targets, whatever the data side sent.
        mask = mask & (targets != self.model_params.image_token_id)
        logits = model(input_ids=inputs, images=batch["images"], attention_mask=attention_mask)  # (B, T, V)
        return next_token_loss(logits, targets, mask, self.model_params.z_loss_weight)
