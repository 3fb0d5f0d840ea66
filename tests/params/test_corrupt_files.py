"""Every user-facing loader of YAML / JSON files (job configs, a run's saved params, processor and normaliser
configs, stats.json, manifest.jsonl, preprocessing_config.yaml), local and s3://: a missing, truncated, binary or
malicious file ends in ONE line naming the file (an error `main.py` prints as one line), and no payload runs."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import PRESETS
from tests.data.conftest import robotics_params
from vla_foundry.training_run import USER_FACING_ERRORS

GARBAGE = bytes(range(128, 256)) * 4  # not UTF-8 text: a binary or corrupt file


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics

    return make_robotics(str(tmp_path_factory.mktemp("corrupt") / "robotics"), "lerobot", seed=0)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, dataset) -> str:
    """A robotics run directory's small files: config_model.yaml, processor and normaliser configs, stats.json."""
    from vla_foundry.data.robotics.processor import RoboticsProcessor
    from vla_foundry.params.model_params import ModelParams
    from vla_foundry.params.parsing import load_params_from_yaml, save_params

    run = str(tmp_path_factory.mktemp("corrupt_run"))
    RoboticsProcessor.from_data_params(robotics_params([dataset])).save(run)
    save_params(
        load_params_from_yaml(ModelParams, f"{PRESETS}/models/transformer_tiny.yaml"), f"{run}/config_model.yaml"
    )
    return run


def _load_config(path: str) -> object:
    from vla_foundry.params import parse_train_params

    return parse_train_params(["--config_path", path])


def _load_saved_params(path: str) -> object:
    from vla_foundry.params.model_params import ModelParams
    from vla_foundry.params.parsing import load_params_from_yaml

    return load_params_from_yaml(ModelParams, path)


def _load_processor(path: str) -> object:
    from vla_foundry.data.robotics.processor import RoboticsProcessor

    return RoboticsProcessor.load(os.path.dirname(path))


def _load_stats(path: str) -> object:
    from vla_foundry.data.robotics.stats import load_stats

    return load_stats(path)


def _load_manifest(path: str) -> object:
    from vla_foundry.data.manifest import read_manifest

    return read_manifest(os.path.dirname(path))


def _load_layout(path: str) -> object:
    from vla_foundry.data.robotics.processor import read_dataset_layout

    return read_dataset_layout(os.path.dirname(path))


# (loader, where the file lives: "run" / "dataset" / "config", file name)
LOADERS: dict[str, tuple[Callable[[str], object], str, str]] = {
    "job_config": (_load_config, "config", "job.yaml"),
    "run_params": (_load_saved_params, "run", "config_model.yaml"),
    "processor_config": (_load_processor, "run", "config_processor.yaml"),
    "normalizer_config": (_load_processor, "run", "config_normalizer.yaml"),
    "run_stats": (_load_processor, "run", "stats.json"),
    "dataset_stats": (_load_stats, "dataset", "stats.json"),
    "manifest": (_load_manifest, "dataset", "manifest.jsonl"),
    "preprocessing_config": (_load_layout, "dataset", "preprocessing_config.yaml"),
}


def _place(kind: str, name: str, run_dir: str, dataset: str, tmp_path: Path) -> Path:
    """A fresh copy of the folder holding `name`, so each fault is injected into its own file."""
    if kind == "config":
        folder = tmp_path / "configs"
        folder.mkdir()
        (folder / name).write_text(
            f"model: !include {PRESETS}/models/transformer_tiny.yaml\ndata: !include {PRESETS}/data/tiny_text.yaml\n"
            "total_train_samples: 64\n"
        )
    else:
        folder = Path(shutil.copytree(run_dir if kind == "run" else dataset, tmp_path / kind))
    return folder / name


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])  # cut inside a line / value


FAULTS: dict[str, Callable[[Path], None]] = {
    "missing": lambda p: p.unlink(),
    "truncated": _truncate,
    "binary": lambda p: p.write_bytes(GARBAGE),
    "empty": lambda p: p.write_bytes(b""),
}


def _assert_one_line_naming(error: BaseException, path: str) -> None:
    assert isinstance(error, USER_FACING_ERRORS), f"{type(error).__name__}: {error}"
    message = str(error)
    assert "\n" not in message, message
    assert path in message, message


# A saved params mapping cut between lines is still a valid mapping whose missing fields take defaults: nothing in
# the file tells it apart from a shorter config, so that one combination is not a case of this test.
CASES = [(loader, fault) for loader in sorted(LOADERS) for fault in sorted(FAULTS)]
CASES.remove(("run_params", "truncated"))


@pytest.mark.parametrize(("loader", "fault"), CASES)
def test_a_damaged_file_is_one_line_naming_it(loader, fault, run_dir, dataset, tmp_path):
    load, kind, name = LOADERS[loader]
    path = _place(kind, name, run_dir, dataset, tmp_path)
    FAULTS[fault](path)
    with pytest.raises(BaseException) as caught:
        load(str(path))
    _assert_one_line_naming(caught.value, str(path))


@pytest.mark.parametrize("loader", sorted(k for k, v in LOADERS.items() if v[2].endswith(".yaml")))
def test_a_yaml_file_with_a_python_payload_is_refused_and_not_run(loader, run_dir, dataset, tmp_path):
    load, kind, name = LOADERS[loader]
    path = _place(kind, name, run_dir, dataset, tmp_path)
    marker = tmp_path / "payload_ran"
    path.write_text(f'!!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(BaseException) as caught:
        load(str(path))
    _assert_one_line_naming(caught.value, str(path))
    assert "could not determine a constructor" in str(caught.value)
    assert not marker.exists()


def test_a_config_on_s3_loads_with_its_includes_and_a_missing_one_is_one_line(s3_bucket, tmp_path):
    from vla_foundry import storage

    storage.write_text(f"{s3_bucket}/configs/model.yaml", (PRESETS / "models" / "transformer_tiny.yaml").read_text())
    storage.write_text(f"{s3_bucket}/configs/data.yaml", (PRESETS / "data" / "tiny_text.yaml").read_text())
    job = "model: !include model.yaml\ndata: !include data.yaml\ntotal_train_samples: 64\n"
    storage.write_text(f"{s3_bucket}/configs/job.yaml", job)
    params = _load_config(f"{s3_bucket}/configs/job.yaml")
    assert params.model.type == "transformer" and params.total_train_samples == 64
    with pytest.raises(BaseException) as caught:
        _load_config(f"{s3_bucket}/configs/nope.yaml")
    _assert_one_line_naming(caught.value, f"{s3_bucket}/configs/nope.yaml")


def test_a_corrupt_file_of_an_s3_run_dir_is_one_line_naming_it(s3_bucket, run_dir):
    from vla_foundry import storage

    remote = f"{s3_bucket}/runs/r"
    for name in os.listdir(run_dir):
        storage.upload_file(os.path.join(run_dir, name), f"{remote}/{name}")
    storage.write_bytes(f"{remote}/config_normalizer.yaml", GARBAGE)
    with pytest.raises(BaseException) as caught:
        _load_processor(f"{remote}/config_normalizer.yaml")
    _assert_one_line_naming(caught.value, f"{remote}/config_normalizer.yaml")


class _Payload:
    """Unpickling this runs `touch <path>`: what a malicious object array in a sample would do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_sample_with_a_pickled_object_array_is_a_sample_error_and_not_run(dataset, tmp_path):
    import io

    import numpy as np

    from vla_foundry.data.robotics.processor import RoboticsProcessor, SampleError
    from vla_foundry.data.tar_stream import iter_tar_samples

    raw = next(iter_tar_samples(f"{dataset}/shard_000000.tar"))
    arrays = dict(np.load(io.BytesIO(raw["lowdim.npz"])))
    marker = tmp_path / "payload_ran"
    arrays["action"] = np.array([_Payload(str(marker))], dtype=object)
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # object arrays are stored pickled
    processor = RoboticsProcessor.from_data_params(robotics_params([dataset]))
    with pytest.raises(SampleError, match="Object arrays cannot be loaded when allow_pickle=False"):
        processor.process_sample({**raw, "lowdim.npz": buf.getvalue()}, dataset, None, training=False)
    assert not marker.exists()
