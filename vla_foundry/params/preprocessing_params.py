"""Params of the preprocessing jobs (robotics, text, captions): frozen dataclasses parsed like training.

`parse_preprocessing_params(cls, argv)` composes `--config_path preset.yaml`, includes and CLI flags exactly as
training does (`vla_foundry.params.parsing.parse_params`); list-valued flags may also be given as
`--camera_names "include cams.yaml"` where the file holds the list (bare, or under a key of the same name).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal, TypeVar

import yaml

from vla_foundry.params.base_params import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class RunParams:
    """Fields every preprocessing job shares: where output goes and how Ray runs."""

    # Output directory (local or s3://); the training-ready dataset lands in <output_dir>/shards/.
    output_dir: str = ""
    # Samples per written tar shard.
    samples_per_shard: int = 100
    # Seed of the sample shuffle across shards: same inputs + same seed => identical shards.
    seed: int = 0
    # Address of an existing Ray cluster ("auto" or host:port); None starts a local Ray for the job.
    ray_address: str | None = None
    # CPUs of the local Ray started for the job; None uses every core.
    num_cpus: int | None = None
    # Above this fraction of failed inputs (episodes / files) the job fails after reading, listing them.
    max_failure_fraction: float = 0.1
    # Delete everything under output_dir first instead of resuming or refusing.
    overwrite: bool = False
    # Keep <output_dir>/_work (per-task spools and partial statistics) after the job completes.
    keep_work_dir: bool = False
    # Show a progress bar of episodes and samples.
    show_progress: bool = True
    # Record the code's git commit in processing_metadata.json (VLA Foundry's `skip_git_tagging: True` = False).
    record_git_commit: bool = True

    def validate(self) -> None:
        if not self.output_dir:
            raise ConfigError("output_dir is required (--output_dir DIR or s3://bucket/prefix)")
        if self.samples_per_shard < 1:
            raise ConfigError(f"samples_per_shard={self.samples_per_shard} must be >= 1")
        if not 0.0 <= self.max_failure_fraction <= 1.0:
            raise ConfigError(f"max_failure_fraction={self.max_failure_fraction} must be within [0, 1]")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ConfigError(f"num_cpus={self.num_cpus} must be >= 1")


@dataclass(frozen=True)
class RoboticsPreprocessingParams(RunParams):
    """Robot episodes (LeRobot, Spartan, MCAP, HDF5, Robo-DM) -> windowed robotics samples (docs/formats.md §2)."""

    # The robotics source (a converter registered by name: lerobot, spartan, or one a plugin registers).
    type: str = "lerobot"
    # Source roots (local or s3://): LeRobot dataset roots, or Spartan task folders / episode folders.
    source_episodes: list[str] = field(default_factory=list)
    # Convert only the first N episodes (None: all).
    max_episodes_to_process: int | None = None

    # Window: T = past_lowdim_steps + 1 + future_lowdim_steps rows, anchor at row past_lowdim_steps.
    past_lowdim_steps: int = 1
    # Low-dim rows after the anchor (the action horizon).
    future_lowdim_steps: int = 14
    # Image offsets relative to the anchor (e.g. [-1, 0]); frames outside the episode clamp to its edge.
    image_indices: list[int] = field(default_factory=lambda: [-1, 0])
    # Anchor every `stride` timesteps.
    stride: int = 1
    # Most padded rows allowed before the episode start / after its end; anchors needing more are not cut.
    max_past_padding: int = 1
    # Most padded rows allowed after the episode's end.
    max_future_padding: int = 14
    # Padded rows repeat the nearest valid row ("edge") or are zero ("zero"); masks mark them invalid either way.
    padding_strategy: Literal["edge", "zero"] = "edge"
    # Extra `<target>_relative` fields: {target_field: reference_field}; xyz fields are target[t] - ref[anchor],
    # rot_6d fields the rotation of target[t] in the frame of ref[anchor].
    relative_pose_fields: dict[str, str] = field(default_factory=dict)

    # Cameras to keep, in order (names after renaming); None keeps every camera of the source.
    camera_names: list[str] | None = None
    # Source camera name -> stored name; LeRobot "observation.images.X" becomes "X" unless mapped here.
    camera_rename: dict[str, str] = field(default_factory=dict)
    # An episode lacking a requested camera is dropped and counted ("skip_episode") or fails the job ("error").
    missing_camera: Literal["skip_episode", "error"] = "skip_episode"
    # An episode with NaN/Inf in any low-dim field: True fails the job naming the episode and field; False skips the
    # episode, counts its samples under dropped[non_finite] and lists it under failures (max_failure_fraction).
    fail_on_nan: bool = True
    # Stored image size [height, width]; None keeps the source size.
    image_size: list[int] | None = None
    # center_crop: scale to cover then crop the centre; fit: scale to fit and pad black; stretch: plain resize.
    resize_mode: Literal["center_crop", "fit", "stretch"] = "center_crop"
    # JPEG quality of the stored frames (1-100).
    jpeg_quality: int = 95

    # LeRobot: low-dim features to store (None: every float feature with a shape, e.g. observation.state, action).
    lowdim_fields: list[str] | None = None
    # Spartan: YAML {field_name: cumulative end index} slicing actions.npz["actions"] into named fields.
    action_fields_config_path: str | None = None
    # Spartan: robot__* observation keys to drop.
    data_discard_keys: list[str] = field(default_factory=list)
    # Spartan: YAML {task_name: {original: [...], randomized: [...], ...}}.
    language_annotations_path: str | None = None

    # Modules imported before the converter is looked up (here and on every Ray worker): `--plugins mod[,mod]`.
    plugins: list[str] = field(default_factory=list)
    # MCAP / HDF5 / Robo-DM: YAML naming the source's cameras, low-dim fields and language (docs/preprocessing.md).
    mapping_path: str | None = None
    # MCAP (required): topics are aligned to this rate on the log times; Robo-DM: resample to it. The quality
    # report takes 1 / fps as the expected timestamp step (else the median step).
    fps: float | None = None
    # MCAP: a step takes the latest message at most this old (seconds), older is a gap (None: one period); the
    # quality report: steps off the period by more than this are jitter, longer ones gaps (None: half a period).
    tolerance_s: float | None = None
    # Robo-DM: its files store low-dim values pickled; reading them runs pickle, so it must be allowed explicitly.
    trust_pickle: bool = False

    # Quality report (processing_metadata.json "quality"): which rules end the job when an episode breaks them.
    qa_fail_on: list[str] = field(default_factory=list)
    # Drop samples whose whole window is still (every step moves less than still_threshold); counted as "still".
    filter_still_samples: bool = False
    # A step is still when no value of `still_fields` changes by more than this from the previous step.
    still_threshold: float = 1e-3
    # Low-dim fields judged for stillness (None: every field of the episode).
    still_fields: list[str] | None = None
    # Still runs at least this many steps long are reported as still segments.
    qa_still_min_steps: int = 10
    # A step where an action field changes by more than this (max abs over its dims) is an action jump; None: off.
    qa_action_jump_threshold: float | None = None
    # Fields checked for action jumps (None: every field whose name contains "action").
    qa_action_fields: list[str] | None = None
    # A camera frame whose mean pixel value is at most this is black.
    qa_black_level: float = 8.0
    # A camera repeating the same frame (mean abs difference <= qa_frozen_max_diff) for this many frames is frozen.
    qa_frozen_min_frames: int = 5
    # Largest mean absolute pixel difference between two frames that still counts as the same frame.
    qa_frozen_max_diff: float = 0.0

    @property
    def window_length(self) -> int:
        return self.past_lowdim_steps + 1 + self.future_lowdim_steps

    def validate(self) -> None:
        # The converter name, the quality rule names and the input files are checked by the resolve step
        # (`vla_foundry.params.resolve.resolve_preprocessing_params`): they need the data package and the disk.
        super().validate()
        if not self.source_episodes:
            raise ConfigError('source_episodes is empty: give --source_episodes "[dir_or_s3, ...]"')
        for name in ("past_lowdim_steps", "future_lowdim_steps", "max_past_padding", "max_future_padding"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be >= 0")
        if self.stride < 1:
            raise ConfigError(f"stride={self.stride} must be >= 1")
        if not self.image_indices:
            raise ConfigError("image_indices must hold at least one offset (e.g. [0])")
        if len(set(self.image_indices)) != len(self.image_indices):
            raise ConfigError(f"image_indices={self.image_indices} holds a repeated offset")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ConfigError(f"image_size={self.image_size} must be [height, width] with positive values")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality={self.jpeg_quality} must be within [1, 100]")
        if self.max_episodes_to_process is not None and self.max_episodes_to_process < 1:
            raise ConfigError(f"max_episodes_to_process={self.max_episodes_to_process} must be >= 1")
        if self.camera_names is not None and len(set(self.camera_names)) != len(self.camera_names):
            raise ConfigError(f"camera_names={self.camera_names} holds a repeated camera")
        if self.fps is not None and self.fps <= 0:
            raise ConfigError(f"fps={self.fps} must be > 0")
        if self.tolerance_s is not None and self.tolerance_s < 0:
            raise ConfigError(f"tolerance_s={self.tolerance_s} must be >= 0")
        if self.still_threshold < 0 or self.qa_still_min_steps < 1 or self.qa_frozen_min_frames < 2:
            raise ConfigError(
                f"still_threshold={self.still_threshold} must be >= 0, qa_still_min_steps={self.qa_still_min_steps} "
                f">= 1 and qa_frozen_min_frames={self.qa_frozen_min_frames} >= 2"
            )


@dataclass(frozen=True)
class TextPreprocessingParams(RunParams):
    """Text files (jsonl / parquet / txt) -> `text_untokenized` or tokenized `text` shards."""

    # Files or directories (local or s3://) of .jsonl, .jsonl.gz, .parquet or .txt files.
    source: list[str] = field(default_factory=list)
    # Field / column holding the text (jsonl, parquet); a .txt file is one document.
    text_key: str = "text"
    # None writes `text_untokenized` samples; "byte" or a tokenizer path/name writes tokenized `text` samples.
    tokenizer: str | None = None
    # Tokenized output only: pack documents (EOS-separated) into samples of seq_len + 1 tokens; None = per document.
    seq_len: int | None = None
    # Documents shorter than this many characters are dropped and counted.
    min_chars: int = 1

    def validate(self) -> None:
        super().validate()
        if not self.source:
            raise ConfigError('source is empty: give --source "[file_or_dir, ...]"')
        if self.seq_len is not None and self.tokenizer is None:
            raise ConfigError("seq_len packs token ids: it needs --tokenizer (e.g. byte)")
        if self.seq_len is not None and self.seq_len < 1:
            raise ConfigError(f"seq_len={self.seq_len} must be >= 1")


@dataclass(frozen=True)
class CaptionPreprocessingParams(RunParams):
    """Image + caption pairs (parquet / jsonl tables, or folders of images with .txt captions) -> image_caption."""

    # Tables (.parquet / .jsonl) or folders (local or s3://).
    source: list[str] = field(default_factory=list)
    # Table columns: image path (relative paths resolve against the table's folder) or image bytes, and caption.
    image_key: str = "image_path"
    caption_key: str = "caption"
    # Re-encode images as JPEG at this [height, width] (center crop); None keeps the original bytes and format.
    image_size: list[int] | None = None
    jpeg_quality: int = 95

    def validate(self) -> None:
        super().validate()
        if not self.source:
            raise ConfigError('source is empty: give --source "[table_or_folder, ...]"')
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 1):
            raise ConfigError(f"image_size={self.image_size} must be [height, width] with positive values")


def _list_fields(cls: type) -> set[str]:
    return {f.name for f in fields(cls) if "list[" in str(f.type)}


def expand_list_includes(cls: type, argv: Sequence[str]) -> list[str]:
    """`--camera_names "include cams.yaml"` -> `--camera_names '[...]'` for list fields.

    The file may hold the list itself or a mapping with the field's name as its only key (so the same file also
    works as `<<: !include cams.yaml` inside a YAML preset).
    """
    out = list(argv)
    list_fields = _list_fields(cls)
    for i, arg in enumerate(out[:-1]):
        name = arg[2:] if arg.startswith("--") else None
        value = out[i + 1]
        if name not in list_fields or not value.startswith("include "):
            continue
        path = value[len("include ") :].strip()
        if not os.path.isfile(path):
            raise ConfigError(f"--{name}: included file not found: {path}")
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
        if isinstance(data, dict) and list(data) == [name]:
            data = data[name]
        if not isinstance(data, list):
            raise ConfigError(f"--{name}: {path} must hold a list (or a mapping {{{name}: [...]}}), got {data!r}")
        out[i + 1] = yaml.safe_dump(data, default_flow_style=True).strip()
    return out


def plugin_list_flag(argv: list[str]) -> list[str]:
    """`--plugins a.b,c` (the comma form users type) -> `--plugins '[a.b, c]'` for the list field."""
    from vla_foundry.plugins import split_plugin_names

    out = list(argv)
    for i, arg in enumerate(out[:-1]):
        if arg == "--plugins":
            out[i + 1] = "[" + ", ".join(split_plugin_names(out[i + 1])) + "]"
    return out


def parse_preprocessing_params(cls: type[T], argv: Sequence[str] | None = None) -> T:
    """Parse, validate and resolve a preprocessing params class from `--config_path`, includes and CLI flags.

    VLA Foundry's key names (`resize_images_size`, `max_padding_left`, ...) are read as this project's, with a note;
    flags are spelled as for every command (`vla_foundry.cli`: `--overwrite` alone means True).
    """
    from vla_foundry.cli import normalise_args
    from vla_foundry.params.parsing import build_params, compose_config
    from vla_foundry.params.preprocessing_aliases import apply_preprocessing_aliases

    # The flag spellings of every command (a lone bool flag, a space-separated list, ...), as vla_foundry.cli reads them.
    args = normalise_args(cls, plugin_list_flag(expand_list_includes(cls, argv or [])))
    data, sources = compose_config(args)
    params = build_params(cls, apply_preprocessing_aliases(cls, data), "", sources)
    params.validate()
    from vla_foundry.params.resolve import resolve_preprocessing_params

    return resolve_preprocessing_params(params)
