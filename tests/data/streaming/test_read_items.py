"""A rank's samples are split into Ray items of a bounded size (within an episode where the bound falls), so a
dataset whose episodes share one data file and one MP4 per camera (as lerobot records them) is decoded by several
tasks with equal shares, with the same samples; an item decodes only the frames of its own anchors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.data.streaming.conftest import stream_data_params
from vla_foundry.data.scripts.make_synthetic_lerobot import CAMERAS, make_lerobot_v3
from vla_foundry.data.streaming.items import read_items
from vla_foundry.data.streaming.ray_stream import cut_item, row_samples
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


def test_one_read_task_is_split_into_items_of_the_bound_within_episodes(one_file):
    samples = all_samples(one_file)
    assert len(one_file.tasks) == 1
    items = read_items(one_file, samples, max_item_samples=20)
    anchors = [item_anchors(i) for i in items]
    # 57 samples (anchors of 1 past + 3 future rows with padding: every step) -> 20 + 20 + 17.
    assert [sum(len(ts) for ts in a.values()) for a in anchors] == [20, 20, 17]
    assert [(e, t) for a in anchors for e, ts in a.items() for t in ts] == samples
    # Episode 1 (9 steps) is split after its 8th anchor: the second item starts at anchor 8.
    second = anchors[1]
    assert [int(e.rsplit("_", 1)[1]) for e in second] == [1, 2, 3] and second[next(iter(second))] == [8]
    assert len(read_items(one_file, samples)) == 1


def test_an_item_decodes_only_the_frames_of_its_anchors(one_file):
    from vla_foundry.data.preprocessing.episodes import ReadTask, get_converter

    (item,) = read_items(
        one_file, [(eid, a) for eid, a in all_samples(one_file) if eid.endswith("_000002") and a >= 11]
    )
    task = ReadTask(**json.loads(item["item"])["task"])
    converter = get_converter("lerobot")(one_file.params)
    # Frames are read while the task is open (its readers close when the task's episodes are done).
    episode, partial = next((e, dict(e.frames)) for e in converter.read_task(task))
    # The frames of anchors 11..14 at every image offset of the cut (clamped to the 15 steps), and no other.
    wanted = sorted({min(max(a + o, 0), 14) for a in range(11, 15) for o in one_file.params.image_indices})
    assert episode.length == 15 and episode.frame_steps == wanted and wanted[0] < 11
    whole_task = ReadTask(**{**task.__dict__, "spec": {**task.spec, "episodes": [
        {k: v for k, v in ep.items() if k != "anchors"} for ep in task.spec["episodes"]]}})  # fmt: skip
    whole, every = next((e, dict(e.frames)) for e in converter.read_task(whole_task))
    assert whole.frame_steps is None
    assert sorted(partial) == wanted and sorted(every) == list(range(15))
    for t, frames in partial.items():
        for cam, frame in frames.items():
            np.testing.assert_array_equal(frame, every[t][cam], err_msg=f"t={t} {cam}")


def test_split_items_cut_the_same_samples_as_one_item(one_file):
    samples = all_samples(one_file)

    def cut(items: list[dict]) -> dict[str, dict]:
        rows = [row for item in items for row in cut_item(item, one_file.params)]
        assert all(not row["bad"] for row in rows)
        return {key: members for row in rows for key, members in row_samples(row)}

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
