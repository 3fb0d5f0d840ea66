"""A rank's share of a `lerobot` stream as read items, and the cutting of one item: what the Ray stream
(`ray_stream`) and the loader-worker stream (`loader_stream`) share.

An item is consecutive samples of one read task (the episodes sharing their data and video files): its reader
opens each file once, enters each video at the keyframe before the first frame its anchors need and decodes only
those frames into arrays. Frames are kept as resized (h, w, 3) uint8 arrays instead of JPEG bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry.data.streaming.source import LeRobotSource


def read_items(
    source: LeRobotSource, samples: list[tuple[str, int]], max_item_samples: int | None = None
) -> list[dict]:
    """Samples -> Ray Data items: consecutive samples of one read task form an item of at most `max_item_samples`
    (None: no limit), split within an episode where the limit falls.

    The limit lets several decode tasks share one read task: a dataset recorded by lerobot keeps every episode in
    one data file and one MP4 per camera (a single read task), and one long episode would otherwise be decoded by
    one task while the others wait. Each item names its anchors in the episode spec, so its reader decodes only the
    frames they need, entering each video at the keyframe before the first: splitting costs a seek, not a re-decode."""
    items: list[dict] = []
    current: dict | None = None
    for eid, anchor in samples:
        task_index = source.episodes[eid].task_index
        anchors = current["anchors"].get(eid) if current is not None else None
        if (
            current is None
            or current["task_index"] != task_index
            or (max_item_samples and current["count"] >= max_item_samples)
            or (anchors is not None and current["last"] != eid)
            # The same episode again (an interval that wrapped into a new epoch): a new item keeps anchors increasing.
            or (anchors and anchor <= anchors[-1])
        ):
            current = {"task_index": task_index, "anchors": {}, "last": eid, "count": 0}
            items.append(current)
        current["anchors"].setdefault(eid, []).append(anchor)
        current["last"] = eid
        current["count"] += 1
    out = []
    for item in items:
        task = source.tasks[item["task_index"]]
        keep = [i for i, e in enumerate(task.episode_ids) if e in item["anchors"]]
        episodes = [{**task.spec["episodes"][i], "anchors": item["anchors"][task.episode_ids[i]]} for i in keep]
        task_json = {
            "task_id": task.task_id,
            "episode_ids": [task.episode_ids[i] for i in keep],
            "spec": {**task.spec, "episodes": episodes},
        }
        out.append({"item": json.dumps({"task": task_json, "anchors": item["anchors"]})})
    return out


def lost_episode(episode_id: str, reason: str, count: int) -> dict:
    """What `item_samples` yields for an episode it cannot cut: `bad` names it, `count` the samples lost."""
    return {"bad": f"episode {episode_id}: {reason}", "count": count}


def item_samples(item: dict, params: Any) -> Iterator[tuple[str, dict] | dict]:
    """One item (`read_items`) -> (sample key, members) per sample, in anchor order per episode, and a
    `lost_episode` dict per episode (or rest of one) that cannot be read or cut."""
    from vla_foundry.data.preprocessing.episodes import EpisodeError, ReadTask, TaskFailure, get_converter
    from vla_foundry.data.preprocessing.sample_cutting import cut_samples
    from vla_foundry.data.preprocessing.video import VideoDecodeError

    content = json.loads(item["item"])
    task = ReadTask(**content["task"])
    wanted: dict[str, list[int]] = content["anchors"]
    converter = get_converter("lerobot")(params)
    for episode in converter.read_task(task):
        anchors = wanted[episode.episode_id]
        if isinstance(episode, TaskFailure):
            yield lost_episode(episode.episode_id, f"{episode.reason} ({episode.kind})", len(anchors))
            continue
        done = 0
        try:
            for sample in cut_samples(episode, params, anchors, np.ascontiguousarray, dict):
                yield sample.key, sample.members
                done += 1
        except (EpisodeError, VideoDecodeError) as e:
            reason = e.reason if isinstance(e, EpisodeError) else str(e)
            yield lost_episode(episode.episode_id, reason, len(anchors) - done)
        except Exception as e:  # malformed data of one episode: counted, the stream goes on
            yield lost_episode(episode.episode_id, f"{type(e).__name__}: {e}", len(anchors) - done)


def raw_samples(outs: Iterator[tuple[str, dict] | dict], root: str, stats: Any) -> Iterator[dict]:
    """`item_samples` outputs -> raw samples as the pipeline takes them (members + `__key__` / `__url__`); lost
    episodes are counted in `stats` (a `LoaderStats`) as bad samples, named."""
    for out in outs:
        if isinstance(out, dict):
            stats.record_bad(f"{root}: {out['bad']}", int(out["count"]))
            continue
        key, sample = out
        sample["__key__"] = key
        sample["__url__"] = root
        yield sample
