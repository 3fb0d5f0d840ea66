"""Fixtures of the data tests: the tiny datasets of every modality, built once per session by the generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from vla_foundry.data.scripts.make_tiny_datasets import make_all
from vla_foundry.params.data_params import RoboticsDataParams


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """{name: directory} of text, text_untokenized, image_caption, robotics_lerobot, robotics_spartan."""
    return make_all(str(tmp_path_factory.mktemp("tiny_data")))


def robotics_params(dataset_dirs: list[str], **overrides) -> RoboticsDataParams:
    """Params for the LeRobot-style tiny robotics data (fields observation.state / action)."""
    kwargs = dict(
        dataset_manifest=list(dataset_dirs),
        dataset_weighting=[1.0] * len(dataset_dirs),
        dataset_modality=["robotics"] * len(dataset_dirs),
        action_fields=["action"],
        proprioception_fields=["observation.state"],
        num_workers=0,
        shuffle_buffer_size=8,
        seed=0,
    )
    kwargs.update(overrides)
    return RoboticsDataParams(**kwargs)


def tar_members(path: str | Path) -> list[str]:
    import tarfile

    with tarfile.open(path) as tar:
        return tar.getnames()
