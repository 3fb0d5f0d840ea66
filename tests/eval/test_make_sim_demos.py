"""Scripted demonstrations recorded as a LeRobot v3.0 dataset (tests/tutorials/test_sim_tutorial.py takes one through
the Ray preprocessing, training and evaluation)."""

from __future__ import annotations

import json

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from vla_foundry.eval.make_sim_demos import SimDemosParams, main, make_sim_demos
from vla_foundry.eval.sim import make_env
from vla_foundry.params.base_params import ConfigError


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("demos") / "aloha"
    params = SimDemosParams(
        env="aloha_transfer_cube", episodes=1, output_dir=str(root), seed=2, image_size=(16, 16), no_progress=True
    )
    out = make_sim_demos(params)
    return root, out


def test_demo_dataset_is_lerobot_v3_with_complete_meta(demos):
    root, out = demos
    assert out["episodes"] == 1 and out["failed_seeds"] == {}
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 50
    assert info["features"]["observation.state"]["shape"] == [14] == info["features"]["action"]["shape"]
    assert info["features"]["observation.images.top"]["dtype"] == "video"
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    steps = len(data["frame_index"])
    assert steps == info["total_frames"] == out["frames"]
    assert data["frame_index"] == list(range(steps)) and set(data["episode_index"]) == {0}
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert episodes[0]["length"] == steps and episodes[0]["videos/observation.images.top/to_timestamp"] == steps / 50
    assert pq.read_table(root / "meta" / "tasks.parquet").to_pydict()["task"] == [episodes[0]["tasks"][0]]
    stats = json.loads((root / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["mean"], np.mean(data["action"], axis=0), rtol=1e-5)
    with av.open(str(root / "videos" / "observation.images.top" / "chunk-000" / "file-000.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == steps


def test_recorded_actions_replayed_from_the_seed_succeed(demos):
    # The dataset holds what the env executed: replaying its actions from the same seed transfers the cube, and
    # the recorded states are the states the replay passes through.
    root, _ = demos
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    env = make_env("aloha_transfer_cube", (), (16, 16), 400, expert=False)
    obs, _ = env.reset(seed=2)
    success = False
    for t, action in enumerate(data["action"]):
        # Actions are stored as float32: replayed, the contact-rich physics drifts by up to ~1e-4 rad over an
        # episode (mujoco 3.3); a row off by one step would differ by far more.
        np.testing.assert_allclose(obs["agent_pos"], data["observation.state"][t], atol=1e-3)
        obs, _, _, _, info = env.step(np.asarray(action, dtype=np.float64))
        success = info["is_success"]
    assert success


def test_env_without_expert_is_refused_in_one_line(tmp_path, capsys):
    assert main(["--env", "pusht", "--episodes", "1", "--output_dir", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: env pusht has no scripted expert to record"]
    with pytest.raises(ConfigError, match="not cameras of aloha_transfer_cube"):
        make_sim_demos(
            SimDemosParams(env="aloha_transfer_cube", episodes=1, output_dir=str(tmp_path / "y"), cameras=("side",))
        )
