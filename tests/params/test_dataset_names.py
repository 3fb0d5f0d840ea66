"""Every name a user types for robotics data (instruction types, cameras, action / proprioception fields,
normalisation overrides) is checked against what the dataset declares before training, with the closest names."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.data.robotics.processor import RoboticsProcessor, SampleError
from vla_foundry.data.robotics.stats import StatsError
from vla_foundry.params import ConfigError, parse_train_params

DATASET = REPO_ROOT / "examples" / "data" / "robotics_lerobot"
JOB = ["--config_path", str(PRESETS / "training_jobs" / "vla_diffusion_tiny_quickstart.yaml")]


def resolved(*flags: str):
    from vla_foundry.params.resolve import resolve_params

    return resolve_params(parse_train_params([*JOB, *flags]))


def test_a_misspelled_instruction_type_is_refused_with_the_closest_type():
    with pytest.raises(ConfigError, match=r"language_instruction_types: 'orignal' is not .*closest: original"):
        parse_train_params([*JOB, "--data.language_instruction_types", "[orignal]"])


def test_a_misspelled_camera_names_the_closest_stored_camera():
    with pytest.raises(ConfigError, match=r"no camera\(s\) \['wirst'\] .*closest: wrist"):
        resolved("--data.camera_names", "[front, wirst]")


def test_a_misspelled_action_field_names_the_closest_field_in_stats():
    with pytest.raises(StatsError, match=r"no statistics for field 'actoin' .*closest: action"):
        resolved("--data.action_fields", "[actoin]")


def test_a_normalisation_override_for_an_unused_field_is_refused():
    with pytest.raises(ConfigError, match=r"field_overrides names 'observation.stat'.*closest: observation.state"):
        resolved("--data.normalization.field_overrides", "{observation.stat: min_max}")


def first_raw_sample() -> dict:
    """The first sample of the bundled dataset's first shard, as the loader hands it to the processor."""
    raw: dict = {}
    with tarfile.open(DATASET / "shard_000000.tar") as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            if raw and raw["__key__"] != key:
                break
            raw["__key__"] = key
            raw[ext] = tar.extractfile(member).read()
    return raw


def test_a_sample_without_any_requested_instruction_type_is_a_counted_bad_sample():
    # (The resolve step refuses such a dataset up front when its first sample lacks them; later samples may too.)
    params = parse_train_params([*JOB, "--data.language_instruction_types", "[alternative]"]).data
    processor = RoboticsProcessor.from_data_params(params)
    raw = first_raw_sample()
    stored = sorted(json.loads(raw["language_instructions.json"]))
    assert "alternative" not in stored
    with pytest.raises(SampleError, match=r"no instruction of the requested types \['alternative'\].*has: original"):
        processor.process_sample(raw, str(DATASET), rng=None, training=False)


def test_a_requested_instruction_type_is_the_one_drawn():
    params = resolved("--data.language_instruction_types", "[verbose]").data
    raw = first_raw_sample()
    sample = RoboticsProcessor.from_data_params(params).process_sample(raw, str(DATASET), rng=None, training=False)
    assert sample["metadata"]["instruction"] == json.loads(raw["language_instructions.json"])["verbose"][0]


def test_instruction_types_the_dataset_does_not_hold_are_refused_before_training(tmp_path):
    import shutil

    # A copy of the bundled dataset whose samples hold only "original" instructions.
    dataset = tmp_path / "only_original"
    shutil.copytree(DATASET, dataset)
    for shard in dataset.glob("*.tar"):
        members = []
        with tarfile.open(shard) as tar:
            for member in tar.getmembers():
                data = tar.extractfile(member).read()
                if member.name.endswith("language_instructions.json"):
                    data = json.dumps({"original": json.loads(data)["original"]}).encode()
                members.append((member.name, data))
        with tarfile.open(shard, "w") as tar:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ConfigError, match=r"only_original hold none of them; valid: original$"):
        resolved("--data.dataset_manifest", f"[{dataset}]", "--data.language_instruction_types", "[verbose]")
