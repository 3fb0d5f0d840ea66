"""The three loaders benchmarks/bench_loaders.py compares yield the same samples: on a dataset recorded by the real
lerobot library, lerobot's own `LeRobotDataset` (window from `delta_timestamps`), the offline job's shards and this
project's LeRobot stream (decoded by Ray tasks, and by the loader's workers) give the same low-dim window rows and
the same frame for every anchor."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.data.preprocessing.conftest import decode_jpeg, load_npz, preprocess_robotics, read_dataset, robotics_argv
from tests.data.streaming.conftest import stream_data_params, window_params
from tests.data.streaming.test_stream_samples import stream_rank
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.scripts.lerobot_venv import ensure_lerobot_venv, lerobot_env
from vla_foundry.data.scripts.make_synthetic_lerobot import decode_colour
from vla_foundry.data.streaming.source import prepare_stream_dir

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.slow]

LEROBOT_SIDE = Path(__file__).resolve().parents[3] / "benchmarks" / "lerobot_loader.py"
EPISODES, LENGTH, SIZE, PAST, FUTURE = 3, 20, 32, 1, 14
FIELDS = ("observation.state", "action")
# AV1 decode (lerobot's default codec) then JPEG in the shards, on a flat colour, in uint8 steps.
FRAME_TOLERANCE = 6


def lerobot(*args: str | Path) -> None:
    run = subprocess.run(
        [str(ensure_lerobot_venv()), str(LEROBOT_SIDE), *map(str, args)],
        env=lerobot_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-4000:]


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """{"lerobot": {field: (N, ...)}, "shards" / "stream" / "stream_loader": {key: sample}}."""
    base = tmp_path_factory.mktemp("three_loaders")
    root = base / "recorded"
    lerobot("write", root, "--episodes", EPISODES, "--length", LENGTH, "--size", SIZE, "--cameras", 1)
    lerobot("read", root, base / "lerobot.npz", "--past", PAST, "--future", FUTURE)
    with np.load(base / "lerobot.npz") as npz:
        read = {k: npz[k] for k in npz.files}
    window = ["--future_lowdim_steps", str(FUTURE), "--max_future_padding", str(FUTURE), "--image_indices", "[0]"]
    outcome = preprocess_robotics(robotics_argv([root], base / "offline", *window, "--image_size", f"[{SIZE}, {SIZE}]"))
    shards = read_dataset(outcome.dataset_dir)
    streaming = window_params(
        base / "cache", future_lowdim_steps=FUTURE, max_future_padding=FUTURE, image_indices=[0], image_size=[SIZE] * 2
    )
    params = stream_data_params([root], ["lerobot"], [1.0], base / "cache", streaming=streaming)
    prepare_stream_dir(params, str(root))
    plan = plan_checkpoint(params, 0, EPISODES * LENGTH)
    streamed, stats = stream_rank(params, plan)
    in_loader, loader_stats = stream_rank(dataclasses.replace(params, stream_decoding="loader"), plan)
    assert stats.bad_samples == loader_stats.bad_samples == 0
    return {
        "lerobot": read,
        "shards": shards,
        "stream": {s["__key__"]: s for s in streamed},
        "stream_loader": {s["__key__"]: s for s in in_loader},
    }


def anchor_of(key: str) -> tuple[int, int]:
    """(episode, t) of a sample key `<dataset>_episode_<e>__t<t>`."""
    episode, t = key.rsplit("__t", 1)
    return int(episode.rsplit("_", 1)[-1]), int(t)


def lerobot_row(read: dict, episode: int, t: int) -> int:
    """Row of lerobot's items for anchor (episode, t): items follow the global frame index."""
    rows = np.flatnonzero((read["episode_index"] == episode) & (read["frame_index"] == t))
    assert len(rows) == 1
    return int(rows[0])


def test_every_frame_is_an_anchor_of_each_loader(three):
    every = {(e, t) for e in range(EPISODES) for t in range(LENGTH)}
    assert {anchor_of(k) for k in three["shards"]} == every
    assert {anchor_of(k) for k in three["stream"]} == every
    assert {anchor_of(k) for k in three["stream_loader"]} == every
    assert len(three["lerobot"]["index"]) == len(every)


@pytest.mark.parametrize("loader", ["shards", "stream", "stream_loader"])
def test_low_dim_window_rows_equal_lerobots_delta_timestamp_rows(three, loader):
    read = three["lerobot"]
    for key, sample in three[loader].items():
        episode, t = anchor_of(key)
        row = lerobot_row(read, episode, t)
        lowdim = sample["lowdim.npz"]  # the stream hands the arrays over, a shard the npz bytes
        lowdim = lowdim if isinstance(lowdim, dict) else load_npz(lowdim)
        valid = lowdim["past_mask"] | lowdim["future_mask"]  # (T,) rows t - PAST .. t + FUTURE inside the episode
        # lerobot pads outside the episode by repeating the edge row and flags those rows in <field>_is_pad.
        for field in FIELDS:
            np.testing.assert_array_equal(valid, ~read[f"{field}_is_pad"][row], err_msg=f"{key} {field}")
            np.testing.assert_array_equal(lowdim[field][valid], read[field][row][valid], err_msg=f"{key} {field}")
        # Both against the recorded values: state[t'] = [e, t', t'/2].
        steps = np.arange(t - PAST, t + FUTURE + 1)[valid]
        np.testing.assert_array_equal(lowdim["observation.state"][valid][:, 1], steps)


@pytest.mark.parametrize("loader", ["shards", "stream", "stream_loader"])
def test_frame_at_the_anchor_equals_lerobots_frame(three, loader):
    read = three["lerobot"]
    camera = "observation.images.cam0"
    for key, sample in three[loader].items():
        episode, t = anchor_of(key)
        theirs = read[camera][lerobot_row(read, episode, t)]  # (SIZE, SIZE, 3) uint8
        ours = sample["cam0_t0.jpg"]
        ours = decode_jpeg(ours) if isinstance(ours, bytes) else ours  # shards keep JPEG bytes, the stream arrays
        assert ours.shape == theirs.shape == (SIZE, SIZE, 3)
        assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= FRAME_TOLERANCE, key
        assert decode_colour(ours) == decode_colour(theirs) == (episode % 6, t, 0), key


def test_task_string_of_each_sample_is_lerobots(three):
    read = three["lerobot"]
    for key, sample in three["shards"].items():
        episode, t = anchor_of(key)
        instructions = json.loads(sample["language_instructions.json"])["original"]
        assert instructions == [str(read["task"][lerobot_row(read, episode, t)])] == [f"task {episode % 3}"]
