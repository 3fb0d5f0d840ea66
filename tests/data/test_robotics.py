"""Robotics: window cropping, normalisation (exact inverse), stats merging, cameras, augmentation, run-dir I/O."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile

import numpy as np
import pytest
import torch
import yaml

from vla_foundry.data.dataloader import build_dataloader
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.robotics.normalizer import FieldSpec, Normalizer, NormalizerConfig
from vla_foundry.data.robotics.processor import RoboticsProcessor, derive_robotics_data
from vla_foundry.data.robotics.stats import StatsError, compute_field_stats, merge_stats
from vla_foundry.data.scripts.make_tiny_datasets import encode_jpeg, make_robotics
from vla_foundry.data.tar_stream import iter_tar_samples
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import AugmentationParams, NormalizationParams, RoboticsDataParams

from .conftest import robotics_params


def dims(params: RoboticsDataParams) -> tuple[int, int]:
    """(action_dim, proprioception_dim) as the resolve step derives them from the datasets."""
    derived = derive_robotics_data(params)
    return derived.action_dim, derived.proprioception_dim


SPARTAN_ACTIONS = [
    "robot__desired__poses__left::panda__xyz",
    "robot__desired__poses__left::panda__rot_6d",
    "robot__desired__grippers__left::panda_hand",
]
SPARTAN_PROPRIO = ["robot__actual__poses__left::panda__xyz", "robot__actual__grippers__left::panda_hand"]


def first_batch(params, samples=4, batch_size=4, **kw):
    plan = plan_checkpoint(params, 0, samples)
    return next(iter(build_dataloader(params, plan, batch_size=batch_size, **kw)))


def raw_sample(dataset_dir: str, key: str) -> dict:
    for name in sorted(os.listdir(dataset_dir)):
        if name.endswith(".tar"):
            for s in iter_tar_samples(os.path.join(dataset_dir, name)):
                if s["__key__"] == key:
                    return s
    raise KeyError(key)


def random_stats(rng, t=5, d=3) -> dict:
    return {"f": compute_field_stats(rng.normal(2.0, 3.0, size=(40, t, d)), rng.uniform(size=(40, t)) > 0.2)}


@pytest.mark.parametrize("method", ["std", "min_max", "percentile_1_99", "percentile_5_95", "none"])
@pytest.mark.parametrize("scope", ["global", "per_timestep"])
def test_normalisation_round_trip_is_exact(method, scope):
    rng = np.random.default_rng(0)
    stats = random_stats(rng)
    config = NormalizerConfig([FieldSpec("f", 3)], [FieldSpec("f", 3)], 1, 3, method=method, scope=scope)
    norm = Normalizer(config, stats)
    x = torch.from_numpy(rng.normal(2.0, 3.0, size=(2, 5, 3)))
    y = norm.normalize_actions(x)
    assert torch.allclose(norm.denormalize_actions(y), x, atol=1e-6, rtol=0)
    if method != "none":
        assert not torch.allclose(y, x)


def test_std_normalisation_uses_mean_and_std_with_epsilon():
    stats = {"f": {"mean": [1.0, -2.0], "std": [2.0, 0.0], "min": [0, 0], "max": [1, 1]}}
    norm = Normalizer(NormalizerConfig([FieldSpec("f", 2)], [], 0, 0, epsilon=1e-3), stats)
    out = norm.normalize_actions(np.array([[3.0, -1.0]]))
    np.testing.assert_allclose(out, [[2.0 / 2.001, 1.0 / 1e-3]], rtol=1e-12)


def test_min_max_maps_the_range_to_minus_one_one_and_overrides_apply_per_field():
    stats = {
        "a": {"mean": [0.0], "std": [1.0], "min": [2.0], "max": [4.0]},
        "b": {"mean": [10.0], "std": [5.0], "min": [0.0], "max": [1.0]},
    }
    config = NormalizerConfig([FieldSpec("a", 1), FieldSpec("b", 1)], [], 0, 0, method="min_max", epsilon=0.0,
                              field_overrides={"b": "std"})  # fmt: skip
    out = Normalizer(config, stats).normalize_actions(np.array([[2.0, 20.0], [4.0, 0.0]]))
    np.testing.assert_allclose(out, [[-1.0, 2.0], [1.0, -2.0]], atol=1e-12)


def test_merged_stats_equal_stats_of_the_pooled_data():
    rng = np.random.default_rng(1)
    xa, va = rng.normal(0, 1, size=(30, 4, 2)), rng.uniform(size=(30, 4)) > 0.3
    xb, vb = rng.normal(5, 2, size=(50, 4, 2)), rng.uniform(size=(50, 4)) > 0.3
    merged = merge_stats([{"f": compute_field_stats(xa, va)}, {"f": compute_field_stats(xb, vb)}])["f"]
    pooled = compute_field_stats(np.concatenate([xa, xb]), np.concatenate([va, vb]))
    for key in ("mean", "std", "min", "max", "mean_per_timestep", "std_per_timestep", "min_per_timestep"):
        np.testing.assert_allclose(merged[key], pooled[key], rtol=1e-10, atol=1e-12, err_msg=key)
    assert merged["count"] == pooled["count"]
    assert merged["percentiles_approximate"] is True
    # Percentiles are count-weighted means: close to, not equal to, the pooled ones.
    assert np.all(np.asarray(merged["percentile_1"]) <= np.asarray(merged["percentile_99"]))


def test_dims_are_derived_from_stats_and_fields(tiny_data):
    lerobot = robotics_params([tiny_data["robotics_lerobot"]])
    assert dims(lerobot) == (4, 4)
    lerobot = derive_robotics_data(lerobot)
    assert lerobot.action_dim == 4 and lerobot.past_lowdim_steps == 1 and lerobot.future_lowdim_steps == 4
    assert lerobot.camera_names == ["front", "wrist"] and lerobot.image_indices == [-1, 0]
    spartan = robotics_params([tiny_data["robotics_spartan"]], action_fields=SPARTAN_ACTIONS,
                              proprioception_fields=SPARTAN_PROPRIO)  # fmt: skip
    assert dims(spartan) == (10, 4)


def test_a_given_dim_that_contradicts_the_stats_is_an_error(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]], action_dim=7)
    with pytest.raises(ConfigError, match="data.action_dim=7 contradicts the dataset statistics \\(4"):
        dims(params)


def test_stats_missing_a_requested_field_names_file_and_field(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]], action_fields=["action", "joint_velocity"])
    with pytest.raises(
        StatsError, match=r"stats\.json has no statistics for field 'joint_velocity' .*data\.action_fields"
    ):
        dims(params)


def test_window_larger_than_stored_is_refused(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]], future_lowdim_steps=9)
    with pytest.raises(ConfigError, match="past=1, future=9 is larger than the stored window .*future_lowdim_steps=4"):
        dims(params)


def test_batch_shapes_and_dtypes(tiny_data):
    batch = first_batch(robotics_params([tiny_data["robotics_lerobot"]], max_instruction_tokens=16))
    assert batch["actions"].shape == (4, 6, 4) and batch["actions"].dtype == torch.float32
    assert batch["proprioception"].shape == (4, 2, 4)
    assert batch["past_mask"].shape == batch["future_mask"].shape == (4, 6) and batch["past_mask"].dtype == torch.bool
    assert batch["images"].shape == (4, 4, 3, 32, 32) and batch["images"].dtype == torch.uint8
    assert batch["image_mask"].shape == (4, 4) and bool(batch["image_mask"].all())
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (4, 16)
    assert len(batch["metadata"]) == 4


def test_batch_values_are_the_cropped_normalised_window(tiny_data):
    data = tiny_data["robotics_lerobot"]
    params = robotics_params([data], past_lowdim_steps=0, future_lowdim_steps=2)
    batch = first_batch(params)
    with open(os.path.join(data, "stats.json")) as f:
        stats = json.load(f)
    key = batch["metadata"][0]["key"]
    npz = np.load(io.BytesIO(raw_sample(data, key)["lowdim.npz"]))
    # Stored window rows 0..5 with the anchor at row 1; the training window keeps rows 1..3.
    mean, std = np.array(stats["action"]["mean"]), np.array(stats["action"]["std"]) + 1e-6
    expected = (npz["action"][1:4].astype(np.float64) - mean) / std
    np.testing.assert_allclose(batch["actions"][0].numpy(), expected, rtol=1e-5, atol=1e-5)
    s_mean, s_std = np.array(stats["observation.state"]["mean"]), np.array(stats["observation.state"]["std"]) + 1e-6
    np.testing.assert_allclose(batch["proprioception"][0].numpy(), (npz["observation.state"][1:2] - s_mean) / s_std,
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    assert batch["future_mask"][0].tolist() == npz["future_mask"][1:4].tolist()
    assert batch["past_mask"][0].tolist() == [False, False, False]


def test_instruction_is_tokenized_from_the_configured_types(tiny_data):
    batch = first_batch(robotics_params([tiny_data["robotics_lerobot"]], language_instruction_types=["original"]))
    for ids, mask, meta in zip(batch["input_ids"], batch["attention_mask"], batch["metadata"]):
        assert meta["instruction"].startswith("move ")
        assert bytes(ids[mask].tolist()).decode() == meta["instruction"]


def test_missing_camera_is_an_error_by_default(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]], camera_names=["front", "top"])
    with pytest.raises(ConfigError, match=r"has no camera\(s\) \['top'\].*missing_camera zero_pad"):
        dims(params)


def test_missing_camera_is_zero_padded_and_masked_by_flag(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]], camera_names=["front", "top"], missing_camera="zero_pad")
    batch = first_batch(params)
    assert batch["images"].shape == (4, 4, 3, 32, 32)
    assert batch["image_mask"][0].tolist() == [True, True, False, False]
    assert float(batch["images"][:, 2:].abs().sum()) == 0.0


def one_picture_everywhere(tmp_path) -> str:
    """A tiny robotics dataset whose every view of every sample is the same random 32 px picture."""
    data = make_robotics(str(tmp_path / "r"), num_episodes=2, episode_length=4, num_shards=1)
    shard = os.path.join(data, "shard_000000.tar")
    picture = encode_jpeg(np.random.default_rng(0).integers(0, 255, size=(32, 32, 3), dtype=np.uint8))
    with tarfile.open(shard) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(shard, "w") as tar:
        for m, payload in members:
            payload = picture if m.name.endswith(".jpg") else payload
            m.size = len(payload)
            tar.addfile(m, io.BytesIO(payload))
    return data


def test_augmentation_uses_the_same_parameters_for_every_view(tmp_path):
    # Every view is the same picture: augmented views must stay identical.
    data = one_picture_everywhere(tmp_path)
    aug = AugmentationParams(enabled=True, crop_scale=0.7, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    params = robotics_params([data], augmentation=aug)
    train = first_batch(params, samples=8, batch_size=8)["images"]  # (B, 4, 3, H, W)
    for view in range(1, 4):
        assert torch.equal(train[:, view], train[:, 0])
    # Different samples draw different parameters.
    assert not torch.equal(train[0, 0], train[1, 0])
    val = first_batch(params, samples=8, batch_size=8, training=False)["images"]
    assert torch.allclose(val[0, 0], val[1, 0])


def test_shift_augmentation_moves_training_images_without_rescaling_them(tmp_path):
    data = one_picture_everywhere(tmp_path)
    aug = AugmentationParams(enabled=True, shift=3, crop_scale=1.0, brightness=0.0, contrast=0.0, saturation=0.0)
    params = robotics_params([data], augmentation=aug)
    original = first_batch(params, samples=8, batch_size=8, training=False)["images"][0, 0]  # (3, H, W) uint8
    _, h, w = original.shape
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    # Every shift of at most 3 pixels, built by indexing: pixel (y, x) comes from (y - dy, x - dx), clamped.
    shifted = {
        (dy, dx): original[:, np.clip(rows - dy, 0, h - 1), np.clip(cols - dx, 0, w - 1)]
        for dy in range(-3, 4)
        for dx in range(-3, 4)
    }
    train = first_batch(params, samples=8, batch_size=8)["images"]  # (B, 4, 3, H, W)
    found = []
    for image in train[:, 0]:
        matches = [s for s, candidate in shifted.items() if torch.equal(image, candidate)]
        assert matches, "a training image is not a shift of at most 3 pixels of the stored one"
        found.append(matches[0])
    assert len(set(found)) > 1 and any(s != (0, 0) for s in found)


def test_processor_saved_to_a_run_dir_reloads_identically(tiny_data, tmp_path):
    params = robotics_params([tiny_data["robotics_lerobot"]], normalization=NormalizationParams(scope="per_timestep"))
    processor = RoboticsProcessor.from_data_params(params)
    processor.save(str(tmp_path))
    assert {"config_processor.yaml", "config_normalizer.yaml", "stats.json"} <= set(os.listdir(tmp_path))
    loaded = RoboticsProcessor.load(str(tmp_path))
    assert loaded.config == processor.config and loaded.normalizer.config == processor.normalizer.config
    raw = next(iter_tar_samples(os.path.join(tiny_data["robotics_lerobot"], "shard_000000.tar")))
    a = processor.process_sample(raw, tiny_data["robotics_lerobot"], np.random.default_rng(0), training=False)
    b = loaded.process_sample(raw, tiny_data["robotics_lerobot"], np.random.default_rng(0), training=False)
    for k in ("actions", "proprioception", "images", "input_ids"):
        assert torch.equal(a[k], b[k]), k
    assert torch.allclose(
        loaded.denormalize_actions(a["actions"][None])[0], processor.denormalize_actions(a["actions"][None])[0]
    )


def test_inference_processes_raw_observations_of_any_size(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]], image_size=16)
    processor = RoboticsProcessor.from_data_params(params)
    frame = np.random.default_rng(0).integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    state = np.array([[0.1, 0.2, 0.0, 0.1], [0.1, 0.3, 0.0, 0.1]])
    obs = processor.process_observation({"front": [frame, frame], "wrist": [frame, frame]},
                                        {"observation.state": state}, "move up")  # fmt: skip
    assert obs["images"].shape == (1, 4, 3, 16, 16) and obs["images"].dtype == torch.uint8
    assert obs["proprioception"].shape == (1, 2, 4)
    back = processor.normalizer.denormalize_proprioception(obs["proprioception"].double())
    np.testing.assert_allclose(back[0].numpy(), state, atol=1e-6)
    assert bytes(obs["input_ids"][0][obs["attention_mask"][0]].tolist()).decode() == "move up"
    assert obs["past_mask"][0].tolist() == [True, False, False, False, False, False]


def test_two_robotics_datasets_share_merged_stats(tiny_data, tmp_path):
    other = make_robotics(str(tmp_path / "r2"), seed=3)
    params = robotics_params([tiny_data["robotics_lerobot"], other], dataset_weighting=[0.5, 0.5])
    processor = RoboticsProcessor.from_data_params(params)
    with (
        open(os.path.join(tiny_data["robotics_lerobot"], "stats.json")) as fa,
        open(os.path.join(other, "stats.json")) as fb,
    ):
        a, b = json.load(fa)["action"], json.load(fb)["action"]
    na, nb = sum(a["count"]), sum(b["count"])
    np.testing.assert_allclose(processor.normalizer.stats["action"]["mean"],
                               (np.array(a["mean"]) * na + np.array(b["mean"]) * nb) / (na + nb), rtol=1e-12)  # fmt: skip
    batch = first_batch(params, samples=8, batch_size=8)
    assert {m["dataset"] for m in batch["metadata"]} == {tiny_data["robotics_lerobot"], other}


def write_vla_foundry_dataset(root) -> tuple[str, dict]:
    """A dataset laid out exactly as VLA Foundry's preprocessing writes it (docs/formats.md §2-3), built by hand."""
    root.mkdir()
    t = 16  # 1past_14future
    rng = np.random.default_rng(0)
    fields = {
        "robot__actual__poses__right::panda__xyz": rng.normal(size=(t, 3)).astype(np.float32),
        "robot__actual__poses__right::panda__xyz_relative": rng.normal(size=(t, 3)).astype(np.float32),
        "robot__desired__poses__right::panda__rot_6d": rng.normal(size=(t, 6)).astype(np.float32),
    }
    past_mask = np.zeros(t, dtype=bool)
    past_mask[0] = True
    future_mask = np.ones(t, dtype=bool)
    future_mask[0] = False
    future_mask[-2:] = False  # episode ended two rows early
    npz = io.BytesIO()
    np.savez(npz, past_mask=past_mask, future_mask=future_mask,
             intrinsics__scene_right_0=np.eye(3), camera_names=np.array(["scene_right_0"]), **fields)  # fmt: skip
    key = "BimanualPutRedBellPepperInBin_episode_3_anchor_7"
    members = {
        "scene_right_0_t-1.jpg": encode_jpeg(np.full((24, 24, 3), 90, dtype=np.uint8)),
        "scene_right_0_t0.jpg": encode_jpeg(np.full((24, 24, 3), 200, dtype=np.uint8)),
        "lowdim.npz": npz.getvalue(),
        "metadata.json": json.dumps(
            {
                "episode_id": "episode_3",
                "sample_id": key,
                "anchor_timestep": 7,
                "anchor_relative_idx": 1,
                "camera_names": ["scene_right_0"],
                "image_timesteps": [6, 7],
                "original_episode_length": 20,
                "past_padding": 0,
                "future_padding": 2,
                "is_padded": True,
            }
        ).encode(),
        "language_instructions.json": json.dumps(
            {"original": ["put the red bell pepper in the bin"], "randomized": [], "verbose": [], "alternative": []}
        ).encode(),
    }
    with tarfile.open(root / "00000000.tar", "w") as tar:
        for ext, payload in members.items():
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    (root / "manifest.jsonl").write_text(json.dumps({"shard": "00000000", "num_sequences": 1}) + "\n")
    valid = (past_mask | future_mask)[None]
    stats = {name: compute_field_stats(arr[None].astype(np.float64) + 0.5, valid) for name, arr in fields.items()}
    (root / "stats.json").write_text(json.dumps(stats))
    (root / "preprocessing_config.yaml").write_text(yaml.safe_dump({
        "type": "spartan", "camera_names": ["scene_right_0"], "image_indices": [-1, 0], "past_lowdim_steps": 1,
        "future_lowdim_steps": 14, "stride": 1, "image_size": [24, 24], "jpeg_quality": 95,
    }))  # fmt: skip
    return str(root), fields


def test_a_vla_foundry_format_robotics_shard_loads(tmp_path):
    data, fields = write_vla_foundry_dataset(tmp_path / "vf")
    params = RoboticsDataParams(
        dataset_manifest=[data + "/manifest.jsonl"], dataset_weighting=[1.0], dataset_modality=["robotics"],
        action_fields=["robot__desired__poses__right::panda__rot_6d"],
        proprioception_fields=["robot__actual__poses__right::panda__xyz", "robot__actual__poses__right::panda__xyz_relative"],
        normalization=NormalizationParams(method="none"), num_workers=0, seed=0,
    )  # fmt: skip
    assert dims(params) == (6, 6)
    batch = first_batch(params, samples=1, batch_size=1)
    np.testing.assert_allclose(batch["actions"][0].numpy(), fields["robot__desired__poses__right::panda__rot_6d"])
    proprio = np.concatenate([fields["robot__actual__poses__right::panda__xyz"][:2],
                              fields["robot__actual__poses__right::panda__xyz_relative"][:2]], axis=1)  # fmt: skip
    np.testing.assert_allclose(batch["proprioception"][0].numpy(), proprio)
    assert batch["past_mask"][0].tolist() == [True] + [False] * 15
    assert batch["future_mask"][0].tolist() == [False] + [True] * 13 + [False, False]
    assert batch["images"].shape == (1, 2, 3, 24, 24)
    assert abs(float(batch["images"][0, 0].float().mean()) - 90) < 5
    assert abs(float(batch["images"][0, 1].float().mean()) - 200) < 5
    assert batch["metadata"][0]["anchor_timestep"] == 7


def test_corrupt_lowdim_is_a_counted_bad_sample(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data["robotics_lerobot"], tmp_path / "r")
    from vla_foundry.data.tar_stream import write_tar_shard

    shard = str(data / "shard_000001.tar")
    samples = list(iter_tar_samples(shard))
    out = [(s["__key__"], {k: (b"garbage" if k == "lowdim.npz" and i == 0 else v) for k, v in s.items()
            if not k.startswith("__")}) for i, s in enumerate(samples)]  # fmt: skip
    write_tar_shard(shard, out)
    params = robotics_params([str(data)], max_bad_sample_fraction=0.5)
    loader = build_dataloader(params, plan_checkpoint(params, 0, 24), batch_size=4)
    list(loader)
    assert loader.stats.bad_samples >= 1
    assert all(f"key {samples[0]['__key__']}: lowdim.npz unreadable" in e for e in loader.stats.bad)


def test_inference_frames_are_brought_to_the_stored_size_when_image_size_is_unset(tiny_data):
    processor = RoboticsProcessor.from_data_params(robotics_params([tiny_data["robotics_lerobot"]]))
    assert processor.config.image_size is None and processor.config.stored_image_size == [32, 32]
    frame = np.zeros((48, 80, 3), dtype=np.uint8)
    frame[:, 24:56] = 255  # the centre 48 x 32 band: after cover-resizing to 32 x 53 and cropping, the middle stays
    obs = processor.process_observation({"front": [frame, frame], "wrist": [frame, frame]},
                                        {"observation.state": np.zeros((2, 4))}, "move up")  # fmt: skip
    assert obs["images"].shape == (1, 4, 3, 32, 32)
    centre, edge = obs["images"][0, 0, :, :, 16].float().mean(), obs["images"][0, 0, :, :, 0].float().mean()
    assert float(centre) > 0.95 * 255 and float(edge) < 0.05 * 255


@pytest.mark.parametrize("mode", ["center_crop", "fit", "stretch"])
def test_inference_frames_get_the_resize_preprocessing_stored_them_with(tmp_path, mode):
    from vla_foundry.data.processors.images import resize_image

    data = make_robotics(str(tmp_path / "ds"))
    config_path = os.path.join(data, "preprocessing_config.yaml")
    with open(config_path) as f:
        config = yaml.safe_load(f)
    config["resize_mode"] = mode
    with open(config_path, "w") as f:
        yaml.safe_dump(config, f)
    processor = RoboticsProcessor.from_data_params(robotics_params([data]))
    assert processor.config.stored_resize_mode == mode
    frame = np.random.default_rng(1).integers(0, 255, size=(48, 80, 3), dtype=np.uint8)
    obs = processor.process_observation({"front": [frame, frame], "wrist": [frame, frame]},
                                        {"observation.state": np.zeros((2, 4))}, "move up")  # fmt: skip
    expected = resize_image(frame, [32, 32], mode).transpose(2, 0, 1)
    assert np.array_equal(obs["images"][0, 0].numpy(), expected)


def decoded_views(dataset_dir: str, key: str) -> np.ndarray:
    """(4, 3, H, W) uint8: the sample's JPEGs decoded by PIL, camera-major, channels first."""
    from PIL import Image

    raw = raw_sample(dataset_dir, key)
    members = ["front_t-1.jpg", "front_t0.jpg", "wrist_t-1.jpg", "wrist_t0.jpg"]
    return np.stack([np.asarray(Image.open(io.BytesIO(raw[m])).convert("RGB")).transpose(2, 0, 1) for m in members])


def test_batch_images_are_the_decoded_jpegs_as_uint8_channels_first(tiny_data):
    data = tiny_data["robotics_lerobot"]
    batch = first_batch(robotics_params([data]))
    for b, meta in enumerate(batch["metadata"]):
        np.testing.assert_array_equal(batch["images"][b].numpy(), decoded_views(data, meta["key"]))


def test_loader_batches_equal_the_per_sample_processing(tiny_data):
    # The loader decodes into its batch buffer and normalises/tokenizes per batch; process_sample + collate works
    # sample by sample: the batches must be identical.
    data = tiny_data["robotics_lerobot"]
    params = robotics_params([data], image_size=16, normalization=NormalizationParams(scope="per_timestep"))
    batch = first_batch(params, samples=8, batch_size=8, training=False)
    processor = RoboticsProcessor.from_data_params(params)
    samples = [
        processor.process_sample(raw_sample(data, m["key"]), data, None, training=False) for m in batch["metadata"]
    ]
    expected = processor.collate(samples)
    # The loader adds where each row came from ("<shard url> key <sample key>"), in row order.
    assert list(batch) == [*expected, "sample_keys"]
    assert [k.rsplit(" key ", 1)[1] for k in batch["sample_keys"]] == [m["key"] for m in batch["metadata"]]
    for k in expected:
        if k == "metadata":
            assert batch[k] == expected[k]
        else:
            assert batch[k].dtype == expected[k].dtype and torch.equal(batch[k], expected[k]), k


def test_worker_processes_deliver_the_decoded_images(tiny_data):
    # In a worker, images are decoded into shared memory and reach this process without a copy.
    data = tiny_data["robotics_lerobot"]
    params = robotics_params([data])
    batches = list(build_dataloader(params, plan_checkpoint(params, 0, 16), batch_size=4, num_workers=2))
    assert len(batches) == 4
    for batch in batches:
        for b, meta in enumerate(batch["metadata"]):
            np.testing.assert_array_equal(batch["images"][b].numpy(), decoded_views(data, meta["key"]))


def test_earlier_batches_keep_their_images_while_later_ones_load(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]])
    plan = plan_checkpoint(params, 0, 24)
    snapshots = [b["images"].clone() for b in build_dataloader(params, plan, batch_size=4)]
    kept = [b["images"] for b in build_dataloader(params, plan, batch_size=4)]  # all held until the end
    assert all(torch.equal(a, b) for a, b in zip(snapshots, kept))
    assert not any(a.data_ptr() == b.data_ptr() for i, a in enumerate(kept) for b in kept[i + 1 :])


def test_instruction_tokens_of_a_batch_can_be_modified_without_affecting_later_batches(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]], language_instruction_types=["original"])
    plan = plan_checkpoint(params, 0, 8)
    first, second = build_dataloader(params, plan, batch_size=4)
    first["input_ids"].fill_(0)  # a consumer may edit its batch in place (e.g. masking tokens)
    for ids, mask, meta in zip(second["input_ids"], second["attention_mask"], second["metadata"]):
        assert bytes(ids[mask].tolist()).decode() == meta["instruction"]


def test_unit_float_conversion_is_exact_and_passes_floats_through():
    from vla_foundry.data.processors.images import images_to_unit_float

    levels = torch.arange(256, dtype=torch.uint8)
    expected = (np.arange(256, dtype=np.float64) / 255).astype(np.float32)  # correctly rounded
    assert np.array_equal(images_to_unit_float(levels).numpy(), expected)
    floats = torch.rand(2, 3, 4, 4)
    assert images_to_unit_float(floats) is floats
    with pytest.raises(TypeError, match="uint8 .* or float"):
        images_to_unit_float(torch.zeros(3, dtype=torch.int64))
