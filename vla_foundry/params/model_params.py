"""Model params: one frozen dataclass per registered model type, chosen by `--model.type`.

Union-typed sub-fields (`vit: ViTParams | ViTHFParams`) resolve from the fields that are given:
`--model.vit.hf_pretrained NAME` can only be a `ViTHFParams`, `--model.vit.hidden_dim 768` only a `ViTParams`.
Fields documented as *shared* or *derived* are filled by `derive_params`; leave them unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import draccus

from vla_foundry.params.base_params import ConfigError, ParamsRegistry, derived_field


@dataclass(frozen=True)
class ModelParams(ParamsRegistry, draccus.ChoiceRegistry):
    """Base of every model type. `type` selects the subclass; the fields here apply to all of them.

    Subclasses may define `validate()` (raising `ConfigError`); it runs after parsing, never during decoding,
    so that union resolution depends only on which field names are given.
    """

    # Own registry (not shared with the other params registries).
    _choice_registry: ClassVar[dict[str, type]] = {}

    # Checkpoint (local or s3://) to start from: a run dir (its latest complete checkpoint), one of its
    # checkpoints/checkpoint_<n> directories, or a weights file (.safetensors / .pt).
    resume_from_checkpoint: str | None = None
    # True: load weights only (fine-tuning). False: resume optimizer, scheduler, data position and RNG too.
    resume_weights_only: bool = False
    # Freeze every parameter of the model (sub-module flags below are per type).
    freeze: bool = False

    # Fields a model type takes from the data params (model field -> data field; the data side owns the value, e.g.
    # dims derived from dataset statistics). Skipped for data types that lack the field.
    SHARED_FROM_DATA: ClassVar[dict[str, str]] = {}

    def shared_to_data(self, resolved: bool = True) -> dict[str, tuple[str, Any]]:
        """Values this model owns that the data params take: data field -> (owner name for messages, value).

        `resolved` is False before the resolve step has read the files a value may depend on (a backbone run).
        Skipped for data types that lack the field."""
        return {}

    def resolve_files(self) -> ModelParams:
        """These params with whatever comes from files resolved (a backbone run's config); the resolve step calls
        it after parsing. Default: nothing to read."""
        return self

    def check_data(self, data: Any) -> None:
        """Refuse data params that cannot feed this model (checked in the resolve step; may load a tokenizer)."""


def register_model_params(name: str):
    """Class decorator registering a `ModelParams` subclass under `name` (`--model.type name`)."""
    return ModelParams.register_subclass(name)


@dataclass(frozen=True)
class ActionSpec:
    """What an acting policy maps observations to: rows of `action_dim` actions over a window of
    `past_steps + 1 + future_steps` rows (the anchor row is the current step), reading `proprioception_dim` state
    values over the past and anchor rows."""

    action_dim: int
    proprioception_dim: int
    past_steps: int
    future_steps: int

    @property
    def window_length(self) -> int:
        return self.past_steps + 1 + self.future_steps


@dataclass(frozen=True)
class PolicyParams(ModelParams):
    """Base of every acting policy's params (a model that maps robot observations to action chunks): the action spec,
    shared from the robotics data. Training, `Policy`, the policy server and sim evaluation accept a model type
    exactly when its params derive from this class (see `vla_foundry.models.registry.ActingPolicy` for the model
    side); nothing tests for a policy by name."""

    action_dim: int | None = derived_field(None, "data.action_dim (dataset statistics)")
    proprioception_dim: int | None = derived_field(None, "data.proprioception_dim (dataset statistics)")
    past_lowdim_steps: int | None = derived_field(None, "data.past_lowdim_steps (or the stored window)")
    future_lowdim_steps: int | None = derived_field(None, "data.future_lowdim_steps (or the stored window)")

    SHARED_FROM_DATA: ClassVar[dict[str, str]] = {
        "action_dim": "action_dim",
        "proprioception_dim": "proprioception_dim",
        "past_lowdim_steps": "past_lowdim_steps",
        "future_lowdim_steps": "future_lowdim_steps",
    }

    @property
    def num_action_steps(self) -> int:
        """Rows of the action window: past + anchor + future."""
        return self.action_spec().window_length

    def action_spec(self) -> ActionSpec:
        """The filled action spec; a `ConfigError` naming the first unset field when the data has not filled it."""
        unset = [n for n in ("action_dim", "proprioception_dim", "future_lowdim_steps") if getattr(self, n) is None]
        if unset:
            raise ConfigError(
                f"model.{unset[0]} is unset: a policy's dimensions are shared from the robotics data "
                "(data.action_fields / data.proprioception_fields and the dataset's stats and window); build the "
                "model from a parsed robotics training config, or set model.action_dim, model.proprioception_dim, "
                "model.past_lowdim_steps and model.future_lowdim_steps"
            )
        return ActionSpec(
            action_dim=self.action_dim,
            proprioception_dim=self.proprioception_dim,
            past_steps=self.past_lowdim_steps or 0,
            future_steps=self.future_lowdim_steps,
        )


def is_policy_type(name: str) -> bool:
    """Whether the registered model type `name` is an acting policy (its params derive from `PolicyParams`)."""
    cls = ModelParams.get_known_choices().get(name)
    return cls is not None and issubclass(cls, PolicyParams)


@register_model_params("transformer")
@dataclass(frozen=True)
class TransformerParams(ModelParams):
    """Decoder-only LLM in pure PyTorch (RoPE, RMSNorm, SwiGLU, grouped-query attention)."""

    # Width of the residual stream.
    hidden_dim: int = 256
    # Transformer blocks.
    n_layers: int = 4
    # Attention heads (hidden_dim must be divisible by it).
    n_heads: int = 4
    # Key/value heads for grouped-query attention; None means n_heads (plain multi-head attention).
    n_kv_heads: int | None = None
    # Embedding rows; at least the tokenizer's vocabulary.
    vocab_size: int = 512
    # Longest sequence the rotary embedding is precomputed for.
    max_seq_len: int = 2048
    # SwiGLU hidden size; None means 8/3 * hidden_dim rounded up to a multiple of `ffn_multiple_of`.
    ffn_hidden_dim: int | None = None
    # SwiGLU hidden size is rounded up to a multiple of this.
    ffn_multiple_of: int = 64
    # RMSNorm epsilon.
    norm_eps: float = 1e-5
    # Rotary embedding base.
    rope_theta: float = 10000.0
    # Share the input embedding and output projection weights.
    tie_embeddings: bool = False
    # Causal (decoder) attention; False attends both ways.
    is_causal: bool = True
    # RMSNorm on queries and keys before attention.
    qk_norm: bool = False
    # Dropout probability in attention and MLP outputs.
    dropout: float = 0.0
    # Standard deviation of the normal weight initialisation.
    init_std: float = 0.02
    # Weight of the z-loss (mean squared log-partition of the logits) added to the cross-entropy; 0 disables it.
    z_loss_weight: float = 0.0

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

    # Hub name or local directory of the transformers causal LM.
    hf_pretrained: str = ""
    # Allow the model's own code from the hub (transformers trust_remote_code).
    trust_remote_code: bool = False
    # Attention implementation passed to transformers ("sdpa", "eager", "flash_attention_2").
    attn_implementation: str = "sdpa"
    # Weight of the z-loss added to the cross-entropy; 0 disables it.
    z_loss_weight: float = 0.0

    def validate(self) -> None:
        if not self.hf_pretrained:
            raise ConfigError("model.hf_pretrained is required for a transformers model (a hub name or a local path)")


@register_model_params("vit")
@dataclass(frozen=True)
class ViTParams(ModelParams):
    """Native ViT: patch embedding, pre-norm blocks, optional CLS / register tokens."""

    # Input image side in pixels.
    img_size: int = 224
    # Patch side in pixels (img_size must be divisible by it).
    patch_size: int = 16
    # Image channels.
    in_channels: int = 3
    # Width of the patch embeddings.
    hidden_dim: int = 192
    # Transformer blocks.
    n_layers: int = 4
    # Attention heads (hidden_dim must be divisible by it).
    n_heads: int = 3
    # MLP hidden size as a multiple of hidden_dim.
    mlp_ratio: float = 4.0
    # LayerNorm epsilon.
    norm_eps: float = 1e-6
    # Prepend a learned CLS token.
    use_cls_token: bool = False
    # Learned register tokens appended to the patches (dropped from the output).
    n_register_tokens: int = 0
    # Position embedding: learned, or fixed 2-D sine-cosine.
    pos_embed: Literal["learned", "sincos"] = "learned"
    # Dropout probability in attention and MLP outputs.
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

    # timm model name, or a transformers vision tower name / local directory.
    hf_pretrained: str = ""
    # Where the name is looked up: "timm", "transformers", or "auto" (a local directory with config.json is
    # transformers; otherwise timm).
    source: Literal["auto", "timm", "transformers"] = "auto"
    # Input image side in pixels (checked against the model when it is built).
    img_size: int = 224
    # Patch side in pixels (for the image token count).
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

    # The vision tower: a native ViT or a pretrained (timm / transformers) one.
    vit: ViTParams | ViTHFParams = field(default_factory=ViTParams)
    # The language model: a native transformer or a transformers causal LM.
    transformer: TransformerParams | TransformerHFParams = field(default_factory=TransformerParams)
    # Pixel shuffle folds factor x factor patches into one token: fewer, wider image tokens.
    pixel_shuffle_factor: int = 2
    # Hidden size of the MLP projector; None means the language model's width.
    projector_hidden_dim: int | None = None
    # Do not train the vision tower.
    freeze_vit: bool = False
    # Do not train the language model.
    freeze_transformer: bool = False
    # Id of the <image> placeholder in the tokenizer (the byte tokenizer's is 259); set when using an HF tokenizer.
    image_token_id: int = 259
    # Weight of the z-loss added to the cross-entropy; 0 disables it.
    z_loss_weight: float = 0.0
    # Per-channel mean / std the images were normalised with in training, recorded with the model so that a policy
    # built on this VLM (model.backbone_run) normalises camera images the same way.
    image_mean: tuple[float, float, float] | None = derived_field(None, "data.image_mean of the VLM's training")
    image_std: tuple[float, float, float] | None = derived_field(None, "data.image_std of the VLM's training")

    SHARED_FROM_DATA: ClassVar[dict[str, str]] = {"image_mean": "image_mean", "image_std": "image_std"}

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

    def shared_to_data(self, resolved: bool = True) -> dict[str, tuple[str, Any]]:
        return {
            "img_num_tokens": ("model.img_num_tokens", self.img_num_tokens),
            "image_size": ("model.vit.img_size", self.vit.img_size),
        }


@register_model_params("vlm_hf")
@dataclass(frozen=True)
class VLMHFParams(ModelParams):
    """A `transformers` image-text-to-text model (SmolVLM, PaliGemma, ...) by name or local path."""

    # Hub name or local directory of the transformers image-text-to-text model.
    hf_pretrained: str = ""
    # Allow the model's own code from the hub (transformers trust_remote_code).
    trust_remote_code: bool = False
    # Do not train the vision tower.
    freeze_vision: bool = False
    # Weight of the z-loss added to the cross-entropy; 0 disables it.
    z_loss_weight: float = 0.0

    def validate(self) -> None:
        if not self.hf_pretrained:
            raise ConfigError("model.hf_pretrained is required for vlm_hf (a hub name or a local path)")


def without_weight_sources(params):
    """A copy of model params with every `resume_from_checkpoint` (at any depth) cleared: for building a model whose
    weights all come from one checkpoint (inference, or a backbone loaded from a run)."""
    import dataclasses

    changes = {}
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if isinstance(value, ModelParams):
            changes[f.name] = without_weight_sources(value)
    if isinstance(params, ModelParams):
        changes["resume_from_checkpoint"] = None
    return dataclasses.replace(params, **changes) if changes else params
