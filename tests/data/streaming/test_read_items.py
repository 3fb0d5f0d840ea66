"""A rank's samples are split into several Ray items at episode boundaries, so a dataset whose episodes share one
data file and one MP4 per camera (as lerobot records them) is decoded by several tasks, with the same samples."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from tests.data.streaming.conftest import stream_data_params
from vla_foundry.data.scripts.make_synthetic_lerobot import CAMERAS, make_lerobot_v3
from vla_foundry.data.streaming.ray_stream import cut_item, read_items
from vla_foundry.data.streaming.registry import open_source

LENGTHS = (12, 9, 15, 10, 11)


@pytest.fixture(scope="module")
def one_file(tmp_path_factory: pytest.TempPathFactory):
    """The LeRobotSource of a v3.0 dataset holding all its episodes in one data file and one MP4 per camera."""
    base = tmp_path_factory.mktemp("one_file")
    every = [list(range(len(LENGTHS)))]
    root = make_lerobot_v3(
        base / "v3", LENGTHS, data_files=every, video_files={c: every for c in CAMERAS}, episode_meta_files=every
    )
    params = stream_data_params([root], ["lerobot"], [1.0], base / "cache")
    return open_source(params, str(root), "lerobot")


def all_samples(source) -> list[tuple[str, int]]:
    return [(eid, a) for eid, ref in source.episodes.items() for a in ref.anchors]


def item_anchors(item: dict) -> dict[str, list[int]]:
    return json.loads(item["item"])["anchors"]


def test_one_read_task_is_split_at_episode_boundaries(one_file):
    samples = all_samples(one_file)
    assert len(one_file.tasks) == 1
    items = read_items(one_file, samples, max_item_samples=20)
    anchors = [item_anchors(i) for i in items]
    # 12 + 9 | 15 + 10 | 11 samples (anchors of 1 past + 3 future rows with padding: every step).
    assert [[int(e.rsplit("_", 1)[1]) for e in a] for a in anchors] == [[0, 1], [2, 3], [4]]
    assert [(e, t) for a in anchors for e, ts in a.items() for t in ts] == samples
    assert len(read_items(one_file, samples)) == 1


def test_split_items_cut_the_same_samples_as_one_item(one_file):
    samples = all_samples(one_file)

    def cut(items: list[dict]) -> dict[str, dict]:
        rows = [row for item in items for row in cut_item(item, one_file.params)]
        assert all(not row["bad"] for row in rows)
        return {row["key"]: pickle.loads(row["payload"]) for row in rows}

    whole, split = cut(read_items(one_file, samples)), cut(read_items(one_file, samples, max_item_samples=10))
    assert list(split) == list(whole) and len(whole) == sum(LENGTHS)
    for key, members in whole.items():
        assert members.keys() == split[key].keys()
        for name, value in members.items():
            # Frames are arrays, lowdim.npz the window's {field: array}, the rest JSON bytes.
            arrays = value if isinstance(value, dict) else {"": value}
            other = split[key][name] if isinstance(value, dict) else {"": split[key][name]}
            assert arrays.keys() == other.keys()
            for field, array in arrays.items():
                np.testing.assert_array_equal(other[field], array, err_msg=f"{key} {name} {field}")
