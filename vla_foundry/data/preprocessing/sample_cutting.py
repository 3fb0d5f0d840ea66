"""Cutting an episode into windowed samples (docs/formats.md §2, robotics).

A sample is centred on an anchor timestep a: low-dim rows a - past .. a + future (T = past + 1 + future, the
anchor at row `past`), camera frames at a + offset for each of `image_indices` (clamped to the episode),
`past_mask` / `future_mask` marking rows inside the episode. Frames are pulled from the episode's lazy stream
and JPEG-encoded once each, and only the frames still needed by later anchors are kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla_foundry.data.preprocessing.encoding import encode_jpeg, encode_json, encode_npz
from vla_foundry.data.preprocessing.episodes import Episode, EpisodeError
from vla_foundry.data.processors.images import resize_image
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams


@dataclass
class Sample:
    """One encoded sample: tar member suffixes -> bytes, plus the window used for statistics."""

    key: str
    # Camera members hold JPEG bytes, or what `cut_samples`' `encode_frame` returned (e.g. the resized array).
    members: dict[str, Any]
    lowdim: dict[str, np.ndarray]  # {name: (T, D)}
    valid: np.ndarray  # (T,) bool


def plan_anchors(length: int, params: RoboticsPreprocessingParams) -> list[int]:
    """Anchors every `stride` steps whose padding stays within max_past_padding / max_future_padding."""
    past, future = params.past_lowdim_steps, params.future_lowdim_steps
    first = max(0, past - params.max_past_padding)
    anchors = []
    for a in range(first, length, params.stride):
        if max(0, a + future - (length - 1)) <= params.max_future_padding:
            anchors.append(a)
    return anchors


def count_potential_samples(length: int, params: RoboticsPreprocessingParams) -> int:
    return len(plan_anchors(length, params))


def anchor_image_steps(anchor: int, length: int, offsets: list[int]) -> list[int]:
    """The steps whose frames the sample at `anchor` holds: anchor + each image offset, clamped to the episode."""
    return [min(max(anchor + o, 0), length - 1) for o in offsets]


def sample_key(episode_id: str, anchor: int) -> str:
    """A tar key (no dots: the key ends at the first dot) unique within the dataset."""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', episode_id)}__t{anchor:06d}"


def window_rows(anchor: int, length: int, params: RoboticsPreprocessingParams) -> tuple[np.ndarray, np.ndarray]:
    """Source row per window row (clamped to the episode) and whether each window row is inside it."""
    rows = np.arange(anchor - params.past_lowdim_steps, anchor + params.future_lowdim_steps + 1)
    inside = (rows >= 0) & (rows < length)
    # Two ufuncs rather than np.clip: its Python-level checks cost more than the clamp of a few rows (per sample).
    return np.minimum(np.maximum(rows, 0), length - 1), inside


def _rot6d_to_matrix(r6: np.ndarray) -> np.ndarray:
    """(..., 6) first two columns -> (..., 3, 3) rotation by Gram-Schmidt."""
    a, b = r6[..., :3], r6[..., 3:6]
    x = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b - (x * b).sum(-1, keepdims=True) * x
    y = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    z = np.cross(x, y)
    return np.stack([x, y, z], axis=-1)


def relative_pose(target: np.ndarray, reference: np.ndarray, name: str) -> np.ndarray:
    """target (T, D) relative to one reference row (D,): difference for xyz, R_ref^T R_t for rot_6d."""
    if name.endswith("rot_6d") and target.shape[-1] == 6:
        rel = np.swapaxes(_rot6d_to_matrix(reference), -1, -2) @ _rot6d_to_matrix(target)  # (T, 3, 3)
        return np.concatenate([rel[..., :, 0], rel[..., :, 1]], axis=-1).astype(np.float32)
    return (target - reference).astype(np.float32)


def cut_window_lowdim(
    episode: Episode, anchor: int, params: RoboticsPreprocessingParams
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Low-dim arrays (T, D) of one window, past_mask (T,), future_mask (T,)."""
    rows, inside = window_rows(anchor, episode.length, params)
    past = params.past_lowdim_steps
    is_past = np.arange(len(rows)) < past
    past_mask, future_mask = inside & is_past, inside & ~is_past
    lowdim: dict[str, np.ndarray] = {}
    for name, values in episode.lowdim.items():
        window = values[rows].astype(np.float32)  # (T, D)
        if params.padding_strategy == "zero":
            window[~inside] = 0.0
        lowdim[name] = window
    for target, reference in params.relative_pose_fields.items():
        if target not in episode.lowdim or reference not in episode.lowdim:
            raise EpisodeError(
                episode.episode_id,
                f"relative_pose_fields {target!r} -> {reference!r}: field missing; fields: {sorted(episode.lowdim)}",
                kind="missing_field",
            )
        rel = relative_pose(lowdim[target], episode.lowdim[reference][anchor].astype(np.float64), target)
        if params.padding_strategy == "zero":
            rel[~inside] = 0.0
        lowdim[f"{target}_relative"] = rel
    return lowdim, past_mask, future_mask


def cut_samples(
    episode: Episode,
    params: RoboticsPreprocessingParams,
    anchors: list[int] | None = None,
    encode_frame: Callable[[np.ndarray], Any] | None = None,
    encode_lowdim: Callable[[dict[str, np.ndarray]], Any] = encode_npz,
) -> Iterator[Sample]:
    """Every sample of an episode (or those of `anchors`, a sorted subset of its planned anchors), in anchor order,
    pulling frames lazily from `episode.frames`. A resized frame (h, w, 3) is stored as `encode_frame(frame)`
    (default: JPEG bytes at params.jpeg_quality), the window's arrays as `encode_lowdim(arrays)` (default: the
    `lowdim.npz` bytes)."""
    length = episode.length
    anchors = plan_anchors(length, params) if anchors is None else list(anchors)
    if encode_frame is None:

        def encode_frame(frame: np.ndarray) -> bytes:
            return encode_jpeg(frame, params.jpeg_quality)

    offsets = list(params.image_indices)
    image_steps = {a: anchor_image_steps(a, length, offsets) for a in anchors}
    needed = {t for steps in image_steps.values() for t in steps}
    # The steps the frame stream yields: every step, or those the converter was asked for.
    stream_steps = iter(range(length) if episode.frame_steps is None else episode.frame_steps)
    if episode.frame_steps is not None and not needed <= set(episode.frame_steps):
        missing = sorted(needed - set(episode.frame_steps))[:5]
        raise EpisodeError(episode.episode_id, f"the frame stream lacks steps {missing} the anchors need", "read_error")
    encoded: dict[int, dict[str, Any]] = {}  # t -> {camera: jpeg}, only frames later anchors still need
    next_t = next(stream_steps, None)

    def pull_until(t_max: int) -> None:
        nonlocal next_t
        while next_t is not None and next_t <= t_max:
            item = next(episode.frames, None)
            if item is None:
                raise EpisodeError(
                    episode.episode_id, f"frame stream ended at t={next_t}, episode length {length}", "short_video"
                )
            t, frames = item
            if t != next_t:
                raise EpisodeError(episode.episode_id, f"frame stream gave t={t}, expected t={next_t}", "read_error")
            if t in needed:
                encoded[t] = {
                    cam: encode_frame(resize_image(frames[cam], params.image_size, params.resize_mode))
                    for cam in episode.cameras
                }
            next_t = next(stream_steps, None)

    for i, anchor in enumerate(anchors):
        steps = image_steps[anchor]
        pull_until(max(steps))
        lowdim, past_mask, future_mask = cut_window_lowdim(episode, anchor, params)
        key = sample_key(episode.episode_id, anchor)
        arrays: dict[str, np.ndarray] = dict(lowdim)
        arrays["past_mask"], arrays["future_mask"] = past_mask, future_mask
        rows = window_rows(anchor, length, params)[0] if episode.constants else None
        for name, value in episode.constants.items():
            # Per-timestep constants (L, 3, 3) / (L, 4, 4) follow the window; fixed ones are stored as they are.
            arrays[name] = value[rows] if value.ndim == 3 else value
        members: dict[str, bytes] = {}
        for cam in episode.cameras:
            for offset, t in zip(offsets, steps):
                members[f"{cam}_t{offset}.jpg"] = encoded[t][cam]
        past_padding = int(params.past_lowdim_steps - past_mask.sum())
        future_padding = int(params.future_lowdim_steps + 1 - future_mask.sum())
        metadata = {
            **episode.metadata,
            "episode_id": episode.episode_id,
            "sample_id": key,
            "anchor_timestep": anchor,
            "anchor_relative_idx": params.past_lowdim_steps,
            "camera_names": list(episode.cameras),
            "image_indices": offsets,
            "image_timesteps": steps,
            "original_episode_length": length,
            "past_padding": past_padding,
            "future_padding": future_padding,
            "is_padded": bool(past_padding or future_padding),
        }
        members["lowdim.npz"] = encode_lowdim(arrays)
        members["metadata.json"] = encode_json(metadata)
        members["language_instructions.json"] = encode_json(episode.language)
        yield Sample(key=key, members=members, lowdim=lowdim, valid=past_mask | future_mask)
        # Drop frames no later anchor uses (anchors increase, so their earliest frame does too).
        later = anchors[i + 1] if i + 1 < len(anchors) else None
        keep_from = min(image_steps[later]) if later is not None else length
        for t in [t for t in encoded if t < keep_from]:
            del encoded[t]
    # Drain the stream so a reader positioned for the next episode stays in sync.
    for _ in episode.frames:
        pass
