"""Data params: one frozen dataclass per data type, chosen by `--data.type`.

A run names one or more datasets (directories holding `manifest.jsonl`, local or s3://) with a weight and a
modality each: `--data.dataset_manifest [a, b] --data.dataset_weighting [0.3, 0.7]
--data.dataset_modality [robotics, robotics]`. Fields documented as *shared* are filled from their owner by
`derive_params`; leave them unset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

import draccus

from vla_foundry.params.base_params import ConfigError, ParamsRegistry, derived_field
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams

MODALITIES = ("text", "text_untokenized", "image_caption", "robotics", "lerobot")
# Modalities read straight from a source dataset (no shards): which data.type streams them. Stream sources of
# plugins add theirs when they register (vla_foundry.data.streaming.registry).
STREAMED_MODALITIES = {"lerobot": "robotics"}
# Instruction types a robotics sample's language_instructions.json may hold (docs/formats.md §2).
INSTRUCTION_TYPES = ("original", "randomized", "verbose", "alternative")
# Who decodes a `lerobot` stream (data.stream_decoding).
STREAM_DECODING = ("ray", "loader")


def known_modalities() -> list[str]:
    """Every valid data.dataset_modality: the built-in ones and the streamed modalities registered so far."""
    return list(dict.fromkeys([*MODALITIES, *STREAMED_MODALITIES]))


@dataclass(frozen=True)
class DataParams(ParamsRegistry, draccus.ChoiceRegistry):
    """Base of every data type: which datasets, how they mix, and how they are streamed."""

    # Own registry (not shared with the other params registries).
    _choice_registry: ClassVar[dict[str, type]] = {}

    # Dataset directories or their manifest.jsonl paths (local or s3://).
    dataset_manifest: list[str] = field(default_factory=list)
    # Relative sampling weight per dataset (normalised to sum to 1).
    dataset_weighting: list[float] = field(default_factory=list)
    # Modality per dataset: one of text, text_untokenized, image_caption, robotics.
    dataset_modality: list[str] = field(default_factory=list)
    # Validation datasets (same form); empty means no validation.
    val_dataset_manifest: list[str] = field(default_factory=list)
    # Relative sampling weight per validation dataset; empty means equal weights.
    val_dataset_weighting: list[float] = field(default_factory=list)
    # Wrap to a new (reshuffled) epoch of a dataset's shards when they run out; otherwise running out is an error.
    allow_multiple_epochs: bool = True
    # Data loader worker processes per training process.
    num_workers: int = 2
    # Batches each loader worker prepares ahead.
    prefetch_factor: int = 2
    # Samples held in the shuffle buffer of each loader worker.
    shuffle_buffer_size: int = 256
    # Above this fraction of undecodable samples in a checkpoint interval, training stops with the list.
    max_bad_sample_fraction: float = 0.01
    seed: int | None = derived_field(None, "hparams.seed")

    def validate(self) -> None:
        n = len(self.dataset_manifest)
        if len(self.dataset_weighting) != n or len(self.dataset_modality) != n:
            raise ConfigError(
                "data.dataset_manifest, data.dataset_weighting and data.dataset_modality must have the same length; "
                f"got {n}, {len(self.dataset_weighting)} and {len(self.dataset_modality)}"
            )
        if self.val_dataset_manifest and len(self.val_dataset_weighting) not in (0, len(self.val_dataset_manifest)):
            raise ConfigError(
                "data.val_dataset_weighting must be empty or as long as data.val_dataset_manifest; "
                f"got {len(self.val_dataset_weighting)} and {len(self.val_dataset_manifest)}"
            )
        for i, modality in enumerate(self.dataset_modality):
            if modality not in known_modalities():
                raise ConfigError(
                    f"data.dataset_modality[{i}]={modality!r} is not a modality; valid: {', '.join(known_modalities())}"
                )
        for i, weight in enumerate(self.dataset_weighting):
            if weight < 0:
                raise ConfigError(f"data.dataset_weighting[{i}]={weight} must be >= 0")
        if n and sum(self.dataset_weighting) <= 0:
            raise ConfigError("data.dataset_weighting must have a positive sum")
        if not 0.0 <= self.max_bad_sample_fraction <= 1.0:
            raise ConfigError(f"data.max_bad_sample_fraction={self.max_bad_sample_fraction} must be within [0, 1]")


@dataclass(frozen=True)
class StreamingParams(RoboticsPreprocessingParams):
    """The robotics preprocessing params as the cut of a training stream (`data.streaming`): the sources are the
    `lerobot` entries of data.dataset_manifest (source_episodes stays empty) and `output_dir` is the stream cache,
    filled by training when unset; the job-only fields (samples_per_shard, jpeg_quality, ray_address, num_cpus,
    overwrite, ...) are not used by a stream."""

    def validate(self) -> None:
        import dataclasses

        if self.type != "lerobot":
            raise ConfigError(f"data.streaming.type={self.type!r}: only lerobot sources are streamed; valid: lerobot")
        if self.source_episodes:
            raise ConfigError(
                "data.streaming.source_episodes must stay empty: streamed LeRobot roots are the "
                "data.dataset_manifest entries of modality lerobot"
            )
        # The offline job's checks of the window, cameras and image size (its output and sources are not ours).
        RoboticsPreprocessingParams.validate(
            dataclasses.replace(self, output_dir=self.output_dir or "unset", source_episodes=["unset"])
        )


def register_data_params(name: str):
    """Class decorator registering a `DataParams` subclass under `name` (`--data.type name`)."""
    return DataParams.register_subclass(name)


@register_data_params("text")
@dataclass(frozen=True)
class TextDataParams(DataParams):
    """Pre-tokenized text: each sample is a list of token ids, randomly cropped to `seq_len + 1`."""

    # Tokens per sample (the model reads seq_len + 1 ids: inputs and shifted targets).
    seq_len: int = 2048
    # Id used to pad samples shorter than seq_len + 1 (masked out of the loss).
    pad_token_id: int = 0


@register_data_params("text_untokenized")
@dataclass(frozen=True)
class TextUntokenizedDataParams(DataParams):
    """Raw text tokenized on the fly, then packed (concatenated across samples) or padded to `seq_len + 1`."""

    # Tokens per sample (the model reads seq_len + 1 ids: inputs and shifted targets).
    seq_len: int = 2048
    # "byte" for the built-in byte-level tokenizer, or a transformers tokenizer name / local path.
    tokenizer: str = "byte"
    # Concatenate documents across samples (no padding); False pads each document on its own.
    pack: bool = True


@register_data_params("image_caption")
@dataclass(frozen=True)
class ImageCaptionDataParams(DataParams):
    """Image + caption pairs: image processed to `image_size`, caption prefixed by `<image>` placeholders."""

    # Tokens per sample, image placeholders included.
    seq_len: int = 256
    # "byte" for the built-in byte-level tokenizer, or a transformers tokenizer name / local path.
    tokenizer: str = "byte"
    # A transformers processor name / local path; when given it replaces the tokenizer and image processing.
    processor: str | None = None
    # Shared from the model (vision tower input size / image tokens per image).
    image_size: int | None = None
    # Shared from the model: image tokens per image (the `<image>` placeholders written before each caption).
    img_num_tokens: int | None = None
    # Per-channel mean the vision tower expects (images in [0, 1] are normalised with mean and std).
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    # Per-channel standard deviation the vision tower expects.
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class NormalizationParams:
    """How low-dimensional fields are normalised with the dataset statistics (stats.json)."""

    # How actions / proprioception are normalised with the dataset statistics.
    method: Literal["std", "min_max", "percentile_1_99", "percentile_5_95", "none"] = "std"
    # One statistic per field (global) or per window row (per_timestep).
    scope: Literal["global", "per_timestep"] = "global"
    # Added to the denominator (std or range) to avoid division by zero.
    epsilon: float = 1e-6
    # Per-field method overrides: {field_name: method}.
    field_overrides: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AugmentationParams:
    """Image augmentation for training (never applied at validation or inference)."""

    # Augment training images (crop and colour jitter, one draw per sample for all its views).
    enabled: bool = False
    # Random crop keeping this fraction of each side, then resized back.
    crop_scale: float = 0.9
    # Colour jitter: maximal relative brightness change.
    brightness: float = 0.2
    # Colour jitter: maximal relative contrast change.
    contrast: float = 0.2
    # Colour jitter: maximal relative saturation change.
    saturation: float = 0.2
    # Colour jitter: maximal hue shift (fraction of the colour circle).
    hue: float = 0.0
    # Random shift: the image moves by up to this many pixels along each axis (edges repeated into the gap), its
    # scale unchanged, so a policy cannot tie actions to exact pixel positions; 0 = off.
    shift: int = 0

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_scale <= 1.0:
            raise ConfigError(f"data.augmentation.crop_scale must be in (0, 1], got {self.crop_scale}")
        if self.shift < 0:
            raise ConfigError(f"data.augmentation.shift must be >= 0 pixels, got {self.shift}")


@register_data_params("robotics")
@dataclass(frozen=True)
class RoboticsDataParams(DataParams):
    """Robot episodes cut into windows (docs/formats.md §2): actions, proprioception, camera images, instructions."""

    # Low-dim fields concatenated (in this order) into the action and proprioception vectors.
    action_fields: list[str] = field(default_factory=list)
    # Low-dim fields concatenated (in this order) into the proprioception vector.
    proprioception_fields: list[str] = field(default_factory=list)
    # Cameras and image offsets (relative to the anchor) to load; None means all stored ones.
    camera_names: list[str] | None = None
    # Image offsets relative to the anchor to load (e.g. [-1, 0]); None means all stored ones.
    image_indices: list[int] | None = None
    # Window around the anchor; None means the stored window (preprocessing_config.yaml).
    past_lowdim_steps: int | None = None
    # Rows after the anchor; None means the stored window.
    future_lowdim_steps: int | None = None
    # Instruction types drawn from (original, randomized, verbose, alternative); [] trains without instructions.
    language_instruction_types: list[str] = field(default_factory=lambda: ["original"])
    # Side of the square images the model reads; None keeps the stored size (shared from the backbone).
    image_size: int | None = None
    # A sample lacking a requested camera: error, or zero images (masked) with zero_pad.
    missing_camera: Literal["error", "zero_pad"] = "error"
    normalization: NormalizationParams = field(default_factory=NormalizationParams)
    augmentation: AugmentationParams = field(default_factory=AugmentationParams)
    # Tokenizer of the instructions: "byte" or a transformers name / path (an HF backbone's own).
    tokenizer: str = "byte"
    # Instruction tokens kept (padded or cut to this length).
    max_instruction_tokens: int = 64
    # How `lerobot` entries of dataset_manifest are cut into samples while training (window, cameras, image size,
    # resize mode): the params of the offline robotics job, so one preset serves both. Its output_dir is where the
    # stream's derived files (layout, statistics) are cached; unset, `<save_path>/stream_cache`.
    streaming: StreamingParams = field(default_factory=StreamingParams)
    # Who decodes and cuts a `lerobot` stream: "ray" (Ray Data tasks, data.ray_* below; a cluster's CPUs with
    # data.ray_address) or "loader" (the loader's own data.num_workers worker processes, as for shards: no Ray, and
    # the order of samples is deterministic).
    stream_decoding: str = "ray"
    # Ray cluster of the stream's CPU work ("auto" or host:port); None starts a local Ray (per node) when needed.
    ray_address: str | None = None
    # Ray Data tasks decoding and cutting episodes at once (and the CPUs of a local Ray started for the stream).
    ray_num_workers: int = 2
    # Memory (MiB) reserved for each decoding task on the Ray cluster; None reserves none.
    ray_worker_memory_mb: int | None = None
    # Object store of a local Ray started for the stream (MiB).
    ray_object_store_mb: int = 512
    # Widths of the concatenated action / proprioception fields, from the datasets' stats.json (shared to the model).
    action_dim: int | None = derived_field(None, "dataset statistics of data.action_fields")
    proprioception_dim: int | None = derived_field(None, "dataset statistics of data.proprioception_fields")

    def validate(self) -> None:
        super().validate()
        if not self.action_fields and not self.dataset_manifest:
            # No dataset at all is the first thing to fix: the action fields are names of the dataset's fields.
            raise ConfigError(
                "data.dataset_manifest is empty: name at least one robotics dataset (a preprocessed directory or its "
                "manifest.jsonl; a LeRobot root with data.dataset_modality [lerobot]), then data.action_fields from "
                "its low-dim fields"
            )
        if not self.action_fields:
            raise ConfigError("data.action_fields must name at least one low-dim field for robotics data")
        for name in self.language_instruction_types:
            if name not in INSTRUCTION_TYPES:
                from vla_foundry.names import closest_names

                close = closest_names(name, INSTRUCTION_TYPES, n=2)
                raise ConfigError(
                    f"data.language_instruction_types: {name!r} is not an instruction type"
                    f"{'; closest: ' + ', '.join(close) if close else ''}; valid: {', '.join(INSTRUCTION_TYPES)}"
                )
        if self.ray_num_workers < 1:
            raise ConfigError(f"data.ray_num_workers={self.ray_num_workers} must be >= 1")
        if self.stream_decoding not in STREAM_DECODING:
            from vla_foundry.names import closest_names

            close = closest_names(self.stream_decoding, STREAM_DECODING, n=1)
            raise ConfigError(
                f"data.stream_decoding={self.stream_decoding!r} is not a way to decode a stream"
                f"{'; closest: ' + ', '.join(close) if close else ''}; valid: {', '.join(STREAM_DECODING)}"
            )
        for name in (self.normalization.method, *self.normalization.field_overrides.values()):
            valid = ("std", "min_max", "percentile_1_99", "percentile_5_95", "none")
            if name not in valid:
                raise ConfigError(f"data.normalization method {name!r} is not valid; valid: {', '.join(valid)}")
