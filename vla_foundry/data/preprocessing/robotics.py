"""The robotics preprocessing job: converter read tasks -> windowed samples -> shards + stats.json.

`run_robotics_preprocessing(params)` is what `preprocess_robotics_to_tar.py` calls. Each read task (a Ray task)
reads its episodes in order, cuts and encodes their samples into the task's spool, and accumulates partial
statistics; the driver merges the partials in task order (so stats do not depend on scheduling).
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging

import numpy as np

from vla_foundry import storage
from vla_foundry.data.preprocessing.episode_quality import (
    EpisodeQuality,
    fatal_findings,
    is_still_window,
    still_fields_of,
    summarize,
)
from vla_foundry.data.preprocessing.episodes import (
    Converter,
    Episode,
    EpisodeError,
    ReadTask,
    TaskFailure,
    get_converter,
)
from vla_foundry.data.preprocessing.job import JobError, JobOutcome, JobPaths, TaskResult, TaskSpool, run_job
from vla_foundry.data.preprocessing.sample_cutting import count_potential_samples, cut_samples
from vla_foundry.data.preprocessing.video import VideoDecodeError
from vla_foundry.data.preprocessing.window_statistics import WindowStats
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.parsing import params_to_dict
from vla_foundry.params.preprocessing_params import RoboticsPreprocessingParams

logger = logging.getLogger(__name__)


class MissingCameraError(EpisodeError):
    """A requested camera is absent and `missing_camera: error` makes that fatal."""


class NonFiniteEpisodeError(JobError):
    """An episode holds NaN/Inf low-dim values and `fail_on_nan: true` makes that fatal."""


def nonfinite_lowdim(episode: Episode) -> str | None:
    """What is non-finite in an episode's low-dim arrays and constants ("action: 2 values, first at timestep 3"),
    or None when every float value is finite. NaN/Inf would pass into shards and stats and only show as a NaN loss."""
    found = []
    for name, arr in {**episode.lowdim, **episode.constants}.items():
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fc":
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            first = np.argwhere(bad)[0]
            found.append(f"{name}: {int(bad.sum())} value(s), first at index {tuple(int(i) for i in first)}")
    return "; ".join(found) or None


def _check_finite(episode: Episode, params: RoboticsPreprocessingParams) -> TaskFailure | None:
    """None for a finite episode; the failure to record when `fail_on_nan` is off; raises when it is on."""
    found = nonfinite_lowdim(episode)
    if found is None:
        return None
    reason = f"non-finite low-dim values (NaN/Inf): {found}"
    if params.fail_on_nan:
        raise NonFiniteEpisodeError(
            f"episode {episode.episode_id}: {reason}; fail_on_nan is on: fix the source, or pass --fail_on_nan false "
            "to skip such episodes (counted under dropped[non_finite] in processing_metadata.json)"
        )
    return TaskFailure(episode.episode_id, reason, "non_finite", episode.length)


def make_converter(params: RoboticsPreprocessingParams) -> Converter:
    """The converter registered under `params.type` (see `register_converter`), built for these params."""
    return get_converter(params.type)(params)


def read_robotics_task(params: RoboticsPreprocessingParams, task_json: dict, output_dir: str) -> dict:
    """One read task (runs on a Ray worker): episodes -> samples in the task's spool + partial statistics."""
    from vla_foundry.plugins import load_plugins

    task = ReadTask(**task_json)
    # Workers are other processes: they import the plugins too before the converter is looked up.
    load_plugins(params.plugins, entry_points=False)
    converter = make_converter(params)
    spool = TaskSpool(JobPaths(output_dir.rstrip("/")), task.task_id)
    stats = WindowStats(seed=params.seed)
    result = TaskResult(task_id=task.task_id, inputs=len(task.episode_ids), samples=0, potential=0)
    try:
        for item, eid in zip(converter.read_task(task), task.episode_ids):
            if isinstance(item, TaskFailure):
                _record_failure(result, params, item, item.length or _known_length(eid, task))
                continue
            non_finite = _check_finite(item, params)
            if non_finite is not None:
                _record_failure(result, params, non_finite, item.length)
                # Still reported: its low-dim and timestamp rules (its frames are never read).
                result.quality[eid] = {**EpisodeQuality(params).finish(item), "dropped": "non_finite"}
                continue
            potential = count_potential_samples(item.length, params)
            result.potential += potential
            mark = spool.writer.mark()
            episode_stats = WindowStats(seed=params.seed)
            written = still = 0
            quality = EpisodeQuality(params)
            try:
                episode = quality.observe(item)
                fields = still_fields_of(list(item.lowdim), params.still_fields, eid)
                for sample in cut_samples(episode, params):
                    if params.filter_still_samples and is_still_window(
                        sample.lowdim, sample.valid, fields, params.still_threshold
                    ):
                        still += 1
                        continue
                    spool.writer.add(sample.key, sample.members)
                    episode_stats.add_sample(sample.lowdim, sample.valid)
                    written += 1
            except ConfigError:
                raise
            except Exception as e:  # bad data of one episode (undecodable image, odd array...) must not end the job
                # Undo the episode's partial output: an episode is in the dataset whole or not at all.
                spool.writer.rollback(mark)
                if isinstance(e, EpisodeError):
                    kind, reason = e.kind, e.reason
                elif isinstance(e, VideoDecodeError):
                    kind, reason = "video_error", str(e)
                else:
                    kind, reason = "read_error", f"{type(e).__name__}: {e}"
                result.potential -= potential
                _record_failure(result, params, TaskFailure(eid, reason, kind), item.length)
                continue
            stats.merge(episode_stats)
            result.samples += written
            if still:
                result.dropped["still"] = result.dropped.get("still", 0) + still
            result.quality[eid] = quality.finish(item)
        result.counters.update(converter.stats())
        spool.extra_files[".stats.npz"] = _npz_bytes(stats.to_npz_dict())
        spool.commit(result)
    except BaseException:
        spool.discard()
        raise
    return result.to_json()


def _known_length(eid: str, task: ReadTask) -> int | None:
    """The episode length from the task's metadata when the source lists it (LeRobot), else None."""
    i = task.episode_ids.index(eid)
    episodes = task.spec.get("episodes")
    return int(episodes[i]["length"]) if episodes else None


def _record_failure(
    result: TaskResult, params: RoboticsPreprocessingParams, failure: TaskFailure, length: int | None
) -> None:
    if failure.kind == "missing_camera" and params.missing_camera == "error":
        raise MissingCameraError(failure.episode_id, failure.reason + " (missing_camera: error)", failure.kind)
    potential = count_potential_samples(length, params) if length else 0
    result.potential += potential
    result.dropped[failure.kind] = result.dropped.get(failure.kind, 0) + potential
    if failure.kind == "missing_camera":
        # A documented policy outcome (skip_episode), not a read failure: counted, not held against the threshold.
        result.counters["episodes_skipped_missing_camera"] = (
            result.counters.get("episodes_skipped_missing_camera", 0) + 1
        )
        logger.warning("skipping episode %s: %s", failure.episode_id, failure.reason)
        return
    result.failures.append(
        {"id": failure.episode_id, "reason": failure.reason, "kind": failure.kind, "potential": potential}
    )


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def merge_task_stats(paths: JobPaths, task_ids: list[str], seed: int) -> WindowStats:
    """Merge the per-task partial statistics in task order."""
    merged = WindowStats(seed=seed)
    for task_id in task_ids:
        data = np.load(io.BytesIO(storage.read_bytes(paths.task_file(task_id, ".stats.npz"))), allow_pickle=False)
        merged.merge(WindowStats.from_npz_dict(dict(data), seed=seed))
    return merged


def preprocessing_config(
    params: RoboticsPreprocessingParams, cameras: list[str], camera_image_sizes: dict[str, list[int]] | None = None
) -> str:
    """preprocessing_config.yaml: the resolved params plus the cameras actually stored and, when known, each one's
    stored [height, width] (with image_size null, the source's size: what a simulator renders for a policy trained
    on these frames)."""
    import yaml

    data = params_to_dict(params)
    data["camera_names"] = cameras
    if camera_image_sizes:
        data["camera_image_sizes"] = camera_image_sizes
    data["window_length"] = params.window_length
    if params.type == "spartan" and params.action_fields_config_path:
        from vla_foundry.data.preprocessing.spartan_source import load_action_fields

        # The slicing itself, so the dataset stays self-describing without the config file.
        data["action_fields"] = {n: [a, b] for n, a, b in load_action_fields(params.action_fields_config_path)}
    return yaml.safe_dump(data, sort_keys=False)


def run_robotics_preprocessing(params: RoboticsPreprocessingParams) -> JobOutcome:
    """Convert `params.source_episodes` into a training-ready dataset under `<output_dir>/shards/`."""
    params.validate()
    converter = make_converter(params)
    tasks = converter.plan_read_tasks()
    logger.info(
        "%d episodes in %d read tasks from %d source(s)",
        sum(len(t.episode_ids) for t in tasks),
        len(tasks),
        len(params.source_episodes),
    )
    task_ids = [t.task_id for t in tasks]
    seen: dict[str, str] = {}
    for task in tasks:
        for eid in task.episode_ids:
            if eid in seen:
                raise ConfigError(
                    f"episode id {eid} comes from two read tasks ({seen[eid]} and {task.task_id}): two sources "
                    f"share a folder name; give each source a distinct last path component"
                )
            seen[eid] = task.task_id

    def finalize(paths: JobPaths, results: list[TaskResult]) -> dict:
        stats = merge_task_stats(paths, task_ids, params.seed)
        storage.write_text(storage.join(paths.dataset, "stats.json"), json.dumps(stats.to_json(), indent=1))
        sizes = _stored_camera_sizes(paths)
        storage.write_text(
            storage.join(paths.dataset, "preprocessing_config.yaml"), preprocessing_config(params, list(sizes), sizes)
        )
        episodes_quality = {e: q for r in results for e, q in r.quality.items()}
        return {
            "quality": {"summary": summarize(episodes_quality, params.qa_fail_on), "episodes": episodes_quality},
            "type": params.type,
            "episodes": {
                "total": sum(r.inputs for r in results),
                "converted": sum(r.inputs for r in results)
                - sum(len(r.failures) for r in results)
                - sum(r.counters.get("episodes_skipped_missing_camera", 0) for r in results),
            },
        }

    def check_quality(results: list) -> None:
        findings = fatal_findings({e: q for r in results for e, q in r.quality.items()}, params.qa_fail_on)
        if findings:
            listing = "; ".join(findings[:20]) + (f" (and {len(findings) - 20} more)" if len(findings) > 20 else "")
            raise JobError(
                f"{len(findings)} quality finding(s) on rules made fatal by qa_fail_on={params.qa_fail_on}: "
                f"{listing}. Fix or remove those episodes, or drop the rule from --qa_fail_on"
            )

    return run_job(
        "robotics",
        params,
        task_ids,
        [(params, dataclasses.asdict(t)) for t in tasks],
        read_robotics_task,
        [len(t.episode_ids) for t in tasks],
        finalize,
        list(params.source_episodes),
        check_results=check_quality,
    )


def _stored_camera_sizes(paths: JobPaths) -> dict[str, list[int]]:
    """Camera name -> [height, width] of its colour images in the first sample of the first shard (every sample
    stores the same cameras, at one size unless preprocessing kept differing source sizes), in the stored order."""
    from PIL import Image

    from vla_foundry.data.tar_stream import iter_tar_members

    first = storage.join(paths.dataset, "shard_000000.tar")
    members: dict[str, bytes] = {}
    key = None
    with storage.open_read(first) as f:
        for name, data in iter_tar_members(f):
            sample_key, suffix = name.split(".", 1)  # a sample key holds no dot (sample_key)
            if key is not None and sample_key != key:
                break
            key, members[suffix] = sample_key, data
    if "metadata.json" not in members:
        return {}
    sizes: dict[str, list[int]] = {}
    for cam in json.loads(members["metadata.json"])["camera_names"]:
        jpg = next((d for m, d in members.items() if m.startswith(f"{cam}_t") and m.endswith(".jpg")), None)
        # PIL reads the header only, no decode; a camera whose image is missing in this sample has no size.
        sizes[cam] = list(Image.open(io.BytesIO(jpg)).size[::-1]) if jpg is not None else []
    return sizes
