"""Anchors, window rows, masks and padding at episode edges; frames pulled lazily and placed by offset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.data.preprocessing.conftest import decode_jpeg, load_npz
from vla_foundry.data.preprocessing.episodes import Episode, EpisodeError
from vla_foundry.data.preprocessing.sample_cutting import cut_samples, plan_anchors, relative_pose
from vla_foundry.data.scripts.make_synthetic_lerobot import decode_colour, make_frame, state_rows
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams


def params(**kw) -> RoboticsPreprocessingParams:
    base = dict(output_dir="/tmp/x", source_episodes=["x"], past_lowdim_steps=2, future_lowdim_steps=3)
    base.update(max_past_padding=2, max_future_padding=3, image_indices=[-1, 0])
    base.update(kw)
    return RoboticsPreprocessingParams(**base)


def episode(length: int = 8, episode: int = 3, cameras=("a", "b")) -> Episode:
    return Episode(
        episode_id=f"ep{episode}",
        length=length,
        lowdim={"state": state_rows(episode, length)},
        language={"original": ["do it"]},
        cameras=list(cameras),
        frames=((t, {c: make_frame(episode, t, i) for i, c in enumerate(cameras)}) for t in range(length)),
    )


def test_anchors_respect_padding_limits_and_stride():
    assert plan_anchors(8, params()) == list(range(8))
    assert plan_anchors(8, params(max_past_padding=0, max_future_padding=0)) == [2, 3, 4]
    assert plan_anchors(8, params(max_past_padding=1, max_future_padding=1, stride=2)) == [1, 3, 5]


def test_masks_mark_rows_inside_the_episode_with_the_anchor_counted_as_future():
    samples = {s.key: s for s in cut_samples(episode(), params())}
    first = load_npz(samples["ep3__t000000"].members["lowdim.npz"])
    assert first["past_mask"].tolist() == [False, False, False, False, False, False]
    assert first["future_mask"].tolist() == [False, False, True, True, True, True]
    last = load_npz(samples["ep3__t000007"].members["lowdim.npz"])
    assert last["past_mask"].tolist() == [True, True, False, False, False, False]
    assert last["future_mask"].tolist() == [False, False, True, False, False, False]
    meta = json.loads(samples["ep3__t000007"].members["metadata.json"])
    assert (meta["past_padding"], meta["future_padding"], meta["is_padded"]) == (0, 3, True)
    assert meta["anchor_relative_idx"] == 2 and meta["original_episode_length"] == 8


def test_window_rows_follow_the_anchor_and_edge_padding_repeats_the_nearest_row():
    samples = {s.key: s for s in cut_samples(episode(), params())}
    state = load_npz(samples["ep3__t000001"].members["lowdim.npz"])["state"]
    # Rows t = -1, 0, 1, 2, 3, 4: the t = -1 row repeats t = 0.
    assert state[:, 1].tolist() == [0, 0, 1, 2, 3, 4]
    assert state[:, 0].tolist() == [3] * 6


def test_zero_padding_zeroes_padded_rows():
    samples = {s.key: s for s in cut_samples(episode(), params(padding_strategy="zero"))}
    state = load_npz(samples["ep3__t000006"].members["lowdim.npz"])["state"]
    assert state[:, 1].tolist() == [4, 5, 6, 7, 0, 0]
    assert not state[4:].any()


def test_every_image_comes_from_the_frame_its_offset_names_clamped_at_the_start():
    for sample in cut_samples(episode(), params()):
        meta = json.loads(sample.members["metadata.json"])
        anchor = meta["anchor_timestep"]
        assert meta["image_timesteps"] == [max(anchor - 1, 0), anchor]
        for c, cam in enumerate(("a", "b")):
            for offset, t in zip((-1, 0), meta["image_timesteps"]):
                assert decode_colour(decode_jpeg(sample.members[f"{cam}_t{offset}.jpg"])) == (3, t, c)


def test_images_are_resized_to_the_configured_size():
    sample = next(cut_samples(episode(), params(image_size=[16, 24], resize_mode="fit")))
    assert decode_jpeg(sample.members["a_t0.jpg"]).shape == (16, 24, 3)


def test_a_frame_stream_shorter_than_the_episode_is_an_episode_error():
    ep = episode()
    ep.frames = iter(list(ep.frames)[:4])
    with pytest.raises(EpisodeError, match="frame stream ended at t=4"):
        list(cut_samples(ep, params()))


def test_relative_xyz_is_the_offset_from_the_reference_at_the_anchor():
    ep = episode()
    p = params(relative_pose_fields={"state": "state"})
    sample = next(s for s in cut_samples(ep, p) if s.key.endswith("t000004"))
    rel = load_npz(sample.members["lowdim.npz"])["state_relative"]
    assert rel[:, 1].tolist() == [-2, -1, 0, 1, 2, 3]


def test_relative_rot_6d_of_the_reference_itself_is_identity():
    r6 = np.array([[0.0, 1.0, 0.0, -1.0, 0.0, 0.0]])
    rel = relative_pose(r6, r6[0], "pose__rot_6d")
    np.testing.assert_allclose(rel, [[1, 0, 0, 0, 1, 0]], atol=1e-6)


def test_per_timestep_constants_follow_the_window_and_fixed_ones_are_kept():
    ep = episode()
    ep.constants = {
        "extrinsics__a": np.arange(8, dtype=np.float32)[:, None, None] * np.eye(4, dtype=np.float32),  # (L, 4, 4)
        "intrinsics__a": np.eye(3, dtype=np.float32),  # (3, 3)
    }
    sample = next(s for s in cut_samples(ep, params()) if s.key.endswith("t000003"))
    arrays = load_npz(sample.members["lowdim.npz"])
    assert arrays["extrinsics__a"].shape == (6, 4, 4)
    assert arrays["extrinsics__a"][:, 0, 0].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(arrays["intrinsics__a"], np.eye(3))
