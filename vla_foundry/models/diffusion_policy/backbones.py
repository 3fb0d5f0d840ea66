"""Backbones of the diffusion policy: each turns a robotics batch into conditioning tokens for the action head.

Every adapter wraps the backbone model (`self.model`, the module a backbone run's weights load into) and exposes:
  - `forward(batch) -> (cond (B, k, N, C), cond_mask (B, N))`: k = the last `backbone_num_layers_used` layers;
  - `hidden_dim` (C), `num_layers_used` (k);
  - `vision_modules()`, `layer_stack()` (ordered layers, for partial freezing), `trailing_modules()` (what follows
    the last layer, trained with it), `fsdp_block_types()`.

Batch inputs (the robotics processor's output): `images` (B, n_images, 3, H, W) float in [0, 1] (each adapter
applies its own mean/std), `image_mask` (B, n_images), `input_ids` / `attention_mask` (B, L) for the instruction
(right-padded), and `metadata` (list of dicts with the raw `instruction`) where available.

Kinds:
  vlm      native VLM trained here: [<image> placeholders | instruction | <action>] through the VLM; the head reads
           the `<action>` query token's hidden states of the last k layers (or every valid token).
  vlm_hf   a transformers image-text-to-text model through its own processor, same read-out.
  vit/vit_hf  vision only: each camera image's mean patch token (or every patch token).
  clip     a CLIP-style dual encoder: each image's embedding and the instruction's embedding (or every token).
  transformer  a language model trained here, for policies without a camera: [instruction | <action>] through the
           LM (an LLM run is the backbone run: LLM -> VLA); the head reads the `<action>` token as for a VLM.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import torch
from torch import nn

from vla_foundry.checkpoint import read_model_weights, weights_source
from vla_foundry.models.diffusion_policy.params import CLIPBackboneParams, DiffusionPolicyParams, check_conditioning
from vla_foundry.models.hf_loading import load_hf_model, load_processor, no_split_block_types
from vla_foundry.models.registry import create_model, fsdp_block_types
from vla_foundry.models.weights import freeze, load_weights_into
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.model_params import (
    TransformerParams,
    ViTHFParams,
    ViTParams,
    VLMHFParams,
    VLMParams,
)

# The native image pipelines normalise with these (data.image_mean / data.image_std defaults).
DEFAULT_IMAGE_MEAN = (0.5, 0.5, 0.5)
DEFAULT_IMAGE_STD = (0.5, 0.5, 0.5)


def _largest_module_list(module: nn.Module) -> list[nn.Module]:
    """The longest `nn.ModuleList` inside `module`: its stack of transformer layers."""
    best: list[nn.Module] = []
    for sub in module.modules():
        if isinstance(sub, nn.ModuleList) and len(sub) > len(best):
            best = list(sub)
    return best


class BackboneAdapter(nn.Module):
    """Common plumbing: image normalisation, batch checks, freezing hooks."""

    hidden_dim: int
    num_layers_used: int
    image_size: int | None = None

    def __init__(self, params: DiffusionPolicyParams, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.policy_params = params
        self.conditioning = params.conditioning
        self.num_layers_used = params.backbone_num_layers_used
        self.register_buffer("image_mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def images(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, n, 3, H, W) normalised, image_mask (B, n)) with shape checks."""
        images = batch.get("images")
        if images is None:
            raise KeyError(f"diffusion_policy batch is missing 'images' (B, n_images, 3, H, W); got {sorted(batch)}")
        if images.dim() != 5 or images.shape[2] != 3:
            raise ValueError(f"images has shape {tuple(images.shape)}; expected (B, n_images, 3, H, W)")
        size = self.image_size
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            raise ValueError(
                f"images are {images.shape[-2]}x{images.shape[-1]} but the backbone reads {size}x{size}: "
                f"set data.image_size {size}"
            )
        mask = batch.get("image_mask")
        if mask is None:
            mask = torch.ones(images.shape[:2], dtype=torch.bool, device=images.device)
        B, n = images.shape[:2]
        # Low-precision images were cast by FSDP's mixed-precision policy and stay so; fp32 images follow the
        # weights (bf16 weights without FSDP).
        dtype = images.dtype if images.dtype in (torch.bfloat16, torch.float16) else self.dtype
        flat = (images.flatten(0, 1).float() - self.image_mean) / self.image_std  # (B*n, 3, H, W)
        return flat.view(B, n, *flat.shape[1:]).to(dtype), mask.bool()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def instruction(self, batch: dict[str, Any], B: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokenized instruction on `device`: input_ids (B, L) and attention_mask (B, L) bool (all True when
        the batch has none)."""
        ids = batch.get("input_ids")
        if ids is None:
            raise KeyError("diffusion_policy batch is missing 'input_ids' (B, L): the tokenized instruction")
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(ids, dtype=torch.bool)
        if ids.shape[0] != B or mask.shape != ids.shape:
            raise ValueError(
                f"input_ids {tuple(ids.shape)} / attention_mask {tuple(mask.shape)} do not match batch {B}"
            )
        return ids.to(device), mask.to(device).bool()

    def vision_modules(self) -> list[nn.Module]:
        return [self.model]

    def layer_stack(self) -> list[nn.Module]:
        return _largest_module_list(self.model)

    def trailing_modules(self) -> list[nn.Module]:
        return []

    def fsdp_block_types(self) -> tuple[type, ...]:
        return fsdp_block_types(self.model)


def stack_layers(hidden: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(hidden, dim=1)  # k x (B, N, C) -> (B, k, N, C)


def read_out(
    hidden: list[torch.Tensor], mask: torch.Tensor, query_pos: torch.Tensor | None, conditioning: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditioning from sequence hidden states: the query position of each row, or every valid position.

    hidden: k x (B, S, C); mask (B, S); query_pos (B,) -> ((B, k, 1, C), (B, 1)) or ((B, k, S, C), (B, S)).
    """
    h = stack_layers(hidden)  # (B, k, S, C)
    if conditioning == "all_tokens" or query_pos is None:
        return h, mask
    q = at_position(h, query_pos)  # (B, k, 1, C)
    return q, torch.ones(q.shape[0], 1, dtype=torch.bool, device=q.device)


def at_position(h: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The hidden states at one position per row: h (B, k, S, C), pos (B,) -> (B, k, 1, C)."""
    return h.gather(2, pos.view(-1, 1, 1, 1).expand(-1, h.shape[1], 1, h.shape[3]))


# -------------------------------------------------------------------------------------------------------------
# Vision only


class VisionBackbone(BackboneAdapter):
    """A native `vit` or a `vit_hf` tower: per image, its mean patch token (action_token) or all patch tokens."""

    def __init__(self, params: DiffusionPolicyParams, load_pretrained: bool) -> None:
        vit_params = params.backbone
        if params.backbone_num_layers_used != 1:
            raise ConfigError(
                f"model.backbone_num_layers_used={params.backbone_num_layers_used}: a vision-only backbone provides "
                "its final layer only; set it to 1"
            )
        model = create_model(vit_params, load_pretrained)
        mean, std = _vision_tower_stats(vit_params, model)
        super().__init__(params, mean, std)
        self.model = model
        self.hidden_dim = model.hidden_dim
        self.image_size = vit_params.img_size

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, image_mask = self.images(batch)
        B, n = images.shape[:2]
        patches = self.model(images.flatten(0, 1))  # (B*n, P, C)
        P, C = patches.shape[1:]
        if self.conditioning == "all_tokens":
            cond = patches.reshape(B, 1, n * P, C)
            return cond, image_mask.repeat_interleave(P, dim=1)  # (B, 1, nP, C), (B, nP)
        return patches.mean(dim=1).reshape(B, 1, n, C), image_mask  # (B, 1, n, C), (B, n)

    def trailing_modules(self) -> list[nn.Module]:
        norm = getattr(self.model, "norm", None)
        return [norm] if isinstance(norm, nn.Module) else []


def _vision_tower_stats(params: ViTParams | ViTHFParams, model: nn.Module) -> tuple[tuple, tuple]:
    """Mean/std a tower was trained with: timm's pretrained config, a transformers preprocessor_config.json, or the
    native pipelines' 0.5 / 0.5."""
    if not isinstance(params, ViTHFParams):
        return DEFAULT_IMAGE_MEAN, DEFAULT_IMAGE_STD
    cfg = getattr(getattr(model, "model", None), "pretrained_cfg", None)
    if isinstance(cfg, dict) and "mean" in cfg:
        return tuple(cfg["mean"]), tuple(cfg["std"])
    return _processor_image_stats(params.hf_pretrained)


def _processor_image_stats(name_or_path: str) -> tuple[tuple, tuple]:
    """Mean/std of a transformers vision tower: its local preprocessor_config.json, else its image processor (hub
    name, loaded cache-first). A tower whose normalisation cannot be found is a ConfigError: guessing would feed it
    images on another scale than it was trained on."""
    path = os.path.join(name_or_path, "preprocessor_config.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            pre = json.load(f)
        if "image_mean" in pre and "image_std" in pre:
            return tuple(pre["image_mean"]), tuple(pre["image_std"])
        raise ConfigError(f"{path} has no image_mean / image_std: the vision tower's normalisation is unknown")
    if os.path.isdir(name_or_path):
        raise ConfigError(
            f"vision tower {name_or_path} has no preprocessor_config.json: its image mean / std are unknown; save "
            "its image processor there (AutoImageProcessor.save_pretrained)"
        )
    from transformers import AutoImageProcessor

    from vla_foundry.models.hf_loading import load_from_hf

    try:
        processor = load_from_hf(
            name_or_path,
            "image processor",
            lambda n, local_files_only: AutoImageProcessor.from_pretrained(n, local_files_only=local_files_only),
        )
    except OSError as e:
        raise ConfigError(f"the image mean / std of vision tower {name_or_path!r} are unknown: {e}") from None
    return tuple(processor.image_mean), tuple(processor.image_std)


# -------------------------------------------------------------------------------------------------------------
# Native VLM


def _vlm_image_stats(params: DiffusionPolicyParams) -> tuple[tuple, tuple]:
    """The image mean / std the backbone VLM was trained with (recorded in its params by its run). A VLM whose
    weights come from a run that did not record them is normalised with the native 0.5 / 0.5, with a warning."""
    vlm: VLMParams = params.backbone
    if vlm.image_mean is not None and vlm.image_std is not None:
        return tuple(vlm.image_mean), tuple(vlm.image_std)
    source = params.backbone_run or vlm.resume_from_checkpoint
    if source:
        warnings.warn(
            f"the backbone VLM from {source} does not record the image mean / std it was trained with; camera "
            f"images are normalised with mean {DEFAULT_IMAGE_MEAN}, std {DEFAULT_IMAGE_STD}",
            stacklevel=3,
        )
    return DEFAULT_IMAGE_MEAN, DEFAULT_IMAGE_STD


class NativeVLMBackbone(BackboneAdapter):
    """A `vlm` trained here. Sequence: [<image> x img_num_tokens per image | instruction | <action>]."""

    def __init__(self, params: DiffusionPolicyParams, load_pretrained: bool) -> None:
        vlm_params: VLMParams = params.backbone
        super().__init__(params, *_vlm_image_stats(params))
        self.model = create_model(vlm_params, load_pretrained)
        lm = self.model.language_model
        self.hidden_dim = lm.hidden_dim
        n_layers = len(_largest_module_list(lm))
        if not 1 <= params.backbone_num_layers_used <= n_layers:
            raise ConfigError(
                f"model.backbone_num_layers_used={params.backbone_num_layers_used} must be within [1, {n_layers}] "
                "(the backbone language model's layers)"
            )
        self.image_size = vlm_params.vit.img_size
        self.image_token_id = vlm_params.image_token_id
        self.action_token_id = params.action_token_id
        self.pad_token_id = params.pad_token_id

    def build_sequence(
        self, ids: torch.Tensor, mask: torch.Tensor, n_images: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, L) right-padded instruction -> (B, I + L + 1) sequence, its attention mask and the `<action>`
        position (B,); I = n_images x img_num_tokens."""
        n_img_tok = n_images * self.model.img_num_tokens
        seq, attn, action_pos = instruction_with_query(
            ids, mask, n_img_tok, self.image_token_id, self.pad_token_id, self.action_token_id
        )
        return seq, attn, action_pos

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, image_mask = self.images(batch)
        ids, mask = self.instruction(batch, images.shape[0], images.device)
        seq, attn, action_pos = self.build_sequence(ids, mask, images.shape[1])
        hidden = self.model.hidden_states(
            input_ids=seq, images=images, attention_mask=attn, num_layers=self.num_layers_used
        )  # k x (B, S, C)
        if self.conditioning != "action_and_image_tokens":
            return read_out(hidden, attn, action_pos, self.conditioning)
        h = stack_layers(hidden)  # (B, k, S, C)
        n_img_tok = images.shape[1] * self.model.img_num_tokens  # the sequence starts with the image tokens
        q = at_position(h, action_pos)  # (B, k, 1, C)
        # A missing camera's tokens are hidden from the head; the <action> token is always read.
        img_mask = image_mask.repeat_interleave(self.model.img_num_tokens, dim=1)  # (B, I)
        mask = torch.cat([img_mask, torch.ones_like(img_mask[:, :1])], dim=1)  # (B, I + 1)
        return torch.cat([h[:, :, :n_img_tok], q], dim=2), mask  # (B, k, I + 1, C)

    def vision_modules(self) -> list[nn.Module]:
        return [self.model.vision, self.model.projector]

    def layer_stack(self) -> list[nn.Module]:
        return _largest_module_list(self.model.language_model)

    def trailing_modules(self) -> list[nn.Module]:
        norm = getattr(self.model.language_model, "norm", None)
        return [norm] if isinstance(norm, nn.Module) else []


# -------------------------------------------------------------------------------------------------------------
# Language model alone


def instruction_with_query(
    ids: torch.Tensor, mask: torch.Tensor, prefix: int, prefix_id: int, pad_id: int, query_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, L) right-padded instruction -> the sequence [prefix tokens | instruction | query] (B, prefix + L + 1),
    its attention mask and the query position (B,). Padding after the query is masked out."""
    B, L = ids.shape
    seq = torch.full((B, prefix + L + 1), pad_id, dtype=torch.long, device=ids.device)
    seq[:, :prefix] = prefix_id
    seq[:, prefix : prefix + L] = torch.where(mask, ids, torch.full_like(ids, pad_id))
    query_pos = prefix + mask.sum(dim=1)  # (B,) right padding: valid tokens come first
    seq.scatter_(1, query_pos[:, None], query_id)
    positions = torch.arange(seq.shape[1], device=ids.device)[None]
    attn = positions <= query_pos[:, None]  # prefix, instruction and the query token
    attn[:, :prefix] = True
    return seq, attn, query_pos


class LanguageBackbone(BackboneAdapter):
    """A `transformer` trained here, for policies without a camera. Sequence: [instruction | <action>]."""

    def __init__(self, params: DiffusionPolicyParams, load_pretrained: bool) -> None:
        lm_params: TransformerParams = params.backbone
        super().__init__(params, DEFAULT_IMAGE_MEAN, DEFAULT_IMAGE_STD)
        self.model = create_model(lm_params, load_pretrained)
        self.hidden_dim = lm_params.hidden_dim
        if not 1 <= params.backbone_num_layers_used <= lm_params.n_layers:
            raise ConfigError(
                f"model.backbone_num_layers_used={params.backbone_num_layers_used} must be within "
                f"[1, {lm_params.n_layers}] (the backbone language model's layers)"
            )
        for name in ("action_token_id", "pad_token_id"):
            if getattr(params, name) >= lm_params.vocab_size:
                raise ConfigError(
                    f"model.{name}={getattr(params, name)} is outside the backbone's vocabulary "
                    f"(model.backbone.vocab_size={lm_params.vocab_size})"
                )
        self.action_token_id = params.action_token_id
        self.pad_token_id = params.pad_token_id

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = batch.get("input_ids")
        if ids is None:
            raise KeyError("diffusion_policy batch is missing 'input_ids' (B, L): the tokenized instruction")
        device = next(self.model.parameters()).device
        ids, mask = self.instruction(batch, ids.shape[0], device)
        seq, attn, action_pos = instruction_with_query(ids, mask, 0, 0, self.pad_token_id, self.action_token_id)
        hidden = self.model.hidden_states(input_ids=seq, attention_mask=attn, num_layers=self.num_layers_used)
        return read_out(hidden, attn, action_pos, self.conditioning)  # k x (B, S, C) -> (B, k, N, C)

    def vision_modules(self) -> list[nn.Module]:
        return []  # no vision tower

    def trailing_modules(self) -> list[nn.Module]:
        norm = getattr(self.model, "norm", None)
        return [norm] if isinstance(norm, nn.Module) else []


# -------------------------------------------------------------------------------------------------------------
# transformers VLM


ACTION_TOKEN = "<action>"


class HFVLMBackbone(BackboneAdapter):
    """A `vlm_hf` model fed through its own processor: the prompt is [images | instruction | <action>] in the
    model's format (its chat template when it has one); `<action>` is added to the vocabulary when missing (the new
    embedding row starts at the mean of the others)."""

    def __init__(self, params: DiffusionPolicyParams, load_pretrained: bool) -> None:
        super().__init__(params, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # the HF processor normalises
        hf: VLMHFParams = params.backbone
        self.model = create_model(hf, load_pretrained)
        self.processor = load_processor(hf.hf_pretrained)
        self.hidden_dim = self.model.hidden_dim
        self.tokenizer = self.processor.tokenizer
        self.image_token = getattr(self.processor, "image_token", None) or "<image>"
        self._vocab_ready = False

    def add_action_token(self) -> None:
        """Add `<action>` to the tokenizer and the model's embeddings (after any backbone-run weights are loaded:
        the run's checkpoint has the original vocabulary)."""
        if ACTION_TOKEN not in self.tokenizer.get_vocab():
            self.tokenizer.add_special_tokens({"additional_special_tokens": [ACTION_TOKEN]})
        self.action_token_id = self.tokenizer.convert_tokens_to_ids(ACTION_TOKEN)
        embeddings = self.model.model.get_input_embeddings()
        if self.action_token_id >= embeddings.num_embeddings:
            self.model.model.resize_token_embeddings(len(self.tokenizer), mean_resizing=True)
        self._vocab_ready = True

    def _texts(self, batch: dict[str, Any], B: int) -> list[str]:
        meta = batch.get("metadata")
        if isinstance(meta, list) and len(meta) == B and all(isinstance(m, dict) and "instruction" in m for m in meta):
            return [str(m["instruction"]) for m in meta]
        ids, mask = self.instruction(batch, B, torch.device("cpu"))
        return [self.tokenizer.decode(row[m].tolist(), skip_special_tokens=True) for row, m in zip(ids, mask)]

    def _prompt(self, text: str, n_images: int) -> str:
        if getattr(self.processor, "chat_template", None):
            content = [{"type": "image"}] * n_images + [{"type": "text", "text": text + ACTION_TOKEN}]
            messages = [{"role": "user", "content": content}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=False)
        return self.image_token * n_images + text + ACTION_TOKEN

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if not self._vocab_ready:
            self.add_action_token()
        images, _ = self.images(batch)  # (B, n, 3, H, W) in [0, 1]
        B, n = images.shape[:2]
        device = images.device
        # The processor takes uint8 (H, W, 3) frames and applies its own resizing and normalisation.
        frames = (images.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).cpu()
        prompts = [self._prompt(t, n) for t in self._texts(batch, B)]
        inputs = self.processor(
            text=prompts, images=[list(frames[b].numpy()) for b in range(B)], return_tensors="pt", padding=True
        )
        ids = inputs["input_ids"].to(device)  # (B, S): the processor's placeholders, the text and <action>
        attn = inputs["attention_mask"].to(device).bool()  # (B, S)
        pixels = inputs["pixel_values"].to(device, self.dtype)
        pixels = pixels.view(B, -1, *pixels.shape[-3:]) if pixels.dim() == 4 else pixels  # (B, n', 3, H', W')
        is_action = ids == self.action_token_id
        if not bool(is_action.any(dim=1).all()):
            raise ValueError(
                f"the processor of {self.policy_params.backbone.hf_pretrained!r} dropped the {ACTION_TOKEN} token"
            )
        action_pos = is_action.long().argmax(dim=1)  # (B,) first occurrence
        hidden = self.model.hidden_states(
            input_ids=ids, images=pixels, attention_mask=attn, num_layers=self.num_layers_used
        )
        return read_out(hidden, attn, action_pos, self.conditioning)

    def vision_modules(self) -> list[nn.Module]:
        return [self.model.vision_tower()]


# -------------------------------------------------------------------------------------------------------------
# CLIP-style dual encoder


class CLIPBackbone(BackboneAdapter):
    """transformers CLIP / SigLIP: image embeddings per camera + the instruction's text embedding (both projected
    to the shared embedding space), or every token of both towers."""

    def __init__(self, params: DiffusionPolicyParams, load_pretrained: bool) -> None:
        from transformers import AutoModel

        clip: CLIPBackboneParams = params.backbone
        if params.backbone_num_layers_used != 1:
            raise ConfigError(
                f"model.backbone_num_layers_used={params.backbone_num_layers_used}: a CLIP backbone provides its "
                "final embeddings only; set it to 1"
            )

        model = load_hf_model(AutoModel, clip.clip_pretrained, "CLIP backbone", load_pretrained)
        if not (hasattr(model, "vision_model") and hasattr(model, "text_model")):
            raise ConfigError(
                f"model.backbone.clip_pretrained={clip.clip_pretrained!r} is a {type(model).__name__}, not an image + "
                "text dual encoder (CLIP / SigLIP); use a vit_hf backbone for a vision tower alone"
            )
        vision_size = model.config.vision_config.image_size
        if vision_size != clip.img_size:
            raise ConfigError(
                f"model.backbone.img_size={clip.img_size} does not match {clip.clip_pretrained!r}'s vision tower input "
                f"size {vision_size}; set model.backbone.img_size {vision_size}"
            )
        mean, std = _processor_image_stats(clip.clip_pretrained)
        super().__init__(params, mean, std)
        self.model = model
        self.image_size = clip.img_size
        self.vocab_size = model.config.text_config.vocab_size
        self.max_text_len = model.config.text_config.max_position_embeddings
        self.hidden_dim = getattr(model.config, "projection_dim", None) or model.config.text_config.hidden_size
        if clip.freeze_vision:
            freeze(model.vision_model)
        if clip.freeze_text:
            freeze(model.text_model)

    def _project(self, name: str, x: torch.Tensor) -> torch.Tensor:
        proj = getattr(self.model, name, None)
        return proj(x) if proj is not None else x

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        images, image_mask = self.images(batch)
        B, n = images.shape[:2]
        ids, mask = self.instruction(batch, B, images.device)
        ids, mask = ids[:, : self.max_text_len], mask[:, : self.max_text_len]
        # Ids the dual encoder's vocabulary lacks (special tokens added for the VLM path) are masked out.
        mask = mask & (ids < self.vocab_size)
        ids = torch.where(mask, ids, torch.zeros_like(ids))
        vision = self.model.vision_model(pixel_values=images.flatten(0, 1))
        text = self.model.text_model(input_ids=ids, attention_mask=mask.long())
        if self.conditioning == "all_tokens":
            v = self._project("visual_projection", vision.last_hidden_state)  # (B*n, P, C)
            t = self._project("text_projection", text.last_hidden_state)  # (B, L, C)
            P = v.shape[1]
            cond = torch.cat([v.reshape(B, n * P, -1), t], dim=1)[:, None]  # (B, 1, nP + L, C)
            return cond, torch.cat([image_mask.repeat_interleave(P, dim=1), mask], dim=1)
        v = self._project("visual_projection", vision.pooler_output).reshape(B, n, -1)  # (B, n, C)
        t = self._project("text_projection", text.pooler_output)[:, None]  # (B, 1, C)
        cond = torch.cat([v, t], dim=1)[:, None]  # (B, 1, n + 1, C)
        has_text = mask.any(dim=1, keepdim=True)
        return cond, torch.cat([image_mask, has_text], dim=1)

    def vision_modules(self) -> list[nn.Module]:
        return [self.model.vision_model]

    def layer_stack(self) -> list[nn.Module]:
        return _largest_module_list(self.model.vision_model) + _largest_module_list(self.model.text_model)

    def fsdp_block_types(self) -> tuple[type, ...]:
        return no_split_block_types(self.model)


# -------------------------------------------------------------------------------------------------------------


def build_backbone(params: DiffusionPolicyParams, load_pretrained: bool = True) -> BackboneAdapter:
    """The adapter for `params.backbone`; with `backbone_run` and `load_pretrained`, the run's weights loaded."""
    backbone = params.backbone
    check_conditioning(params.conditioning, backbone.type)
    if isinstance(backbone, VLMParams):
        adapter: BackboneAdapter = NativeVLMBackbone(params, load_pretrained)
    elif isinstance(backbone, VLMHFParams):
        adapter = HFVLMBackbone(params, load_pretrained)
    elif isinstance(backbone, (ViTParams, ViTHFParams)):
        adapter = VisionBackbone(params, load_pretrained)
    elif isinstance(backbone, TransformerParams):
        adapter = LanguageBackbone(params, load_pretrained)
    elif isinstance(backbone, CLIPBackboneParams):
        adapter = CLIPBackbone(params, load_pretrained)
    else:
        raise ConfigError(f"model.backbone of kind {type(backbone).__name__} has no diffusion-policy adapter")
    if params.backbone_run and load_pretrained:
        load_weights_into(
            adapter.model,
            read_model_weights(params.backbone_run),
            f"backbone run {params.backbone_run} ({weights_source(params.backbone_run)}) -> model.backbone",
        )
    if isinstance(adapter, HFVLMBackbone):
        adapter.add_action_token()
    return adapter
