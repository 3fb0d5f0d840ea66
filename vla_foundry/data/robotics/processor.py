"""The robotics processor: a stored window (lowdim.npz + camera JPEGs + instructions) -> model tensors.

Training and inference share it. For a sample it crops the stored window to the configured past/future steps
around the anchor, concatenates the action and proprioception fields, normalises them, decodes the camera images
(`camera_names` x `image_indices`, camera-major), resizes/crops them to `image_size`, optionally augments them (same
parameters for all views; training only), and tokenizes one instruction drawn from `language_instruction_types`.

Output per sample (T = past + 1 + future):
  actions (T, action_dim) normalised; proprioception (past + 1, proprio_dim) normalised; past_mask, future_mask (T)
  bool; images (n_cameras * n_image_indices, 3, H, W) uint8 (the consumer turns them into floats in [0, 1] on its
  device with `images_to_unit_float`; the vision tower then applies its own mean/std); image_mask (n_images) bool
  (False for a zero-filled missing camera); input_ids, attention_mask (L); metadata (dict).

Images stay uint8 up to the device: a float32 batch is four times the bytes to convert, copy between processes and
transfer, and the conversion costs the loader about as much as a quarter of the JPEG decode.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import yaml

from vla_foundry import storage
from vla_foundry.data.processors.images import (
    augment,
    cover_and_center_crop_pil,
    decode_planar,
    draw_augmentation,
    open_image,
    planar_uint8,
    resize_image,
    resize_shorter_and_center_crop,
    to_uint8_tensor,
    unit_float_tensor,
)
from vla_foundry.data.processors.tokenizers import get_tokenizer
from vla_foundry.data.robotics.normalizer import NORMALIZER_CONFIG, FieldSpec, Normalizer, NormalizerConfig
from vla_foundry.data.robotics.npz import NpzArrays
from vla_foundry.data.robotics.stats import Stats, StatsError, crop_stats_window, field_dim, load_stats, merge_stats
from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import AugmentationParams, RoboticsDataParams
from vla_foundry.structured_files import read_structured_file

PROCESSOR_CONFIG = "config_processor.yaml"
STATS_NAME = "stats.json"
PREPROCESSING_CONFIG = "preprocessing_config.yaml"


class SampleError(ValueError):
    """One sample cannot be used (missing member, undecodable image, bad array); it is skipped and counted."""


# Distinct instructions whose token ids are kept (a dataset has few; the bound only caps pathological data).
MAX_CACHED_INSTRUCTIONS = 65536


@dataclass(slots=True)
class DeferredSample:
    """A sample as the loader holds it until `collate` (the fast path): numpy parts, the per-element work done once
    per batch. actions (T, A) / proprioception (past + 1, P) float64 not yet normalised; masks (T,) bool; images
    (N, 3, H, W) uint8 (a row of the loader's batch buffer) or a list of uint8 (3, H, W) views (None = missing);
    image_mask (N,) bool; the chosen instruction (tokenized in `collate`); metadata."""

    actions: np.ndarray
    proprioception: np.ndarray
    past_mask: np.ndarray
    future_mask: np.ndarray
    images: np.ndarray | list[np.ndarray | None]
    image_mask: np.ndarray
    instruction: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class DatasetLayout:
    """How a robotics dataset's samples were cut (from its preprocessing_config.yaml)."""

    dataset_dir: str
    past_lowdim_steps: int
    future_lowdim_steps: int
    camera_names: list[str]
    image_indices: list[int]
    # Stored [height, width] of the camera images (None when preprocessing kept the source size), and the resize
    # preprocessing used to reach it (center_crop, fit or stretch).
    image_size: list[int] | None = None
    resize_mode: str = "center_crop"
    # Camera -> [height, width] its images were stored at (preprocessing_config.yaml's camera_image_sizes; empty
    # for datasets written before it was recorded).
    camera_image_sizes: dict[str, list[int]] = field(default_factory=dict)


# Layouts read by this process, by (local file, its mtime and size): every window builds its pipeline anew (in the
# loader process and in each worker, which inherit this from the parent), and parsing the YAML cost about as much
# CPU as a window's first hundred samples.
_LAYOUT_CACHE: dict[tuple[str, int, int], DatasetLayout] = {}


def read_dataset_layout(dataset_dir: str) -> DatasetLayout:
    """Read window, cameras and image offsets from `<dataset_dir>/preprocessing_config.yaml` (a local file is parsed
    again only when it changed)."""
    path = storage.join(dataset_dir, PREPROCESSING_CONFIG)
    if storage.is_remote(path):
        return _read_dataset_layout(dataset_dir, path)
    try:
        st = os.stat(path)
    except OSError:
        return _read_dataset_layout(dataset_dir, path)  # says what is missing
    key = (path, st.st_mtime_ns, st.st_size)
    if key not in _LAYOUT_CACHE:
        _LAYOUT_CACHE[key] = _read_dataset_layout(dataset_dir, path)
    return _LAYOUT_CACHE[key]


def _read_dataset_layout(dataset_dir: str, path: str) -> DatasetLayout:
    cfg = read_structured_file(
        path,
        ConfigError,
        fix="re-run preprocessing to rewrite it (it records the window, cameras and image offsets)",
        missing=f"{path} does not exist; robotics datasets need it (docs/formats.md §4)",
    )
    missing = [k for k in ("past_lowdim_steps", "future_lowdim_steps", "image_indices") if k not in cfg]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}")
    return DatasetLayout(
        dataset_dir=dataset_dir,
        past_lowdim_steps=int(cfg["past_lowdim_steps"]),
        future_lowdim_steps=int(cfg["future_lowdim_steps"]),
        camera_names=list(cfg.get("camera_names") or []),
        image_indices=[int(i) for i in cfg["image_indices"]],
        image_size=[int(x) for x in cfg["image_size"]] if cfg.get("image_size") else None,
        resize_mode=str(cfg.get("resize_mode") or "center_crop"),
        camera_image_sizes={str(c): [int(x) for x in hw] for c, hw in (cfg.get("camera_image_sizes") or {}).items()},
    )


@dataclass(frozen=True)
class ProcessorConfig:
    """Everything (besides the normaliser) that turns raw observations into model inputs; config_processor.yaml."""

    action_fields: list[str]
    proprioception_fields: list[str]
    camera_names: list[str]
    image_indices: list[int]
    past_lowdim_steps: int
    future_lowdim_steps: int
    image_size: int | None
    language_instruction_types: list[str]
    tokenizer: str = "byte"
    max_instruction_tokens: int = 64
    missing_camera: str = "error"
    augmentation: dict[str, Any] = field(default_factory=lambda: asdict(AugmentationParams()))
    # [height, width] the training images were stored at and preprocessing's resize mode: raw frames at inference
    # are first brought to that stored form, exactly as preprocessing did.
    stored_image_size: list[int] | None = None
    stored_resize_mode: str = "center_crop"
    # Camera -> [height, width] of the training images as stored (the first dataset's; {} when not recorded): the
    # size a simulator renders for this policy so that its frames match the demonstrations'.
    camera_image_sizes: dict[str, list[int]] = field(default_factory=dict)

    @property
    def window_length(self) -> int:
        return self.past_lowdim_steps + 1 + self.future_lowdim_steps

    @property
    def num_images(self) -> int:
        return len(self.camera_names) * len(self.image_indices)


def _dataset_dirs(data_params: RoboticsDataParams) -> list[str]:
    from vla_foundry.data.streaming.registry import layout_dirs

    # A streamed source root's layout and stats live in its layout dir.
    return layout_dirs(data_params)


def resolve_robotics_config(
    data_params: RoboticsDataParams, dataset_dirs: list[str] | None = None
) -> tuple[ProcessorConfig, NormalizerConfig, Stats]:
    """Check the configured window/cameras/fields against every dataset and build the processor inputs.

    Returns the processor config, the normaliser config and the merged stats cropped to the training window.
    Raises ConfigError / StatsError naming the dataset and field for: a window larger than the stored one, a field
    absent from stats.json, fields of different widths across datasets, a camera a dataset lacks (unless
    `missing_camera=zero_pad`).
    """
    dirs = dataset_dirs if dataset_dirs is not None else _dataset_dirs(data_params)
    if not dirs:
        raise ConfigError("data.dataset_manifest is empty: name at least one robotics dataset")
    layouts = [read_dataset_layout(d) for d in dirs]
    past = data_params.past_lowdim_steps
    future = data_params.future_lowdim_steps
    past = min(lay.past_lowdim_steps for lay in layouts) if past is None else past
    future = min(lay.future_lowdim_steps for lay in layouts) if future is None else future
    for lay in layouts:
        if past > lay.past_lowdim_steps or future > lay.future_lowdim_steps:
            raise ConfigError(
                f"requested window past={past}, future={future} is larger than the stored window of {lay.dataset_dir} "
                f"(past_lowdim_steps={lay.past_lowdim_steps}, future_lowdim_steps={lay.future_lowdim_steps}); "
                "lower data.past_lowdim_steps / data.future_lowdim_steps or re-preprocess"
            )
    cameras = list(data_params.camera_names) if data_params.camera_names is not None else layouts[0].camera_names
    indices = list(data_params.image_indices) if data_params.image_indices is not None else layouts[0].image_indices
    for lay in layouts:
        absent = [c for c in cameras if lay.camera_names and c not in lay.camera_names]
        if absent and data_params.missing_camera == "error":
            raise ConfigError(
                f"dataset {lay.dataset_dir} has no camera(s) {absent} (stored: {lay.camera_names}; "
                f"{closest_hint(absent[0], lay.camera_names)}); choose data.camera_names among them or set "
                "data.missing_camera zero_pad"
            )
        bad_offsets = [i for i in indices if i not in lay.image_indices]
        if bad_offsets:
            raise ConfigError(
                f"dataset {lay.dataset_dir} stores image offsets {lay.image_indices}; requested {bad_offsets} are "
                "not stored (data.image_indices)"
            )

    all_stats = []
    for lay in layouts:
        path = storage.join(lay.dataset_dir, STATS_NAME)
        stats = load_stats(path)
        for group, names in (
            ("data.action_fields", data_params.action_fields),
            ("data.proprioception_fields", data_params.proprioception_fields),
        ):
            for name in names:
                if name not in stats:
                    raise StatsError(
                        f"{path} has no statistics for field {name!r} (requested by {group}); "
                        f"{closest_hint(name, sorted(stats))}"
                    )
        all_stats.append(crop_stats_window(stats, lay.past_lowdim_steps, past, future))
    wanted = list(dict.fromkeys([*data_params.action_fields, *data_params.proprioception_fields]))
    for name in data_params.normalization.field_overrides:
        if name not in wanted:
            raise ConfigError(
                f"data.normalization.field_overrides names {name!r}, which is not one of data.action_fields / "
                f"data.proprioception_fields; {closest_hint(name, wanted)}"
            )
    dims: dict[str, int] = {}
    for lay, stats in zip(layouts, all_stats):
        for name in wanted:
            d = field_dim(stats, name, storage.join(lay.dataset_dir, STATS_NAME))
            if dims.setdefault(name, d) != d:
                raise StatsError(
                    f"field {name!r} has width {d} in {lay.dataset_dir} but {dims[name]} in {layouts[0].dataset_dir}"
                )
    merged = merge_stats(all_stats, wanted)

    norm = data_params.normalization
    normalizer_config = NormalizerConfig(
        action_fields=[FieldSpec(n, dims[n]) for n in data_params.action_fields],
        proprioception_fields=[FieldSpec(n, dims[n]) for n in data_params.proprioception_fields],
        past_lowdim_steps=past,
        future_lowdim_steps=future,
        method=norm.method,
        scope=norm.scope,
        epsilon=norm.epsilon,
        field_overrides=dict(norm.field_overrides),
    )
    processor_config = ProcessorConfig(
        action_fields=list(data_params.action_fields),
        proprioception_fields=list(data_params.proprioception_fields),
        camera_names=cameras,
        image_indices=indices,
        past_lowdim_steps=past,
        future_lowdim_steps=future,
        image_size=data_params.image_size,
        language_instruction_types=list(data_params.language_instruction_types),
        tokenizer=data_params.tokenizer,
        max_instruction_tokens=data_params.max_instruction_tokens,
        missing_camera=data_params.missing_camera,
        augmentation=asdict(data_params.augmentation),
        stored_image_size=layouts[0].image_size,
        stored_resize_mode=layouts[0].resize_mode,
        camera_image_sizes={c: hw for c, hw in layouts[0].camera_image_sizes.items() if c in cameras and hw},
    )
    return processor_config, normalizer_config, merged


def closest_hint(name: str, valid: Sequence[str]) -> str:
    """'closest: a, b; valid: a, b, c' for an error message about a name that is not in `valid`."""
    close = closest_names(name, valid)
    listed = ", ".join(valid) or "none"
    return f"closest: {', '.join(close)}; valid: {listed}" if close else f"valid: {listed}"


def check_instruction_types(data_params: RoboticsDataParams) -> None:
    """Each dataset's first sample must hold at least one of `data.language_instruction_types` (a dataset declares
    the instruction types its samples carry in their language_instructions.json). Refused with the types it has and
    the closest names; a dataset whose samples carry no instructions at all trains with empty instructions."""
    from vla_foundry.data.manifest import read_manifest
    from vla_foundry.data.tar_stream import iter_tar_samples
    from vla_foundry.params.data_params import STREAMED_MODALITIES

    requested = list(data_params.language_instruction_types)
    if not requested:
        return
    for path, modality in zip(data_params.dataset_manifest, data_params.dataset_modality):
        if modality in STREAMED_MODALITIES:
            # A streamed LeRobot root has no shards yet: its samples carry the episode's tasks as "original".
            if "original" not in requested:
                raise ConfigError(
                    f"data.language_instruction_types={requested}: the streamed LeRobot root {path} gives its "
                    f"episodes' tasks as the 'original' instruction; {closest_hint(requested[0], ['original'])}"
                )
            continue
        manifest = read_manifest(path)
        if not manifest.shards:
            continue
        samples = iter_tar_samples(manifest.shard_url(manifest.shards[0].name))
        try:
            first = next(samples, None)
        finally:
            samples.close()
        if first is None or "language_instructions.json" not in first:
            continue
        try:
            stored = sorted(t for t, v in json.loads(first["language_instructions.json"]).items() if v)
        except (json.JSONDecodeError, AttributeError):
            continue  # counted as a bad sample by the loader
        if not set(requested) & set(stored):
            raise ConfigError(
                f"data.language_instruction_types={requested}: the samples of {manifest.dataset_dir} hold none of "
                f"them; {closest_hint(requested[0], stored)}"
            )


def derive_robotics_data(data_params: RoboticsDataParams) -> RoboticsDataParams:
    """New data params with the values the datasets determine: action_dim and proprioception_dim, and the stored
    window / cameras / image offsets where they were left None. Every name (fields, cameras, image offsets,
    normalisation overrides, instruction types) is checked against the datasets on the way, with the closest valid
    names.

    Part of the resolve step (after parsing, before `derive_params` shares them to the model). A
    user-given dim that contradicts the stats is a ConfigError.
    """
    pc, nc, _ = resolve_robotics_config(data_params)
    check_instruction_types(data_params)
    changes: dict[str, Any] = {}
    for name, value in (("action_dim", nc.action_dim), ("proprioception_dim", nc.proprioception_dim)):
        given = getattr(data_params, name)
        if given is not None and given != value:
            raise ConfigError(
                f"data.{name}={given} contradicts the dataset statistics ({value} from the fields "
                f"{pc.action_fields if name == 'action_dim' else pc.proprioception_fields}); leave it unset"
            )
        changes[name] = value
    for name, value in (
        ("past_lowdim_steps", pc.past_lowdim_steps),
        ("future_lowdim_steps", pc.future_lowdim_steps),
        ("camera_names", pc.camera_names),
        ("image_indices", pc.image_indices),
    ):
        if getattr(data_params, name) is None:
            changes[name] = value
    return dataclasses.replace(data_params, **changes)


class RoboticsProcessor:
    """Raw robotics samples (training) or raw observations (inference) -> normalised tensors."""

    def __init__(self, config: ProcessorConfig, normalizer: Normalizer) -> None:
        self.config = config
        self.normalizer = normalizer
        self.tokenizer = get_tokenizer(config.tokenizer)
        self.augmentation = AugmentationParams(**config.augmentation)
        self._layouts: dict[str, DatasetLayout] = {}
        self._tokens: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def from_data_params(
        cls, data_params: RoboticsDataParams, dataset_dirs: list[str] | None = None
    ) -> RoboticsProcessor:
        pc, nc, stats = resolve_robotics_config(data_params, dataset_dirs)
        return cls(pc, Normalizer(nc, stats))

    # ---- saving / loading with a run -------------------------------------------------------------------------

    def save(self, run_dir: str) -> None:
        """Write config_processor.yaml, config_normalizer.yaml and stats.json (training window) to `run_dir`."""
        storage.write_text(
            storage.join(run_dir, PROCESSOR_CONFIG), yaml.safe_dump(asdict(self.config), sort_keys=False)
        )
        storage.write_text(
            storage.join(run_dir, NORMALIZER_CONFIG), yaml.safe_dump(self.normalizer.config.to_dict(), sort_keys=False)
        )
        storage.write_text(storage.join(run_dir, STATS_NAME), json.dumps(self.normalizer.stats))

    @classmethod
    def load(cls, run_dir: str) -> RoboticsProcessor:
        """Rebuild the processor saved by `save` (local or s3:// run directory); inference never needs data params."""
        fix = "restore it from the run's remote copy (training writes it into the run directory)"
        configs = []
        for name, build in (
            (PROCESSOR_CONFIG, lambda d: ProcessorConfig(**d)),
            (NORMALIZER_CONFIG, NormalizerConfig.from_dict),
        ):
            path = storage.join(run_dir, name)
            data = read_structured_file(path, ConfigError, fix, missing=f"{path} does not exist: {run_dir} is not a "
                                        "robotics run directory (or it is incomplete)")  # fmt: skip
            try:
                configs.append(build(data))
            except (TypeError, KeyError, ValueError) as e:
                raise ConfigError(f"{path} does not describe a {name.removesuffix('.yaml')} ({e}): {fix}") from None
        return cls(configs[0], Normalizer(configs[1], load_stats(storage.join(run_dir, STATS_NAME))))

    # ---- pieces ----------------------------------------------------------------------------------------------

    def layout(self, dataset_dir: str) -> DatasetLayout:
        if dataset_dir not in self._layouts:
            self._layouts[dataset_dir] = read_dataset_layout(dataset_dir)
        return self._layouts[dataset_dir]

    def tokenize_instruction(self, text: str) -> tuple[torch.Tensor, torch.Tensor]:
        """-> input_ids (L,) padded with the pad id, attention_mask (L,) bool; L = max_instruction_tokens."""
        input_ids, mask = self.instruction_tokens(text)
        return torch.from_numpy(input_ids.copy()), torch.from_numpy(mask.copy())

    def instruction_tokens(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Read-only (input_ids (L,) int64, attention_mask (L,) bool) of `text`, cached: robot datasets repeat a
        handful of instructions over thousands of samples."""
        cached = self._tokens.get(text)
        if cached is None:
            n = self.config.max_instruction_tokens
            ids = self.tokenizer.encode(text)[:n]
            input_ids = np.full(n, self.tokenizer.pad_token_id, dtype=np.int64)
            input_ids[: len(ids)] = ids
            mask = np.zeros(n, dtype=bool)
            mask[: len(ids)] = True
            input_ids.flags.writeable = mask.flags.writeable = False
            if len(self._tokens) >= MAX_CACHED_INSTRUCTIONS:
                self._tokens.clear()
            cached = self._tokens[text] = (input_ids, mask)
        return cached

    def prepare_image(self, image: np.ndarray) -> np.ndarray:
        """Camera image uint8 (H, W, 3) of any size -> what training saw: the stored form (preprocessing's resize to
        the stored size), then, for data.image_size S, the training resize to (S, S, 3) that `decode_view` applies."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"camera images must be (H, W, 3) uint8, got shape {image.shape}")
        if self.config.stored_image_size:
            image = resize_image(image, self.config.stored_image_size, self.config.stored_resize_mode)
        if self.config.image_size:
            image = resize_shorter_and_center_crop(image, self.config.image_size)
        return image

    @property
    def view_shape(self) -> tuple[int, int, int] | None:
        """(3, H, W) of every decoded training view, when the config fixes it (image_size or the stored size)."""
        if self.config.image_size:
            return (3, self.config.image_size, self.config.image_size)
        if self.config.stored_image_size:
            return (3, *self.config.stored_image_size)
        return None

    def decode_view(self, data: bytes, out: np.ndarray | None = None) -> np.ndarray:
        """Stored camera image bytes -> uint8 (3, S, S) at the training size (the resize of `prepare_image`, done on
        the decoded PIL image), channel planes written straight from PIL into `out` when it has that shape (else
        into a new array, which is returned). Raises ValueError if undecodable."""
        size = self.view_shape
        fast = decode_planar(data, None if size is None else size[1:])
        if fast is not None:
            if out is None or out.shape != fast.shape:
                return np.ascontiguousarray(fast)
            np.copyto(out, fast)
            return out
        img = open_image(data)
        if self.config.image_size:
            img = cover_and_center_crop_pil(img, self.config.image_size)
        elif self.config.stored_image_size:
            img = cover_and_center_crop_pil(img, *self.config.stored_image_size)
        return planar_uint8(img, out if out is not None and out.shape == (3, img.size[1], img.size[0]) else None)

    def images_to_tensor(
        self, views: list[np.ndarray | None], rng: np.random.Generator | None, training: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Views uint8 (3, H, W) (camera-major) -> images (N, 3, H, W) uint8 and image_mask (N,); None views
        become zeros. Augmentation (training only) runs on floats in [0, 1] and is rounded back to uint8 levels."""
        mask = torch.from_numpy(self._check_views(views))
        draw = draw_augmentation(rng, self.augmentation) if training and self.augmentation.enabled and rng else None
        images = self._collate_views([views])[0]  # (N, 3, H, W)
        if draw is not None:
            for n, view in enumerate(views):
                if view is not None:
                    images[n] = to_uint8_tensor(augment(unit_float_tensor(view), draw))
        return images, mask

    @staticmethod
    def _check_views(views: list[np.ndarray | None]) -> np.ndarray:
        """image_mask (N,) bool of a sample's views; refuses a sample whose cameras are all missing or whose views
        differ in size (a policy without cameras has no views: N = 0)."""
        present = [v for v in views if v is not None]
        if views and not present:
            raise SampleError("no camera image present")
        if any(v.shape != present[0].shape for v in present):
            raise SampleError(f"camera images of one sample differ in size: {sorted({v.shape for v in present})}")
        return np.array([v is not None for v in views], dtype=bool)

    # ---- training samples ------------------------------------------------------------------------------------

    def process_sample(
        self,
        raw: dict[str, Any],
        dataset_dir: str,
        rng: np.random.Generator | None,
        training: bool = True,
        deferred: bool = False,
        image_out: np.ndarray | None = None,
    ) -> dict[str, Any] | DeferredSample:
        """One raw tar sample (member extension -> bytes) -> per-sample tensors. Raises SampleError if unusable.

        With `deferred` (the loader's fast path) it returns a `DeferredSample` for `collate`, which normalises,
        tokenizes and stacks a whole batch at once; its un-augmented images are decoded straight into `image_out`
        ((N, 3, H, W) uint8, the sample's row of the loader's batch buffer) when every view fits it.
        """
        cfg = self.config
        key = raw.get("__key__", "?")
        if "lowdim.npz" not in raw:
            raise SampleError("missing member lowdim.npz")
        try:
            # A stream hands the window's arrays over as they are ({field: array}), a shard as npz bytes.
            npz = raw["lowdim.npz"] if isinstance(raw["lowdim.npz"], dict) else NpzArrays(raw["lowdim.npz"])
        except Exception as e:
            raise SampleError(f"lowdim.npz unreadable: {e}") from None
        stored_past = self.layout(dataset_dir).past_lowdim_steps
        lo, hi = stored_past - cfg.past_lowdim_steps, stored_past + cfg.future_lowdim_steps + 1
        try:
            # Copies: npz arrays are read-only views of the member's bytes.
            past_mask = np.array(npz["past_mask"][lo:hi], dtype=bool)
            future_mask = np.array(npz["future_mask"][lo:hi], dtype=bool)
            actions = self._concat(npz, cfg.action_fields, lo, hi)  # (T, A)
            proprio = self._concat(npz, cfg.proprioception_fields, lo, stored_past + 1)  # (past + 1, P)
        except KeyError as e:
            raise SampleError(f"lowdim.npz lacks array {e.args[0]!r}") from None
        except ValueError as e:
            raise SampleError(f"lowdim.npz: {e}") from None
        if len(past_mask) != cfg.window_length or len(actions) != cfg.window_length:
            raise SampleError(f"lowdim.npz window has {len(actions)} rows after cropping, expected {cfg.window_length}")

        augmenting = training and self.augmentation.enabled and rng is not None
        # Rows of the batch buffer each view decodes into (None: a new array per view).
        in_place = deferred and not augmenting and image_out is not None and len(image_out) == cfg.num_images
        slots = list(image_out) if in_place else None
        views: list[np.ndarray | None] = []
        for cam in cfg.camera_names:
            for offset in cfg.image_indices:
                # Only the JPEG is the colour image: a PNG of the same name holds depth (uint16, docs/formats.md §2).
                data = raw.get(f"{cam}_t{offset}.jpg")
                if data is None:
                    if cfg.missing_camera == "zero_pad":
                        views.append(None)
                        continue
                    raise SampleError(f"missing camera image {cam}_t{offset}.jpg")
                try:
                    views.append(self.decode_view(data, None if slots is None else slots[len(views)]))  # (3, S, S)
                except ValueError as e:
                    raise SampleError(f"{cam}_t{offset}: {e}") from None

        # Augmentation draws from rng before the instruction choice (the order fixes which values each gets).
        image_mask = self._check_views(views)
        images: Any = views
        if not deferred or augmenting:
            images = self.images_to_tensor(views, rng, training)[0]  # (N, 3, H, W) uint8
        elif slots is not None and all(v is None or v is slot for v, slot in zip(views, slots)):
            for view, slot in zip(views, slots):
                if view is None:
                    slot[...] = 0
            images = image_out  # (N, 3, H, W), already in place

        instruction = self._choose_instruction(raw, rng)
        metadata: dict[str, Any] = {}
        if "metadata.json" in raw:
            try:
                metadata = json.loads(raw["metadata.json"])
            except json.JSONDecodeError as e:
                raise SampleError(f"metadata.json is not valid JSON: {e}") from None
        metadata = {**metadata, "key": key, "dataset": dataset_dir, "instruction": instruction}
        if deferred:
            if isinstance(images, torch.Tensor):
                images = images.numpy()
            return DeferredSample(actions, proprio, past_mask, future_mask, images, image_mask, instruction, metadata)

        input_ids, attention_mask = self.tokenize_instruction(instruction)
        return {
            "actions": torch.from_numpy(self.normalizer.normalize_actions(actions)).float(),
            "proprioception": torch.from_numpy(self.normalizer.normalize_proprioception(proprio)).float(),
            "past_mask": torch.from_numpy(past_mask),
            "future_mask": torch.from_numpy(future_mask),
            "images": images,
            "image_mask": torch.from_numpy(image_mask),
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "metadata": metadata,
        }

    @staticmethod
    def _concat(npz: Any, names: list[str], lo: int, hi: int) -> np.ndarray:
        if not names:
            return np.zeros((hi - lo, 0), dtype=np.float64)
        parts = []
        for name in names:
            arr = np.asarray(npz[name], dtype=np.float64)
            if arr.ndim == 1:
                arr = arr[:, None]
            parts.append(arr[lo:hi])
        return np.concatenate(parts, axis=-1)

    def _choose_instruction(self, raw: dict[str, Any], rng: np.random.Generator | None) -> str:
        data = raw.get("language_instructions.json")
        if data is None or not self.config.language_instruction_types:
            return ""
        try:
            instructions = json.loads(data)
        except json.JSONDecodeError as e:
            raise SampleError(f"language_instructions.json is not valid JSON: {e}") from None
        if not isinstance(instructions, dict):
            raise SampleError("language_instructions.json is not a mapping {type: [instructions]}")
        candidates = [
            s for t in self.config.language_instruction_types for s in (instructions.get(t) or []) if isinstance(s, str)
        ]
        if not candidates:
            # Training on an empty instruction instead would silently drop the language conditioning.
            stored = sorted(t for t, v in instructions.items() if v)
            raise SampleError(
                f"no instruction of the requested types {self.config.language_instruction_types} "
                f"(data.language_instruction_types); this sample has: {', '.join(stored) or 'none'}"
            )
        if len(candidates) == 1 or rng is None:  # a draw among one takes no randomness: rng is left as it was
            return candidates[0]
        return candidates[int(rng.integers(len(candidates)))]

    def collate(
        self, samples: list[dict[str, Any]] | list[DeferredSample], images: torch.Tensor | None = None
    ) -> dict[str, Any]:
        """Stack per-sample tensors (or `DeferredSample`s) into a batch (B, ...); metadata stays a list of dicts.
        `images` (B, N, 3, H, W) is the batch's images when the caller already holds them stacked (the loader's
        buffer the samples were decoded into)."""
        if isinstance(samples[0], DeferredSample):
            return self._collate_deferred(samples, images)
        batch: dict[str, Any] = {}
        for k in samples[0]:
            if k == "metadata":
                batch[k] = [s[k] for s in samples]
            elif k == "images" and not isinstance(samples[0][k], torch.Tensor):
                batch[k] = self._collate_views([s[k] for s in samples])
            else:
                try:
                    batch[k] = torch.stack([s[k] for s in samples])
                except RuntimeError as e:
                    raise ValueError(
                        f"cannot batch {k!r}: shapes differ across samples ({e}); set data.image_size so every "
                        "dataset's images are resized to one size"
                    ) from None
        return batch

    def _collate_deferred(self, samples: list[DeferredSample], images: torch.Tensor | None) -> dict[str, Any]:
        """The batch of `DeferredSample`s: normalisation and tokenization once per batch (the same element-wise
        float64 arithmetic as per sample, so the values are identical)."""
        actions = self.normalizer.normalize_actions(np.stack([s.actions for s in samples]))  # (B, T, A) float64
        proprio = self.normalizer.normalize_proprioception(np.stack([s.proprioception for s in samples]))
        tokens = [self.instruction_tokens(s.instruction) for s in samples]
        return {
            "actions": torch.from_numpy(actions.astype(np.float32)),
            "proprioception": torch.from_numpy(proprio.astype(np.float32)),
            "past_mask": torch.from_numpy(np.stack([s.past_mask for s in samples])),
            "future_mask": torch.from_numpy(np.stack([s.future_mask for s in samples])),
            "images": images if images is not None else self._collate_views([s.images for s in samples]),
            "image_mask": torch.from_numpy(np.stack([s.image_mask for s in samples])),
            "input_ids": torch.from_numpy(np.stack([ids for ids, _ in tokens])),  # (B, L)
            "attention_mask": torch.from_numpy(np.stack([mask for _, mask in tokens])),
            "metadata": [s.metadata for s in samples],
        }

    @staticmethod
    def _collate_views(views: list[list[np.ndarray | None] | np.ndarray]) -> torch.Tensor:
        """Per-sample lists of uint8 (3, H, W) views (or (N, 3, H, W) arrays) -> (B, N, 3, H, W) uint8, zeros for
        missing views. Without cameras (N = 0) the batch is (B, 0, 3, 1, 1)."""
        shape = next((v.shape for sample in views for v in sample if v is not None), (3, 1, 1))
        out = np.empty((len(views), len(views[0]), *shape), dtype=np.uint8)
        for b, sample in enumerate(views):
            for n, view in enumerate(sample):
                if view is None:
                    out[b, n] = 0
                elif view.shape != shape:
                    raise ValueError(
                        f"cannot batch images of shapes {view.shape} and {shape}; set data.image_size so every "
                        "dataset's images are resized to one size"
                    )
                else:
                    out[b, n] = view
        return torch.from_numpy(out)

    # ---- inference -------------------------------------------------------------------------------------------

    def process_observation(
        self,
        images: dict[str, list[np.ndarray] | np.ndarray],
        proprioception: dict[str, np.ndarray],
        instruction: str,
    ) -> dict[str, torch.Tensor]:
        """Raw observations of one robot step -> a batch of one (no augmentation).

        images: camera name -> one uint8 (H, W, 3) image per configured image offset (any size: resized/cropped
        like preprocessing). proprioception: field name -> (past + 1, D) history ending at the current step (a (D,)
        array when past is 0). Returns proprioception (1, past + 1, P) normalised, images (1, N, 3, S, S) uint8,
        image_mask (1, N), past_mask / future_mask (1, T) (past rows / anchor and later rows), input_ids / attention_mask (1, L).
        """
        cfg = self.config
        views: list[np.ndarray | None] = []
        for cam in cfg.camera_names:
            frames = images.get(cam)
            if frames is None:
                if cfg.missing_camera == "zero_pad":
                    views.extend([None] * len(cfg.image_indices))
                    continue
                raise ValueError(f"observation lacks camera {cam!r}; expected cameras {cfg.camera_names}")
            frames = [frames] if isinstance(frames, np.ndarray) and frames.ndim == 3 else list(frames)
            if len(frames) != len(cfg.image_indices):
                raise ValueError(
                    f"camera {cam!r}: got {len(frames)} frames, expected one per image offset {cfg.image_indices}"
                )
            views.extend(self.prepare_image(np.asarray(f, dtype=np.uint8)).transpose(2, 0, 1) for f in frames)
        image_tensor, image_mask = self.images_to_tensor(views, None, training=False)
        rows = cfg.past_lowdim_steps + 1
        parts = []
        for name in cfg.proprioception_fields:
            if name not in proprioception:
                raise ValueError(
                    f"observation lacks proprioception field {name!r}; expected {cfg.proprioception_fields}"
                )
            arr = np.asarray(proprioception[name], dtype=np.float64)
            arr = arr[None] if arr.ndim == 1 else arr
            if arr.shape[0] != rows:
                raise ValueError(f"proprioception field {name!r} has {arr.shape[0]} rows, expected past + 1 = {rows}")
            parts.append(arr)
        proprio = np.concatenate(parts, axis=-1) if parts else np.zeros((rows, 0))
        input_ids, attention_mask = self.tokenize_instruction(instruction)
        # Masks as in training: rows before the anchor are past; the anchor and the rows to predict are future.
        past_mask = torch.zeros(cfg.window_length, dtype=torch.bool)
        past_mask[: cfg.past_lowdim_steps] = True
        future_mask = ~past_mask
        return {
            "proprioception": torch.from_numpy(self.normalizer.normalize_proprioception(proprio)).float()[None],
            "images": image_tensor[None],
            "image_mask": image_mask[None],
            "past_mask": past_mask[None],
            "future_mask": future_mask[None],
            "input_ids": input_ids[None],
            "attention_mask": attention_mask[None],
        }

    def denormalize_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, T, action_dim) normalised -> physical units (exact inverse of training normalisation)."""
        return self.normalizer.denormalize_actions(actions)
