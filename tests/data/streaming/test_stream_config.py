"""Configuration of a streamed LeRobot dataset: one preset for the offline job and the stream, errors in one line."""

from __future__ import annotations

import pytest

from tests.conftest import PRESETS, REPO_ROOT
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.parsing import parse_train_params

JOB = REPO_ROOT / "config_presets" / "training_jobs" / "vla_diffusion_tiny_quickstart.yaml"


def test_the_offline_preset_configures_the_stream_and_flags_override_it():
    params = parse_train_params([
        "--config_path", str(JOB),
        "--data.dataset_manifest", "[examples/data/robotics_lerobot, /data/my_lerobot_v3]",
        "--data.dataset_modality", "[robotics, lerobot]", "--data.dataset_weighting", "[0.5, 0.5]",
        "--data.streaming", f"include {PRESETS / 'preprocessing' / 'lerobot_1past_14future.yaml'}",
        "--data.streaming.image_size", "[96, 128]",
    ])  # fmt: skip
    streaming = params.data.streaming
    assert (streaming.past_lowdim_steps, streaming.future_lowdim_steps, streaming.image_indices) == (1, 14, [-1, 0])
    assert streaming.image_size == [96, 128] and streaming.lowdim_fields == ["observation.state", "action"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--data.streaming.source_episodes", "[/data/x]"], "source_episodes must stay empty"),
        (["--data.streaming.type", "spartan"], "only lerobot sources are streamed"),
        (["--data.streaming.image_size", "[96]"], "image_size=\\[96\\] must be \\[height, width\\]"),
        (["--data.ray_num_workers", "0"], "ray_num_workers=0 must be >= 1"),
        (
            ["--data.stream_decoding", "loaders"],
            "stream_decoding=.loaders. is not a way to decode a stream; closest: loader; valid: ray, loader",
        ),
    ],
)
def test_bad_streaming_settings_end_with_one_line(flags, message):
    with pytest.raises(ConfigError, match=message):
        parse_train_params(["--config_path", str(JOB), "--data.dataset_modality", "[lerobot]", *flags])
