"""Params of `diffusion_policy`: the action head, its backbone choices and the sampling settings.

Pure data: the hooks that read a backbone run or load a tokenizer (`resolve_files`, `check_data`) are called by the
resolve step only and run the code in `resolve.py` beside this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.model_params import (
    PolicyParams,
    TransformerParams,
    ViTHFParams,
    ViTParams,
    VLMHFParams,
    VLMParams,
    register_model_params,
)


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


def check_conditioning(conditioning: str, backbone_type: str) -> None:
    """A ConfigError when `conditioning` needs image tokens the backbone kind does not place in its sequence."""
    if conditioning == "action_and_image_tokens" and backbone_type != "vlm":
        raise ConfigError(
            f"model.conditioning=action_and_image_tokens needs a native `vlm` backbone (image tokens at the start of "
            f"its sequence); model.backbone.type is {backbone_type!r}: use action_token or all_tokens"
        )


@register_model_params("diffusion_policy")
@dataclass(frozen=True)
class DiffusionPolicyParams(PolicyParams):
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
    # to the instruction (vision-only backbones: each image's mean patch token); all_tokens: every valid token;
    # action_and_image_tokens (native `vlm` only): the `<action>` token and every image token, not the instruction's
    # (where each part of the image is, at a fraction of all_tokens' cost in the head).
    conditioning: Literal["action_token", "all_tokens", "action_and_image_tokens"] = "action_token"
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
        # With a backbone run, `backbone` is a placeholder until the resolve step; build_backbone checks it then.
        if self.backbone_run is None:
            check_conditioning(self.conditioning, self.backbone.type)

    def resolve_files(self) -> DiffusionPolicyParams:
        """`backbone` replaced by the params in the backbone run's config_model.yaml (the resolve step's hook)."""
        from vla_foundry.models.diffusion_policy.resolve import resolve_backbone_run

        return resolve_backbone_run(self)

    def check_data(self, data: Any) -> None:
        """Refuse a data processor that cannot feed this backbone (tokenizer / vocabulary mismatch); the resolve
        step's hook, it may load the tokenizer."""
        from vla_foundry.models.diffusion_policy.resolve import check_tokenizer

        check_tokenizer(self, data)
