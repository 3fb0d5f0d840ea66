"""Model params: one frozen dataclass per registered model type, chosen by `--model.type`.

Union-typed sub-fields (`vit: ViTParams | ViTHFParams`) resolve from the fields that are given:
`--model.vit.hf_pretrained NAME` can only be a `ViTHFParams`, `--model.vit.hidden_dim 768` only a `ViTParams`.
Fields documented as *shared* or *derived* are filled by `init_shared_attributes`; leave them unset.
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


@dataclass(frozen=True)
class CLIPBackboneParams:
    """A `transformers` CLIP-style image + text dual encoder (CLIP, SigLIP), by name or local path, used as a policy
    backbone. Selected by its `clip_pretrained` field (`--model.backbone.clip_pretrained PATH`)."""

    # Hub name or local directory of the CLIP / SigLIP model.
    clip_pretrained: str = ""
    # Input resolution of the vision tower; checked against the model's config when it is built.
    img_size: int = 224
    # Do not train the vision encoder.
    freeze_vision: bool = False
    # Do not train the text encoder.
    freeze_text: bool = False

    @property
    def type(self) -> str:
        return "clip_hf"

    def validate(self) -> None:
        if not self.clip_pretrained:
            raise ConfigError("model.backbone.clip_pretrained is required for a CLIP backbone (a hub name or a path)")


@dataclass(frozen=True)
class ActionHeadParams:
    """The transformer of the diffusion / flow-matching action head (bidirectional, pre-norm)."""

    # Width of the head's transformer.
    hidden_dim: int = 256
    # Transformer blocks of the head.
    n_layers: int = 4
    # Attention heads of the head (hidden_dim must be divisible by it).
    n_heads: int = 4
    # MLP hidden size as a multiple of hidden_dim.
    mlp_ratio: float = 4.0
    # Dropout probability in attention and MLP outputs.
    dropout: float = 0.0
    # LayerNorm epsilon.
    norm_eps: float = 1e-6
    # Standard deviation of the normal weight initialisation.
    init_std: float = 0.02

    def validate(self) -> None:
        if self.hidden_dim % self.n_heads != 0:
            raise ConfigError(
                f"model.head.hidden_dim={self.hidden_dim} must be divisible by model.head.n_heads={self.n_heads}"
            )


# `transformer` (a language model alone) is for policies without a camera: it reads the instruction only. It comes
# last so that a union given by fields alone still resolves to the vision(-language) kinds first.
BackboneParams = VLMParams | VLMHFParams | ViTParams | ViTHFParams | CLIPBackboneParams | TransformerParams
# Model types a diffusion policy's backbone may be (and a backbone run may hold).
BACKBONE_TYPES = ("vlm", "vlm_hf", "vit", "vit_hf", "clip_hf", "transformer")


@register_model_params("diffusion_policy")
@dataclass(frozen=True)
class DiffusionPolicyParams(ModelParams):
    """Action head over a vision(-language) backbone: predicts an action chunk by flow matching or DDPM/DDIM.

    The head is a transformer over [conditioning tokens | time | proprioception | noisy action tokens]; it sees
    the whole window of `past_lowdim_steps + 1 + future_lowdim_steps` action rows (past rows are given clean when
    known, the loss covers the rows from the anchor on).
    """

    # The backbone kind is chosen by its fields or `type` (vlm, vlm_hf, vit, vit_hf, clip_hf).
    backbone: BackboneParams = field(default_factory=VLMParams)
    # A run trained here (local or s3 run directory, or one of its checkpoint files) to initialise the backbone
    # from: its config_model.yaml replaces `backbone` (in the resolve step) and its weights are loaded when the policy is
    # built for training. This is the VLM -> VLA hand-off.
    backbone_run: str | None = None
    # What the head reads from the backbone. action_token: the hidden states of the `<action>` query token appended
    # to the instruction (vision-only backbones: each image's mean patch token); all_tokens: every valid token.
    conditioning: Literal["action_token", "all_tokens"] = "action_token"
    # Hidden states of the backbone's last k layers feed the head (k tokens per query position).
    backbone_num_layers_used: int = 1
    # Native VLM backbone: ids of the `<action>` query token and of padding in the instruction's tokenizer (the byte
    # tokenizer's defaults; checked against data.tokenizer).
    action_token_id: int = 260
    # Id of padding in the instruction's tokenizer.
    pad_token_id: int = 256
    # The action head's transformer.
    head: ActionHeadParams = field(default_factory=ActionHeadParams)
    # Training objective of the head: flow matching or DDPM (denoising).
    objective: Literal["flow_matching", "ddpm"] = "flow_matching"
    # Flow matching: integration steps at inference and the ODE solver.
    num_flow_steps: int = 10
    # ODE solver of flow-matching inference.
    flow_solver: Literal["euler", "midpoint"] = "euler"
    # DDPM/DDIM: training steps, inference steps, what the network predicts, clipping of the predicted clean
    # chunk (normalised units; 0 disables), noise schedule, and the sampler (ddim is deterministic).
    num_train_timesteps: int = 100
    # DDPM/DDIM: denoising steps at inference.
    num_inference_steps: int = 10
    # DDPM/DDIM: the network predicts the noise (epsilon) or the clean chunk (sample).
    prediction_type: Literal["epsilon", "sample"] = "epsilon"
    # DDPM/DDIM: clip the predicted clean chunk to [-x, x] in normalised units (0 disables).
    clip_sample: float = 1.0
    # DDPM/DDIM: noise schedule.
    beta_schedule: Literal["cosine", "linear"] = "cosine"
    # DDPM/DDIM: sampler at inference (ddim is deterministic).
    ddpm_sampler: Literal["ddim", "ddpm"] = "ddim"
    # Noise samples drawn per backbone pass (cheap extra supervision for the head).
    num_action_head_repeats: int = 1
    # Feed the known past action rows clean (not noised) to the head, in training and at inference.
    condition_on_past_actions: bool = True
    # Freeze the whole backbone, or only its vision tower; or train only its last n layers (None: all layers).
    freeze_backbone: bool = False
    # Freeze only the backbone's vision tower.
    freeze_backbone_vision: bool = False
    # Train only the backbone's last n layers (None: all layers).
    backbone_trainable_layers: int | None = None
    # Learning rate of the backbone relative to hparams.lr (0 leaves it out of the optimizer).
    backbone_lr_multiplier: float = 1.0
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

    def shared_to_data(self, resolved: bool = True) -> dict[str, tuple[str, Any]]:
        # With a backbone run, `backbone` is a placeholder until the resolve step has read the run's config.
        if self.backbone_run is not None and not resolved:
            return {}
        backbone = self.backbone
        img_size = backbone.vit.img_size if hasattr(backbone, "vit") else getattr(backbone, "img_size", None)
        return {"image_size": ("model.backbone image size", img_size)} if img_size is not None else {}

    def validate(self) -> None:
        if self.backbone.type not in BACKBONE_TYPES:
            raise ConfigError(
                f"model.backbone.type={self.backbone.type!r} is not valid; valid: {', '.join(BACKBONE_TYPES)}"
            )
        checks = [
            ("num_action_head_repeats", self.num_action_head_repeats, 1),
            ("backbone_num_layers_used", self.backbone_num_layers_used, 1),
            ("num_flow_steps", self.num_flow_steps, 1),
            ("num_train_timesteps", self.num_train_timesteps, 2),
            ("num_inference_steps", self.num_inference_steps, 1),
        ]
        for name, value, low in checks:
            if value < low:
                raise ConfigError(f"model.{name}={value} must be >= {low}")
        if self.objective == "ddpm" and self.num_inference_steps > self.num_train_timesteps:
            raise ConfigError(
                f"model.num_inference_steps={self.num_inference_steps} must be <= "
                f"model.num_train_timesteps={self.num_train_timesteps}"
            )
        if self.backbone_lr_multiplier < 0:
            raise ConfigError(f"model.backbone_lr_multiplier={self.backbone_lr_multiplier} must be >= 0")
        if self.backbone_trainable_layers is not None and self.backbone_trainable_layers < 0:
            raise ConfigError(f"model.backbone_trainable_layers={self.backbone_trainable_layers} must be >= 0")
        if self.clip_sample < 0:
            raise ConfigError(f"model.clip_sample={self.clip_sample} must be >= 0 (0 disables clipping)")

    @property
    def num_action_steps(self) -> int:
        """Rows of the action window the head predicts: past + anchor + future."""
        if self.future_lowdim_steps is None:
            raise ConfigError(
                "model.future_lowdim_steps is unset: it is shared from the robotics data (data.future_lowdim_steps) "
                "or the dataset's preprocessing_config.yaml"
            )
        return (self.past_lowdim_steps or 0) + 1 + self.future_lowdim_steps

    def resolve_files(self) -> DiffusionPolicyParams:
        return self.resolve_backbone_run()

    def resolve_backbone_run(self) -> DiffusionPolicyParams:
        """These params with `backbone` replaced by the params in the backbone run's config_model.yaml (reads one
        small file, local or s3).

        Called by the resolve step, never while parsing; a backbone given explicitly that differs from the run's is
        an error (a default backbone is simply replaced).
        """
        if self.backbone_run is None:
            return self
        import dataclasses

        from vla_foundry.params.parsing import load_params_from_yaml

        config_path = backbone_run_config_path(self.backbone_run)
        run_params = load_params_from_yaml(ModelParams, config_path)
        if run_params.type not in BACKBONE_TYPES:
            raise ConfigError(
                f"model.backbone_run={self.backbone_run!r}: {config_path} holds a {run_params.type!r} model; "
                f"a backbone run must hold one of: {', '.join(BACKBONE_TYPES)}"
            )
        # The run's weights supersede whatever it was itself initialised from.
        run_params = with_training_image_stats(without_weight_sources(run_params), self.backbone_run)
        given = without_weight_sources(self.backbone)
        if given != VLMParams() and isinstance(given, VLMParams) and isinstance(run_params, VLMParams):
            # Normalisation is recorded by the run, not part of the architecture compared here.
            given = dataclasses.replace(given, image_mean=run_params.image_mean, image_std=run_params.image_std)
        if given not in (VLMParams(), run_params):
            raise ConfigError(
                f"model.backbone ({given.type}) differs from the backbone run's {config_path} ({run_params.type}); "
                "the backbone is taken from model.backbone_run: leave model.backbone unset or give the same "
                "architecture"
            )
        return dataclasses.replace(self, backbone=run_params)

    def check_data(self, data) -> None:
        """Refuse a data processor that cannot feed this backbone (tokenizer / vocabulary mismatch)."""
        tokenizer = getattr(data, "tokenizer", None)
        backbone = self.backbone
        hf_name = getattr(backbone, "hf_pretrained", None) if isinstance(backbone, VLMHFParams) else None
        if isinstance(backbone, CLIPBackboneParams):
            hf_name = backbone.clip_pretrained
        if hf_name is not None and tokenizer != hf_name:
            raise ConfigError(
                f"data.tokenizer={tokenizer!r} does not match the backbone's processor {hf_name!r}; an HF backbone "
                f"reads instructions tokenized by its own tokenizer: set data.tokenizer {hf_name}"
            )
        if isinstance(backbone, VLMParams) and tokenizer is not None:
            self._check_native_tokenizer(tokenizer)

    def _check_native_tokenizer(self, tokenizer: str) -> None:
        """The native VLM path needs the tokenizer's special ids and a vocabulary that holds them."""
        from vla_foundry.data.processors.tokenizers import get_tokenizer

        tok = get_tokenizer(tokenizer)
        expected = {
            "model.action_token_id": (self.action_token_id, tok.action_token_id, "<action>"),
            "model.pad_token_id": (self.pad_token_id, tok.pad_token_id, "<pad>"),
            "model.backbone.image_token_id": (self.backbone.image_token_id, tok.image_token_id, "<image>"),
        }
        for name, (given, actual, token) in expected.items():
            if given != actual:
                raise ConfigError(
                    f"{name}={given} but data.tokenizer {tokenizer!r} gives {token} the id {actual}; set {name} {actual}"
                )
        transformer = self.backbone.transformer
        if isinstance(transformer, TransformerParams) and transformer.vocab_size < tok.vocab_size:
            raise ConfigError(
                f"model.backbone.transformer.vocab_size={transformer.vocab_size} is smaller than data.tokenizer "
                f"{tokenizer!r}'s {tok.vocab_size} ids (the instruction and the <action> token must be embeddable)"
            )


def with_training_image_stats(params: ModelParams, run: str) -> ModelParams:
    """A native VLM's params with the image mean / std it was trained with: recorded in its config_model.yaml, or
    (runs saved before they were recorded there) the `data` block of the run's config.yaml. Neither: a warning
    naming the run (its images would be normalised with the 0.5 / 0.5 defaults)."""
    import dataclasses
    import warnings

    import yaml

    from vla_foundry import storage

    if not isinstance(params, VLMParams) or params.image_mean is not None:
        return params
    config = storage.join(storage.dirname(backbone_run_config_path(run)), "config.yaml")
    data = (yaml.safe_load(storage.read_text(config)) or {}).get("data") or {} if storage.exists(config) else {}
    if data.get("image_mean") and data.get("image_std"):
        return dataclasses.replace(params, image_mean=tuple(data["image_mean"]), image_std=tuple(data["image_std"]))
    warnings.warn(
        f"model.backbone_run={run}: neither its config_model.yaml nor {config} records the image mean / std the VLM "
        "was trained with; camera images are normalised with mean 0.5, std 0.5 (set --model.backbone.image_mean "
        "and --model.backbone.image_std if it used others)",
        stacklevel=2,
    )
    return params


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


def backbone_run_config_path(backbone_run: str) -> str:
    """config_model.yaml of a run directory, or of the run holding a checkpoint file (`run/checkpoints/x.pt`)."""
    from vla_foundry import storage

    path = backbone_run.rstrip("/")
    if path.endswith((".pt", ".safetensors")):
        path = storage.dirname(storage.dirname(path))
    return storage.join(path, "config_model.yaml")
