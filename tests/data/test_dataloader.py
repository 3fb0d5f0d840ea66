"""The window loader: rank/worker split, equal steps per rank, mixing, determinism, exact resume, bad data."""

from __future__ import annotations

import json
import os
import shutil
import tarfile

import pytest
import torch

from vla_foundry.data.dataloader import BadDataError, build_dataloader, split_for_reader
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.scripts.make_tiny_datasets import make_robotics, make_text
from vla_foundry.data.tar_stream import iter_tar_samples, write_tar_shard
from vla_foundry.params.data_params import AugmentationParams, TextDataParams

from .conftest import robotics_params


def keys_of(batches) -> list[str]:
    return [m["key"] for b in batches for m in b["metadata"]]


def all_keys(dataset_dir: str) -> list[str]:
    return [s["__key__"] for f in sorted(os.listdir(dataset_dir)) if f.endswith(".tar")
            for s in iter_tar_samples(os.path.join(dataset_dir, f))]  # fmt: skip


def assert_batches_equal(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for k in x:
            if isinstance(x[k], torch.Tensor):
                assert torch.equal(x[k], y[k]), k
            else:
                assert x[k] == y[k], k


def text_params(dirs: list[str], weights: list[float], **kw) -> TextDataParams:
    return TextDataParams(
        dataset_manifest=dirs,
        dataset_weighting=weights,
        dataset_modality=["text"] * len(dirs),
        seq_len=kw.pop("seq_len", 16),
        num_workers=0,
        shuffle_buffer_size=kw.pop("shuffle_buffer_size", 8),
        seed=0,
        **kw,
    )


@pytest.fixture(scope="module")
def robotics4(tmp_path_factory) -> str:
    """32 robotics samples in 4 shards of 8."""
    return make_robotics(str(tmp_path_factory.mktemp("r4")), "lerobot", num_episodes=4, episode_length=8, num_shards=4)


def test_split_assigns_every_shard_to_exactly_one_reader():
    readers = [split_for_reader(10, r, 2, w, 2) for r in range(2) for w in range(2)]
    assigned = sorted(i for shards, levels in readers for i in shards)
    assert assigned == list(range(10)) and all(levels == [] for _, levels in readers)


def test_split_strides_samples_when_shards_are_fewer_than_readers():
    assert split_for_reader(1, 1, 2, 0, 3) == ([0], [(2, 1), (3, 0)])


def test_two_ranks_two_workers_see_every_sample_once_per_epoch(robotics4):
    params = robotics_params([robotics4], num_workers=2)
    plan = plan_checkpoint(params, 0, 32)
    seen = []
    for rank in range(2):
        loader = build_dataloader(params, plan, batch_size=4, rank=rank, world_size=2, num_workers=2)
        batches = list(loader)
        assert len(batches) == 4
        seen += keys_of(batches)
        assert loader.stats.repeated_passes == 0 and loader.stats.bad_samples == 0
    assert sorted(seen) == sorted(all_keys(robotics4))


def test_every_rank_yields_the_same_number_of_batches_with_uneven_shards(tmp_path):
    data = make_text(str(tmp_path / "t"), num_shards=1, samples_per_shard=12)
    # Re-shard unevenly: 9 samples in one shard, 3 in the other.
    samples = list(iter_tar_samples(os.path.join(data, "shard_000000.tar")))
    os.remove(os.path.join(data, "shard_000000.tar"))
    for name, part in (("a", samples[:9]), ("b", samples[9:])):
        write_tar_shard(os.path.join(data, f"{name}.tar"), [(s["__key__"], {"json.gz": s["json.gz"]}) for s in part])
    (tmp_path / "t" / "manifest.jsonl").write_text(
        '{"shard": "a", "num_sequences": 9}\n{"shard": "b", "num_sequences": 3}\n'
    )
    params = text_params([data], [1.0])
    plan = plan_checkpoint(params, 0, 12)
    loaders = [build_dataloader(params, plan, batch_size=2, rank=r, world_size=2) for r in range(2)]
    counts = [len(list(loader)) for loader in loaders]
    assert counts == [3, 3]
    # The rank holding the 3-sample shard needed a second pass over it, and says so.
    assert sorted(loader.stats.repeated_passes for loader in loaders) == [0, 1]


def test_realised_mix_matches_weights_within_sampling_error(tiny_data, tmp_path):
    other = make_text(str(tmp_path / "other"), seed=5)
    params = text_params([tiny_data["text"], other], [0.2, 0.8], seq_len=8)
    plan = plan_checkpoint(params, 0, 400)
    loader = build_dataloader(params, plan, batch_size=8)
    assert len(list(loader)) == 50
    n0, n1 = loader.stats.samples_per_dataset
    assert n0 + n1 == 400
    # Binomial(400, 0.2): std 8; allow 4 std.
    assert abs(n0 - 80) <= 32


def test_same_arguments_give_identical_batches(tiny_data):
    params = robotics_params([tiny_data["robotics_lerobot"]])
    plan = plan_checkpoint(params, 1, 16)
    a = list(build_dataloader(params, plan, batch_size=4))
    b = list(build_dataloader(params, plan, batch_size=4))
    assert_batches_equal(a, b)


def test_resume_mid_window_yields_exactly_the_remaining_batches(tiny_data):
    aug = AugmentationParams(enabled=True, crop_scale=0.8, brightness=0.3, contrast=0.3, saturation=0.3)
    params = robotics_params(
        [tiny_data["robotics_lerobot"]], augmentation=aug, language_instruction_types=["original", "randomized"]
    )
    plan = plan_checkpoint(params, 0, 24)
    full_loader = build_dataloader(params, plan, batch_size=3, num_workers=2)
    full = list(full_loader)
    assert len(full) == 8 and full_loader.state_dict()["batches_consumed"] == 8
    resumed_loader = build_dataloader(params, plan, batch_size=3, num_workers=2, start_batch=3)
    assert len(resumed_loader) == 5
    assert_batches_equal(list(resumed_loader), full[3:])


def test_interrupted_iteration_continues_from_batches_consumed(tiny_data):
    params = text_params([tiny_data["text"]], [1.0])
    plan = plan_checkpoint(params, 0, 16)
    full = list(build_dataloader(params, plan, batch_size=2))
    loader = build_dataloader(params, plan, batch_size=2)
    first = []
    for batch in loader:
        first.append(batch)
        if len(first) == 3:
            break
    state = loader.state_dict()
    assert state["batches_consumed"] == 3
    rest = list(build_dataloader(params, plan, batch_size=2, start_batch=state["batches_consumed"]))
    assert_batches_equal(first + rest, full)


def test_window_must_split_into_whole_batches_per_rank(tiny_data):
    params = text_params([tiny_data["text"]], [1.0])
    plan = plan_checkpoint(params, 0, 10)
    with pytest.raises(ValueError, match="does not split into whole batches of 4 on 2 rank"):
        build_dataloader(params, plan, batch_size=4, world_size=2)


def test_missing_shard_is_reported_before_loading(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data["text"], tmp_path / "t")
    os.remove(data / "shard_000001.tar")
    params = text_params([str(data)], [1.0])
    plan = plan_checkpoint(params, 0, 32)
    with pytest.raises(FileNotFoundError, match=r"do not exist .*shard_000001\.tar"):
        build_dataloader(params, plan, batch_size=4)


def corrupt_one_image(src: str, dst) -> str:
    """Copy a robotics dataset, replacing one sample's front_t0.jpg with garbage; returns the sample key."""
    shutil.copytree(src, dst)
    shard = os.path.join(dst, "shard_000000.tar")
    samples = list(iter_tar_samples(shard))
    bad_key = samples[2]["__key__"]
    out = []
    for s in samples:
        members = {k: v for k, v in s.items() if not k.startswith("__")}
        if s["__key__"] == bad_key:
            members["front_t0.jpg"] = b"not a jpeg at all"
        out.append((s["__key__"], members))
    write_tar_shard(shard, out)
    return bad_key


def test_undecodable_image_is_skipped_counted_and_listed(tiny_data, tmp_path):
    bad_key = corrupt_one_image(tiny_data["robotics_lerobot"], tmp_path / "r")
    params = robotics_params([str(tmp_path / "r")], max_bad_sample_fraction=0.1)
    # The window takes all 24 samples, so the bad one is met; its slot is refilled from a second pass.
    plan = plan_checkpoint(params, 0, 24)
    loader = build_dataloader(params, plan, batch_size=4)
    batches = list(loader)
    assert len(batches) == 6 and all(len(b["metadata"]) == 4 for b in batches)
    assert loader.stats.samples == 24 and loader.stats.repeated_passes == 1
    # Met once per pass over the shard it is in: every meeting is counted and listed.
    assert loader.stats.bad_samples == len(loader.stats.bad) >= 1
    for entry in loader.stats.bad:
        assert "shard_000000.tar" in entry and f"key {bad_key}: front_t0: undecodable image" in entry
    assert bad_key not in keys_of(batches)


def test_bad_samples_above_the_allowed_fraction_stop_the_run_with_the_list(tiny_data, tmp_path):
    bad_key = corrupt_one_image(tiny_data["robotics_lerobot"], tmp_path / "r")
    params = robotics_params([str(tmp_path / "r")], max_bad_sample_fraction=0.0)
    plan = plan_checkpoint(params, 0, 24)
    with pytest.raises(BadDataError, match=rf"(?s)\d+ unusable samples.*max_bad_sample_fraction=0.0.*key {bad_key}"):
        list(build_dataloader(params, plan, batch_size=4))


def test_truncated_shard_counts_a_shard_error_and_keeps_its_complete_samples(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data["text"], tmp_path / "t")
    shard = data / "shard_000000.tar"
    raw = shard.read_bytes()
    shard.write_bytes(raw[: len(raw) // 2 + 100])
    params = text_params([str(data)], [1.0], max_bad_sample_fraction=0.5)
    plan = plan_checkpoint(params, 0, 32)
    loader = build_dataloader(params, plan, batch_size=4)
    assert len(list(loader)) == 8
    # Every pass over the broken shard reports it (the window needed a second pass to fill its 32 samples).
    assert loader.stats.shard_errors == len(loader.stats.bad) >= 1
    assert all("shard_000000.tar: tar stream broke after" in e and "truncated" in e for e in loader.stats.bad)


def test_shard_shorter_than_its_manifest_entry_is_a_shard_error(tiny_data, tmp_path):
    data = shutil.copytree(tiny_data["text"], tmp_path / "t")
    shard = str(data / "shard_000000.tar")
    samples = list(iter_tar_samples(shard))[:10]
    write_tar_shard(shard, [(s["__key__"], {"json.gz": s["json.gz"]}) for s in samples])
    params = text_params([str(data)], [1.0], max_bad_sample_fraction=0.5)
    loader = build_dataloader(params, plan_checkpoint(params, 0, 16), batch_size=4)
    assert len(list(loader)) == 4
    assert loader.stats.shard_errors >= 1
    assert all("shard_000000.tar: ended after 10 samples, manifest.jsonl says 16" in e for e in loader.stats.bad)


def test_text_batches_have_the_agreed_keys_and_shapes(tiny_data):
    params = text_params([tiny_data["text"]], [1.0], seq_len=16)
    plan = plan_checkpoint(params, 0, 8)
    batch = next(iter(build_dataloader(params, plan, batch_size=4)))
    assert set(batch) == {"input_ids", "loss_mask", "sample_keys"}
    assert batch["input_ids"].shape == (4, 17) and batch["input_ids"].dtype == torch.long
    assert batch["loss_mask"].dtype == torch.bool and bool(batch["loss_mask"].all())


def test_tar_members_group_into_samples_by_key(tmp_path):
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("a.x.json", b"1"), ("a.lowdim.npz", b"2"), ("b.x.json", b"3")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io

            tar.addfile(info, io.BytesIO(data))
    samples = list(iter_tar_samples(str(path)))
    assert [(s["__key__"], sorted(k for k in s if not k.startswith("__"))) for s in samples] == [
        ("a", ["lowdim.npz", "x.json"]),
        ("b", ["x.json"]),
    ]
    assert json.loads(samples[1]["x.json"]) == 3


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_long_member_names_of_every_tar_format_are_read(tmp_path, fmt):
    import io

    # Longer than the 100-byte name field: ustar splits it into prefix + name, PAX and GNU write long-name records.
    key = "d" * 80 + "/" + "k" * 70
    names = [f"{key}.scene_right_0_t-1.jpg", f"{key}.lowdim.npz", "b.txt"]
    path = tmp_path / "s.tar"
    with tarfile.open(path, "w", format=fmt) as tar:
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = i + 1
            tar.addfile(info, io.BytesIO(b"x" * (i + 1)))
    samples = list(iter_tar_samples(str(path)))
    assert [s["__key__"] for s in samples] == [key, "b"]
    assert samples[0]["scene_right_0_t-1.jpg"] == b"x" and samples[0]["lowdim.npz"] == b"xx"


def test_gzip_compressed_shards_are_read(tiny_data, tmp_path):
    import gzip

    src = os.path.join(tiny_data["text"], "shard_000000.tar")
    with open(src, "rb") as f:
        (tmp_path / "s.tar").write_bytes(gzip.compress(f.read()))
    plain = [s["json.gz"] for s in iter_tar_samples(src)]
    assert [s["json.gz"] for s in iter_tar_samples(str(tmp_path / "s.tar"))] == plain


def test_bytes_that_are_not_a_tar_are_a_shard_error(tmp_path):
    from vla_foundry.data.tar_stream import ShardReadError

    (tmp_path / "s.tar").write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(ShardReadError, match="bad header checksum"):
        list(iter_tar_samples(str(tmp_path / "s.tar")))
