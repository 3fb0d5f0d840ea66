"""Model params: one frozen dataclass per registered model type, chosen by `--model.type`.

Union-typed sub-fields (`vit: ViTParams | ViTHFParams`) resolve from the fields that are given:
`--model.vit.hf_pretrained NAME` can only be a `ViTHFParams`, `--model.vit.hidden_dim 768` only a `ViTParams`.
Fields documented as *shared* or *derived* are filled by `init_shared_attributes`; leave them unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import draccus

from vla_foundry.params.base_params import ConfigError, ParamsRegistry


@dataclass(frozen=True)
class ModelParams(ParamsRegistry, draccus.ChoiceRegistry):
    """Base of every model type. `type` selects the subclass; the fields here apply to all of them.

    Subclasses may define `validate()` (raising `ConfigError`); it runs after parsing, never during decoding,
    so that union resolution depends only on which field names are given.
    """

    # Own registry (not shared with the other params registries).
    _choice_registry: ClassVar[dict[str, type]] = {}

    # Checkpoint (local or s3://) to start from: a run's checkpoint file or run directory.
    resume_from_checkpoint: str | None = None
    # True: load weights only (fine-tuning). False: resume optimizer, scheduler, data position and RNG too.
    resume_weights_only: bool = False
    # Freeze every parameter of the model (sub-module flags below are per type).
    freeze: bool = False


def register_model_params(name: str):
    """Class decorator registering a `ModelParams` subclass under `name` (`--model.type name`)."""
    return ModelParams.register_subclass(name)


@register_model_params("transformer")
@dataclass(frozen=True)
class TransformerParams(ModelParams):
    """Decoder-only LLM in pure PyTorch (RoPE, RMSNorm, SwiGLU, grouped-query attention)."""

    hidden_dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    # Key/value heads for grouped-query attention; None means n_heads (plain multi-head attention).
    n_kv_heads: int | None = None
    vocab_size: int = 512
    max_seq_len: int = 2048
    # SwiGLU hidden size; None means 8/3 * hidden_dim rounded up to a multiple of `ffn_multiple_of`.
    ffn_hidden_dim: int | None = None
    ffn_multiple_of: int = 64
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_embeddings: bool = False
    is_causal: bool = True
    qk_norm: bool = False
    dropout: float = 0.0
    init_std: float = 0.02

    def validate(self) -> None:
        kv = self.n_kv_heads or self.n_heads
        if self.hidden_dim % self.n_heads != 0:
            raise ConfigError(f"model.hidden_dim={self.hidden_dim} must be divisible by model.n_heads={self.n_heads}")
        if self.n_heads % kv != 0:
            raise ConfigError(f"model.n_heads={self.n_heads} must be a multiple of model.n_kv_heads={kv}")


@register_model_params("transformer_hf")
@dataclass(frozen=True)
class TransformerHFParams(ModelParams):
    """Any `transformers` causal LM, by hub name or local directory."""

    hf_pretrained: str = ""
    trust_remote_code: bool = False
    # Attention implementation passed to transformers ("sdpa", "eager", "flash_attention_2").
    attn_implementation: str = "sdpa"

    def validate(self) -> None:
        if not self.hf_pretrained:
            raise ConfigError("model.hf_pretrained is required for a transformers model (a hub name or a local path)")


@register_model_params("vit")
@dataclass(frozen=True)
class ViTParams(ModelParams):
    """Native ViT: patch embedding, pre-norm blocks, optional CLS / register tokens."""

    img_size: int = 224
    patch_size: int = 16
    in_channels: int = 3
    hidden_dim: int = 192
    n_layers: int = 4
    n_heads: int = 3
    mlp_ratio: float = 4.0
    norm_eps: float = 1e-6
    use_cls_token: bool = False
    n_register_tokens: int = 0
    pos_embed: Literal["learned", "sincos"] = "learned"
    dropout: float = 0.0

    def validate(self) -> None:
        if self.img_size % self.patch_size != 0:
            raise ConfigError(f"vit.img_size={self.img_size} must be divisible by vit.patch_size={self.patch_size}")
        if self.hidden_dim % self.n_heads != 0:
            raise ConfigError(f"vit.hidden_dim={self.hidden_dim} must be divisible by vit.n_heads={self.n_heads}")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


@register_model_params("vit_hf")
@dataclass(frozen=True)
class ViTHFParams(ModelParams):
    """A timm model by name (e.g. `vit_base_patch16_siglip_224`) or a transformers vision tower (name or path)."""

    hf_pretrained: str = ""
    # Where the name is looked up: "timm", "transformers", or "auto" (a local directory with config.json is
    # transformers; otherwise timm).
    source: Literal["auto", "timm", "transformers"] = "auto"
    img_size: int = 224
    patch_size: int = 16

    def validate(self) -> None:
        if not self.hf_pretrained:
            raise ConfigError("vit.hf_pretrained is required for a pretrained vision tower (timm name or local path)")

    @property
    def num_patches(self) -> int:
        return (self.img_size // self.patch_size) ** 2


@register_model_params("vlm")
@dataclass(frozen=True)
class VLMParams(ModelParams):
    """Vision tower -> pixel shuffle -> MLP projector -> image embeddings at `<image>` positions -> LLM."""

    vit: ViTParams | ViTHFParams = field(default_factory=ViTParams)
    transformer: TransformerParams | TransformerHFParams = field(default_factory=TransformerParams)
    # Pixel shuffle folds factor x factor patches into one token: fewer, wider image tokens.
    pixel_shuffle_factor: int = 2
    projector_hidden_dim: int | None = None
    freeze_vit: bool = False
    freeze_transformer: bool = False

    def validate(self) -> None:
        side = self.vit.img_size // self.vit.patch_size
        if side % self.pixel_shuffle_factor != 0:
            raise ConfigError(
                f"model.pixel_shuffle_factor={self.pixel_shuffle_factor} must divide the patch grid side "
                f"{side} (vit.img_size={self.vit.img_size} / vit.patch_size={self.vit.patch_size})"
            )

    @property
    def img_num_tokens(self) -> int:
        """Image tokens per image after pixel shuffle (owned here, shared to `data.img_num_tokens`)."""
        return self.vit.num_patches // (self.pixel_shuffle_factor**2)


@register_model_params("vlm_hf")
@dataclass(frozen=True)
class VLMHFParams(ModelParams):
    """A `transformers` image-text-to-text model (SmolVLM, PaliGemma, ...) by name or local path."""

    hf_pretrained: str = ""
    trust_remote_code: bool = False
    freeze_vision: bool = False
    # Image tokens per image as the HF processor emits them; None lets the model's processor decide.
    num_image_tokens: int | None = None

    def validate(self) -> None:
        if not self.hf_pretrained:
            raise ConfigError("model.hf_pretrained is required for vlm_hf (a hub name or a local path)")

    @property
    def img_num_tokens(self) -> int | None:
        return self.num_image_tokens


@dataclass(frozen=True)
class ActionHeadParams:
    """The transformer of the diffusion / flow-matching action head."""

    hidden_dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0


@register_model_params("diffusion_policy")
@dataclass(frozen=True)
class DiffusionPolicyParams(ModelParams):
    """Action head over a vision(-language) backbone: predicts an action chunk by flow matching or DDPM/DDIM."""

    backbone: VLMParams | VLMHFParams | ViTParams | ViTHFParams = field(default_factory=VLMParams)
    # A VLM run (local or s3 directory with config_model.yaml + checkpoints) to initialise the backbone from.
    backbone_run: str | None = None
    head: ActionHeadParams = field(default_factory=ActionHeadParams)
    objective: Literal["flow_matching", "ddpm"] = "flow_matching"
    # Flow matching: integration steps at inference and the ODE solver.
    num_flow_steps: int = 10
    flow_solver: Literal["euler", "midpoint"] = "euler"
    # DDPM/DDIM.
    num_train_timesteps: int = 100
    num_inference_steps: int = 10
    prediction_type: Literal["epsilon", "sample"] = "epsilon"
    clip_sample: float = 1.0
    # Noise samples drawn per backbone pass (cheap extra supervision for the head).
    num_action_head_repeats: int = 1
    # Hidden states of the backbone's last k layers feed the head.
    backbone_num_layers_used: int = 1
    freeze_backbone: bool = False
    # Learning rate of the backbone relative to hparams.lr (0 freezes it in the optimizer).
    backbone_lr_multiplier: float = 1.0
    # Shared from the data side (derived from dataset stats and fields): leave unset.
    action_dim: int | None = None
    proprioception_dim: int | None = None
    past_lowdim_steps: int | None = None
    future_lowdim_steps: int | None = None
