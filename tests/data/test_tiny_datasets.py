"""The tiny dataset generator: deterministic, and the committed examples/data match it."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import numpy as np

from vla_foundry.data.scripts.make_tiny_datasets import make_robotics, make_text

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"


def test_same_seed_gives_byte_identical_files(tmp_path):
    a = make_robotics(str(tmp_path / "a"), "spartan", seed=1)
    b = make_robotics(str(tmp_path / "b"), "spartan", seed=1)
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b))
    assert all(filecmp.cmp(os.path.join(a, n), os.path.join(b, n), shallow=False) for n in names)


def test_different_seeds_give_different_data(tmp_path):
    a = make_text(str(tmp_path / "a"), seed=1)
    b = make_text(str(tmp_path / "b"), seed=2)
    assert not filecmp.cmp(os.path.join(a, "shard_000000.tar"), os.path.join(b, "shard_000000.tar"), shallow=False)


def test_robotics_actions_are_a_function_of_state_and_instruction(tiny_data):
    import io
    import json

    from vla_foundry.data.tar_stream import iter_tar_samples

    directions = {"left": (-1, 0), "right": (1, 0), "up": (0, 1), "down": (0, -1)}
    shard = os.path.join(tiny_data["robotics_lerobot"], "shard_000000.tar")
    for sample in iter_tar_samples(shard):
        npz = np.load(io.BytesIO(sample["lowdim.npz"]))
        word = json.loads(sample["language_instructions.json"])["original"][0].split()[-1]
        anchor = 1
        state, action = npz["observation.state"][anchor], npz["action"][anchor]
        np.testing.assert_allclose(action[:2], state[:2] + 0.1 * np.array(directions[word]), atol=1e-6)


def _member_content(ext: str, data: bytes):
    """What a member holds, independent of the compressor build (zlib output may differ across systems)."""
    import gzip
    import io

    if ext.endswith(".gz"):
        return gzip.decompress(data)
    if ext.endswith(".npz"):
        with np.load(io.BytesIO(data)) as npz:
            return {k: npz[k].tolist() for k in npz.files}
    return data


def _tar_layout(path: str) -> tuple[list[str], int]:
    """(member names in file order, bytes after the last member: the end-of-archive blocks and record padding)."""
    import tarfile

    with tarfile.open(path) as tar:
        members = tar.getmembers()
    used = sum(512 + -(-m.size // 512) * 512 for m in members)
    return [m.name for m in members], os.path.getsize(path) - used


def _same_file(a: str, b: str) -> bool:
    """Byte-identical, or for tars: the same members in the same order, the same padding, and the same content
    (compressed members compared decompressed, as zlib builds may compress differently)."""
    if filecmp.cmp(a, b, shallow=False) or not a.endswith(".tar"):
        return filecmp.cmp(a, b, shallow=False)
    from vla_foundry.data.tar_stream import iter_tar_samples

    def content(path):
        return [{k: _member_content(k, v) for k, v in s.items() if k != "__url__"} for s in iter_tar_samples(path)]

    return _tar_layout(a) == _tar_layout(b) and content(a) == content(b)


def test_committed_examples_match_the_generator(tmp_path):
    from vla_foundry.data.scripts.make_tiny_datasets import make_all

    fresh = make_all(str(tmp_path))
    for name, path in fresh.items():
        for f in sorted(os.listdir(path)):
            committed = EXAMPLES / name / f
            assert committed.exists(), f"examples/data/{name}/{f} missing: rerun make_tiny_datasets"
            assert _same_file(str(committed), os.path.join(path, f)), f"examples/data/{name}/{f} is stale"
