"""MCAP logs (ROS 2 CDR + JSON channels, one file or a rosbag2 folder of split files per episode): topics at
unrelated rates aligned to --fps on log times, every sample's frames and values checked against the latest message
at or before its step, stream gaps reported, and missing topics named by episode and topic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.data.preprocessing.conftest import decode_jpeg, load_npz, preprocess_robotics, read_dataset, robotics_argv
from tests.data.preprocessing.robot_log_files import MCAP_MAPPING, mcap_times, write_mcap
from vla_foundry.data.scripts.make_synthetic_lerobot import decode_colour
from vla_foundry.params.base_params import ConfigError

pytestmark = pytest.mark.usefixtures("ray_cluster")

FPS = 10
GAP = (300, 560)  # /joint_states silent in between, in episode 1


def latest(times: list[int], at: float) -> int:
    """Index of the latest message at or before `at` (the rule the tests expect), by a plain scan."""
    return max(i for i, t in enumerate(times) if t <= at)


def grid_ms(times: dict[str, list[int]]) -> list[float]:
    start, end = max(ts[0] for ts in times.values()), min(ts[-1] for ts in times.values())
    return [start + k * 1000 / FPS for k in range(int((end - start) * FPS / 1000) + 1)]


@pytest.fixture(scope="module")
def mcap_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("mcap")
    logs = root / "mcap_logs"
    (logs / "episode_1").mkdir(parents=True)
    times = {0: mcap_times(1250), 1: mcap_times(1450, skip=GAP)}
    write_mcap([logs / "episode_0.mcap"], 0, times[0])
    # Episode 1 is a rosbag2 recording split in two files.
    (logs / "episode_1" / "metadata.yaml").write_text("rosbag2_bagfile_information: {storage_identifier: mcap}\n")
    write_mcap([logs / "episode_1" / f"episode_1_{i}.mcap" for i in range(2)], 1, times[1], split_ms=700)
    mapping = root / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MCAP_MAPPING))
    argv = ["--mapping_path", str(mapping), "--fps", str(FPS)]
    outcome = preprocess_robotics(robotics_argv([logs], root / "out", *argv, type_="mcap"))
    return outcome, read_dataset(root / "out" / "shards"), times, root


def test_every_sample_holds_the_latest_message_at_or_before_each_step_of_every_topic(mcap_run):
    outcome, samples, times, _ = mcap_run
    grids = {e: grid_ms(times[e]) for e in times}
    assert len(samples) == sum(len(g) for g in grids.values()) and outcome.metadata["inputs_failed"] == 0
    for members in samples.values():
        meta = json.loads(members["metadata.json"])
        e = int(meta["episode_id"].rsplit("_", 1)[-1])
        grid = grids[e]
        for cam, c, topic in ((("head", 0, "/camera/head/compressed")), ("wrist", 1, "/camera/wrist/image_raw")):
            for offset, step in zip(meta["image_indices"], meta["image_timesteps"]):
                shown = decode_colour(decode_jpeg(members[f"{cam}_t{offset}.jpg"]))
                assert shown == (e, latest(times[e][topic], grid[step]), c), (meta["sample_id"], cam, offset)
        lowdim = load_npz(members["lowdim.npz"])
        valid = lowdim["past_mask"] | lowdim["future_mask"]
        steps = (np.arange(len(valid)) - meta["anchor_relative_idx"] + meta["anchor_timestep"])[valid]
        joint = [times[e]["/joint_states"][latest(times[e]["/joint_states"], grid[s])] for s in steps]
        command = [times[e]["/arm/command"][latest(times[e]["/arm/command"], grid[s])] for s in steps]
        np.testing.assert_array_equal(lowdim["observation.state"][valid], np.stack([steps * 0 + e, joint], 1))
        np.testing.assert_array_equal(lowdim["action"][valid], np.stack([steps * 0 + e, command, steps * 0 + 0.5], 1))
        assert json.loads(members["language_instructions.json"]) == {"original": ["stack the blocks"]}


def test_a_silent_stream_is_reported_as_a_gap_of_its_topic_at_the_steps_it_is_stale(mcap_run):
    outcome, _, times, _ = mcap_run
    quality = outcome.metadata["quality"]["episodes"]
    grid = grid_ms(times[1])
    joint = times[1]["/joint_states"]
    stale = [k for k, g in enumerate(grid) if g - joint[latest(joint, g)] > 1000 / FPS]
    assert stale  # the planted gap is longer than one period
    gaps = quality["mcap_logs_episode_1"]["stream_gaps"]
    assert gaps["/joint_states"]["stale_at"] == stale and gaps["/joint_states"]["stale_steps"] == len(stale)
    assert gaps["/arm/command"]["stale_steps"] == 0
    assert "timestamp_gap" in quality["mcap_logs_episode_1"]["failed_rules"]
    assert "timestamp_gap" not in quality["mcap_logs_episode_0"]["failed_rules"]
    assert quality["mcap_logs_episode_0"]["stream_gaps"]["/joint_states"]["rate_hz"] == pytest.approx(50, rel=0.01)


def test_missing_topics_fail_or_skip_their_episode_naming_it_and_the_topic(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for e, omit in enumerate(["", "/arm/command", "/camera/wrist/image_raw"]):
        write_mcap([logs / f"run_{e}.mcap"], e, mcap_times(600), omit=omit)
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MCAP_MAPPING))
    argv = ["--mapping_path", str(mapping), "--fps", "10", "--max_failure_fraction", "0.5"]
    outcome = preprocess_robotics(robotics_argv([logs], tmp_path / "out", *argv, type_="mcap"))
    failures = outcome.metadata["failures"]
    assert [(f["id"], f["kind"]) for f in failures] == [("logs_run_1", "missing_field")]
    assert "/arm/command" in failures[0]["reason"] and "'action'" in failures[0]["reason"]
    assert outcome.metadata["counters"]["episodes_skipped_missing_camera"] == 1
    episodes = {
        json.loads(s["metadata.json"])["episode_id"] for s in read_dataset(tmp_path / "out" / "shards").values()
    }
    assert episodes == {"logs_run_0"}


def test_mcap_without_fps_or_mapping_is_refused_before_reading(tmp_path: Path):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(yaml.safe_dump(MCAP_MAPPING))
    with pytest.raises(ConfigError, match="--fps"):
        preprocess_robotics(robotics_argv([tmp_path], tmp_path / "out", "--mapping_path", str(mapping), type_="mcap"))
    with pytest.raises(ConfigError, match="--mapping_path"):
        preprocess_robotics(robotics_argv([tmp_path], tmp_path / "out", "--fps", "10", type_="mcap"))
    mapping.write_text(yaml.safe_dump({"camera": {"head": "/image"}}))
    with pytest.raises(ConfigError, match="unknown key 'camera' \\(did you mean cameras\\?\\)"):
        preprocess_robotics(
            robotics_argv([tmp_path], tmp_path / "out", "--mapping_path", str(mapping), "--fps", "10", type_="mcap")
        )


def test_the_dataset_passes_the_validator(mcap_run):
    from vla_foundry.data.validate import validate_dataset

    assert validate_dataset(str(mcap_run[3] / "out" / "shards")) == []


def test_s3_logs_and_output_give_the_samples_of_the_local_run(mcap_run, s3_bucket: str):
    import io
    import os
    import tarfile

    import boto3

    _, local_samples, _, root = mcap_run
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket.removeprefix("s3://")
    for path in (root / "mcap_logs").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"mcap_logs/{path.relative_to(root / 'mcap_logs')}")
    argv = ["--mapping_path", str(root / "mapping.yaml"), "--fps", str(FPS)]
    preprocess_robotics(robotics_argv([f"{s3_bucket}/mcap_logs"], f"{s3_bucket}/out", *argv, type_="mcap"))
    remote: dict[str, dict[str, bytes]] = {}
    for obj in client.list_objects_v2(Bucket=bucket, Prefix="out/shards/shard_")["Contents"]:
        data = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                key, suffix = member.name.split(".", 1)
                remote.setdefault(key, {})[suffix] = tar.extractfile(member).read()
    assert sorted(remote) == sorted(local_samples)
    for key, members in remote.items():
        for suffix, data in members.items():
            if suffix == "metadata.json":  # only `source` names the other root
                a, b = json.loads(data), json.loads(local_samples[key][suffix])
                assert a.pop("source").startswith(f"{s3_bucket}/mcap_logs/") and b.pop("source")
                assert a == b
            else:
                assert data == local_samples[key][suffix], (key, suffix)


def test_a_field_path_the_messages_lack_fails_the_episode_naming_topic_and_field(tmp_path: Path):
    from vla_foundry.data.preprocessing.mcap_source import McapConverter
    from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams, parse_preprocessing_params

    write_mcap([tmp_path / "run_0.mcap"], 0, mcap_times(300))
    mapping = {**MCAP_MAPPING, "lowdim": {"observation.state": {"topic": "/joint_states", "field": "positon"}}}
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(mapping))
    flags = ["--mapping_path", str(tmp_path / "mapping.yaml"), "--fps", "10"]
    argv = robotics_argv([tmp_path], tmp_path / "out", *flags, type_="mcap")
    converter = McapConverter(parse_preprocessing_params(RoboticsPreprocessingParams, argv))
    (task,) = converter.plan_read_tasks()
    (failure,) = converter.read_task(task)
    assert failure.kind == "missing_field" and "/joint_states" in failure.reason and "positon" in failure.reason
