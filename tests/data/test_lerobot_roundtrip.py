"""LeRobot v3.0 datasets written here are read by the real `lerobot` library value for value, and an interrupted
write leaves no dataset behind.

The lerobot side runs in its own environment (vla_foundry/data/scripts/lerobot_venv.py: lerobot needs Python >= 3.12
and an older torch than this project), built once and cached; tests/data/read_with_lerobot.py is what it runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla_foundry.data.scripts.lerobot_venv import ensure_lerobot_venv, lerobot_env
from vla_foundry.data.scripts.make_synthetic_lerobot import (
    CAMERAS,
    TASKS,
    LeRobotV3Writer,
    action_rows,
    decode_colour,
    frame_colour,
    make_lerobot_v3,
    state_rows,
)

READER = Path(__file__).with_name("read_with_lerobot.py")
REPO_ROOT = Path(__file__).resolve().parents[2]
# Ten Meta-World-like task strings over twelve episodes: episodes 10 and 11 repeat the tasks of 0 and 1.
TASK_NAMES = [f"move object {k} to goal {9 - k}" for k in range(10)]
CAMERA_SIZES = {"observation.images.corner": (24, 32), "observation.images.gripper": (16, 16)}
# Largest per-pixel difference H.264 (crf 10, yuv420p) leaves on a flat colour, in uint8 steps.
VIDEO_TOLERANCE = 3


def recorded_episodes(seed: int = 0) -> list[dict]:
    """Twelve episodes of 3-6 steps: random state (T, 4) / action (T, 3), flat-colour frames per camera."""
    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(12):
        length = 3 + e % 4
        frames = {
            cam: [np.full((h, w, 3), frame_colour(e, t, c), np.uint8) for t in range(length)]
            for c, (cam, (h, w)) in enumerate(CAMERA_SIZES.items())
        }
        state = rng.normal(size=(length, 4)).astype(np.float32)
        action = rng.normal(size=(length, 3)).astype(np.float32)
        episodes.append({"task": TASK_NAMES[e % 10], "state": state, "action": action, "frames": frames})
    return episodes


def write_recorded(root: Path, episodes: list[dict]) -> Path:
    writer = LeRobotV3Writer(root, 10, list(CAMERA_SIZES), [f"s{i}" for i in range(4)], [f"a{i}" for i in range(3)])
    for ep in episodes:
        writer.add_episode(ep["task"], ep["state"], ep["action"], ep["frames"])
    return writer.close()


@pytest.fixture(scope="module")
def episodes() -> list[dict]:
    return recorded_episodes()


@pytest.fixture(scope="module")
def lerobot_read(tmp_path_factory: pytest.TempPathFactory, episodes: list[dict]) -> dict[str, dict]:
    """{"recorded": ..., "synthetic": ...}: what lerobot's LeRobotDataset returned for every item of a dataset
    written by LeRobotV3Writer and of the multi-file synthetic dataset with an embedded PNG camera."""
    base = tmp_path_factory.mktemp("lerobot_roundtrip")
    roots = {
        "recorded": write_recorded(base / "recorded", episodes),
        "synthetic": make_lerobot_v3(base / "synthetic", image_keys=["observation.images.gripper"]),
    }
    python = ensure_lerobot_venv()
    args = [str(a) for name, root in roots.items() for a in (root, base / f"{name}.npz")]
    run = subprocess.run(
        [str(python), str(READER), *args], cwd=base, env=lerobot_env(), capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-4000:]
    out = {}
    for name in roots:
        with np.load(base / f"{name}.npz") as npz:
            out[name] = {k.replace("|", "/"): npz[k] for k in npz.files}
        out[name]["meta"] = json.loads(str(out[name]["meta"]))
    return out


def expected_colours(lengths: list[int], camera: int) -> list[tuple[int, int, int]]:
    """What decode_colour reads from each frame: (episode mod 6, step, camera), as frame_colour wraps ids."""
    return [(e % 6, t, camera) for e, n in enumerate(lengths) for t in range(n)]


@pytest.mark.slow
def test_lerobot_reads_every_state_and_action_row_the_writer_was_given(lerobot_read, episodes):
    got = lerobot_read["recorded"]
    assert got["meta"]["len"] == sum(len(ep["state"]) for ep in episodes)
    assert got["meta"]["num_episodes"] == 12
    np.testing.assert_array_equal(got["observation.state"], np.concatenate([ep["state"] for ep in episodes]))
    np.testing.assert_array_equal(got["action"], np.concatenate([ep["action"] for ep in episodes]))
    np.testing.assert_array_equal(got["episode_index"], [e for e, ep in enumerate(episodes) for _ in ep["state"]])
    np.testing.assert_array_equal(got["frame_index"], [t for ep in episodes for t in range(len(ep["state"]))])


@pytest.mark.slow
def test_lerobot_gives_every_frame_the_task_string_of_its_episode(lerobot_read, episodes):
    got = lerobot_read["recorded"]
    assert got["meta"]["total_tasks"] == 10
    assert got["task"].tolist() == [ep["task"] for ep in episodes for _ in ep["state"]]
    # Task indices in order of first appearance: episode e has task e mod 10.
    np.testing.assert_array_equal(got["task_index"], [e % 10 for e, ep in enumerate(episodes) for _ in ep["state"]])


@pytest.mark.slow
def test_lerobot_decodes_each_cameras_frame_of_each_row(lerobot_read, episodes):
    got = lerobot_read["recorded"]
    for c, (cam, (h, w)) in enumerate(CAMERA_SIZES.items()):
        frames = got[cam]
        assert frames.shape == (len(got["task"]), h, w, 3)
        expected = np.stack([f for ep in episodes for f in ep["frames"][cam]])
        assert np.abs(frames.astype(int) - expected.astype(int)).max() <= VIDEO_TOLERANCE, cam
        assert [decode_colour(f) for f in frames] == expected_colours([len(ep["state"]) for ep in episodes], c)


@pytest.mark.slow
def test_lerobot_reads_the_multi_file_synthetic_dataset_value_for_value(lerobot_read):
    got = lerobot_read["synthetic"]
    lengths = [12, 9, 15, 10, 11]  # make_lerobot_v3's default episodes, over 2 data files and 2 video files
    assert (got["meta"]["len"], got["meta"]["num_episodes"], got["meta"]["total_tasks"]) == (57, 5, 2)
    np.testing.assert_array_equal(
        got["observation.state"], np.concatenate([state_rows(e, n) for e, n in enumerate(lengths)])
    )
    np.testing.assert_array_equal(got["action"], np.concatenate([action_rows(e, n) for e, n in enumerate(lengths)]))
    assert got["task"].tolist() == [TASKS[e % 2] for e, n in enumerate(lengths) for _ in range(n)]
    for c, cam in enumerate([*CAMERAS, "observation.images.gripper"]):  # the gripper is a PNG in the data file
        assert [decode_colour(f) for f in got[cam]] == expected_colours(lengths, c), cam


# ---------------------------------------------------------------------------------------------------------------
# Files and interrupted writes (no lerobot needed)


def test_tasks_parquet_is_indexed_by_the_task_strings_in_task_index_order(tmp_path: Path):
    import pandas as pd

    root = write_recorded(tmp_path / "ds", recorded_episodes())
    tasks = pd.read_parquet(root / "meta" / "tasks.parquet")
    assert tasks.index.name == "task"
    assert [tasks.iloc[k].name for k in range(len(tasks))] == TASK_NAMES
    assert tasks["task_index"].tolist() == list(range(10))
    assert json.loads((root / "meta" / "info.json").read_text())["total_tasks"] == 10


def test_a_recording_killed_before_close_leaves_no_dataset_at_the_output_dir(tmp_path: Path):
    root = tmp_path / "demos"
    script = (
        "import sys, time, numpy as np\n"
        "from vla_foundry.data.scripts.make_synthetic_lerobot import LeRobotV3Writer\n"
        f"w = LeRobotV3Writer({str(root)!r}, 10, ['cam'], ['s'], ['a'])\n"
        "for e in range(2):\n"
        "    w.add_episode('t', np.zeros((4, 1)), np.zeros((4, 1)), {'cam': [np.zeros((16, 16, 3), np.uint8)] * 4})\n"
        "print('recording', flush=True)\n"
        "time.sleep(120)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        assert child.stdout.readline().strip() == "recording"
        staging = [p for p in tmp_path.iterdir() if p.name.startswith(".demos.partial-")]
        assert len(staging) == 1 and any(staging[0].rglob("*.mp4"))  # it was writing
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    assert not root.exists()


def test_an_error_inside_the_with_block_removes_everything_it_wrote(tmp_path: Path):
    frames = {"cam": [np.zeros((16, 16, 3), np.uint8)] * 3}
    bad = {"cam": [np.zeros((8, 8, 3), np.uint8)] * 3}  # another frame size: refused
    with (
        pytest.raises(ValueError, match="expected"),
        LeRobotV3Writer(tmp_path / "ds", 10, ["cam"], ["s"], ["a"]) as writer,
    ):
        writer.add_episode("t", np.zeros((3, 1)), np.zeros((3, 1)), frames)
        writer.add_episode("t", np.zeros((3, 1)), np.zeros((3, 1)), bad)
    assert list(tmp_path.iterdir()) == []


def test_close_moves_the_finished_dataset_into_an_existing_empty_output_dir(tmp_path: Path):
    (tmp_path / "ds").mkdir()
    frames = {"cam": [np.zeros((16, 16, 3), np.uint8)] * 3}
    with LeRobotV3Writer(tmp_path / "ds", 10, ["cam"], ["s"], ["a"]) as writer:
        writer.add_episode("t", np.zeros((3, 1)), np.zeros((3, 1)), frames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert json.loads((tmp_path / "ds" / "meta" / "info.json").read_text())["total_frames"] == 3
