"""MCAP logs as a robotics source: ROS 2 (CDR) messages through `mcap` + `mcap-ros2-support`, and JSON channels.

An episode is one `.mcap` file, or a rosbag2 folder (a `metadata.yaml` beside split `*_<n>.mcap` files) read as
one log. The mapping YAML (`--mapping_path`, required) names the topics:

    cameras: {head: /camera/head/compressed, wrist: /camera/wrist/image_raw}   # CompressedImage or Image
    lowdim:
      observation.state: {topic: /joint_states, field: position}                # a field path ...
      action: {topic: /arm/command, field: [data, gripper]}                     # ... or several, concatenated
    language: {topic: /instruction, field: text}                               # or a fixed string

Streams are aligned to `--fps` on the log times: step k is at t0 + k / fps, from the latest first message of the
mapped topics to the earliest last one; each stream gives the latest message at or before the step's time. A
message older than `--tolerance_s` (default one period) is still used, and the step is reported as a gap of that
topic in the episode's quality entry (`stream_gaps`). Low-dim topics are read whole (small); camera messages are
decoded as sample cutting reaches their steps, so memory holds one frame per camera.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry import storage
from vla_foundry.data.preprocessing.episodes import (
    Converter,
    Episode,
    EpisodeError,
    ReadTask,
    TaskFailure,
    register_converter,
)
from vla_foundry.data.preprocessing.source_mapping import episode_name, find_episode_files, load_mapping
from vla_foundry.params.base_params import ConfigError

SUFFIXES = (".mcap",)
MAPPING_KEYS = ("cameras", "lowdim", "language")
ROSBAG_METADATA = "metadata.yaml"
# Steps listed per topic in a gap report (the count is always complete).
MAX_LISTED = 20


def field_value(message: Any, path: str) -> Any:
    """`a.b.2.c` of a decoded ROS 2 message (attributes) or JSON message (keys / list indices)."""
    value = message
    for part in path.split("."):
        if isinstance(value, dict):
            value = value[part]
        elif isinstance(value, list | tuple) and part.lstrip("-").isdigit():
            value = value[int(part)]
        else:
            value = getattr(value, part)
    return value


def numeric_row(message: Any, paths: list[str]) -> np.ndarray:
    """The fields at `paths` (numbers or sequences of numbers) flattened into one float64 row."""
    return np.concatenate([np.asarray(field_value(message, p), dtype=np.float64).reshape(-1) for p in paths])


def decode_image(message: Any) -> np.ndarray:
    """sensor_msgs CompressedImage (JPEG/PNG bytes) or Image (rgb8 / bgr8 / rgba8 / bgra8 / mono8) -> (H, W, 3)."""
    if hasattr(message, "encoding") and hasattr(message, "height"):
        data = np.frombuffer(bytes(message.data), np.uint8)
        h, w, step = int(message.height), int(message.width), int(message.step)
        channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}.get(message.encoding)
        if channels is None:
            raise ValueError(
                f"raw image encoding {message.encoding!r} is not supported (rgb8, bgr8, rgba8, bgra8, mono8)"
            )
        image = data.reshape(h, step)[:, : w * channels].reshape(h, w, channels)
        if channels == 1:
            return np.repeat(image, 3, axis=2)
        image = image[..., :3]
        return image[..., ::-1].copy() if message.encoding.startswith("bgr") else image.copy()
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(bytes(message.data))).convert("RGB"))


class LogFiles:
    """The local MCAP files of one episode read as one time-ordered log (ROS 2 and JSON messages decoded)."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths

    def messages(self, topics: list[str], decode: bool = True) -> Iterator[tuple[str, int, Any]]:
        """(topic, log time ns, message) in log-time order over all files; without `decode`, a function that
        decodes the message when called instead of the message (so skipped messages are never decoded)."""
        import heapq

        iterators = [self._file_messages(p, topics, decode) for p in self.paths]
        yield from heapq.merge(*iterators, key=lambda item: item[1])

    @staticmethod
    def _file_messages(path: str, topics: list[str] | None, decode: bool) -> Iterator[tuple[str, int, Any]]:
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        with open(path, "rb") as f:
            reader = make_reader(f)
            factory = DecoderFactory()
            for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=True):
                if channel.message_encoding == "json":
                    decoder = json.loads
                else:
                    decoder = factory.decoder_for(channel.message_encoding, schema)
                    if decoder is None:
                        raise ValueError(
                            f"{path}: topic {channel.topic} has message encoding {channel.message_encoding!r}; "
                            f"supported: cdr (ROS 2), json"
                        )
                if decode:
                    yield channel.topic, message.log_time, decoder(message.data)
                else:
                    yield channel.topic, message.log_time, functools.partial(decoder, message.data)

    def topics(self) -> set[str]:
        """Every topic with a channel in any of the files (from the summary, without reading messages)."""
        from mcap.reader import make_reader

        found: set[str] = set()
        for path in self.paths:
            with open(path, "rb") as f:
                summary = make_reader(f).get_summary()
                if summary is not None:
                    found.update(c.topic for c in summary.channels.values())
                else:  # a file without a summary section: its channels come from the messages
                    found.update(t for t, _, _ in self._file_messages(path, None, decode=False))
        return found


def lowdim_specs(mapping: dict, path: str) -> dict[str, tuple[str, list[str]]]:
    """{stored field: (topic, [field paths])} from the mapping's `lowdim` section."""
    specs = {}
    for name, spec in (mapping.get("lowdim") or {}).items():
        if not isinstance(spec, dict) or "topic" not in spec or "field" not in spec:
            raise ConfigError(f"mapping_path={path}: lowdim {name!r} must be {{topic: /name, field: path or [paths]}}")
        fields = spec["field"] if isinstance(spec["field"], list) else [spec["field"]]
        specs[str(name)] = (str(spec["topic"]), [str(f) for f in fields])
    return specs


def align(times: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the latest message at or before each grid time (times sorted, ns) and its age in seconds."""
    index = np.searchsorted(times, grid, side="right") - 1  # (K,); >= 0 since grid starts at every first message
    return index, (grid - times[index]) / 1e9


@register_converter("mcap")
class McapConverter(Converter):
    """MCAP logs: one read task per episode (a file, or a rosbag2 folder of split files)."""

    source_params = ("mapping_path",)

    def __init__(self, params: Any) -> None:
        super().__init__(params)
        if params.mapping_path is None:
            raise ConfigError("type=mcap needs --mapping_path: a YAML naming the camera, low-dim and language topics")
        if params.fps is None:
            raise ConfigError("type=mcap needs --fps: the rate the topics are aligned to (e.g. --fps 30)")
        self.mapping = load_mapping(params.mapping_path, MAPPING_KEYS, "mcap")
        self.lowdim = lowdim_specs(self.mapping, params.mapping_path)
        if not self.lowdim:
            raise ConfigError(f"mapping_path={params.mapping_path}: an MCAP mapping needs a lowdim section")
        self.cameras = {str(k): str(v) for k, v in (self.mapping.get("cameras") or {}).items()}
        self.check_camera_rename(list(self.cameras), f"mapping_path={params.mapping_path}")
        self.tolerance_s = params.tolerance_s if params.tolerance_s is not None else 1.0 / params.fps

    def plan_read_tasks(self) -> list[ReadTask]:
        episodes: dict[str, list[str]] = {}
        for root, path in find_episode_files(self.params.source_episodes, SUFFIXES, "MCAP"):
            folder = storage.dirname(path)
            if storage.exists(storage.join(folder, ROSBAG_METADATA)):  # split files of one rosbag2 recording
                name = episode_name(storage.dirname(root) if folder == root else root, folder, ())
            else:
                name = episode_name(root, path, SUFFIXES)
            episodes.setdefault(name, []).append(path)
        tasks = [ReadTask(task_id=n, episode_ids=[n], spec={"paths": p}) for n, p in episodes.items()]
        return tasks[: self.params.max_episodes_to_process] if self.params.max_episodes_to_process else tasks

    def read_task(self, task: ReadTask) -> Iterator[Episode | TaskFailure]:
        eid = task.episode_ids[0]
        try:
            with contextlib.ExitStack() as stack:
                # S3 files are downloaded once for the task's passes over them, and removed after.
                local = [stack.enter_context(storage.local_copy(p)) for p in task.spec["paths"]]
                yield self._episode(eid, LogFiles(local), task.spec["paths"][0])
        except EpisodeError as e:
            yield TaskFailure(eid, e.reason, e.kind, e.length)
        except ConfigError:
            raise
        except Exception as e:  # a malformed log (bad chunk, undecodable schema...): reported, not fatal
            yield TaskFailure(eid, f"{task.spec['paths'][0]}: {type(e).__name__}: {e}", "read_error")

    def _episode(self, eid: str, log: LogFiles, source: str) -> Episode:
        params = self.params
        renamed = {params.camera_rename.get(c, c): topic for c, topic in self.cameras.items()}
        language_spec = self.mapping.get("language")
        language_topic = str(language_spec["topic"]) if isinstance(language_spec, dict) else None
        lowdim_topics = sorted({topic for topic, _ in self.lowdim.values()})
        present = log.topics()
        for name, (topic, _) in self.lowdim.items():
            if topic not in present:
                raise EpisodeError(
                    eid, f"topic {topic} (field {name!r}) is not in the log; it has {sorted(present)}", "missing_field"
                )
        if language_topic is not None and language_topic not in present:
            raise EpisodeError(eid, f"language topic {language_topic} is not in the log", "missing_field")
        missing = [cam for cam, topic in renamed.items() if topic not in present]
        available = [cam for cam in renamed if cam not in missing]
        if missing and params.camera_names is None:
            topics = {cam: renamed[cam] for cam in missing}
            raise EpisodeError(eid, f"camera topic(s) {topics} not in the log", "missing_camera")
        cameras = self.select_cameras(eid, available)

        # Pass 1: low-dim and language messages decoded; camera messages' log times only.
        times_of: dict[str, list[int]] = {t: [] for t in lowdim_topics}
        fields_of: dict[str, list[tuple[str, list[str]]]] = {t: [] for t in lowdim_topics}
        for name, (topic, paths) in self.lowdim.items():
            fields_of[topic].append((name, paths))
        rows: dict[str, list[np.ndarray]] = {name: [] for name in self.lowdim}
        instruction = None
        for topic, time_ns, message in log.messages([*lowdim_topics, *([language_topic] if language_topic else [])]):
            if topic == language_topic:
                if instruction is None:
                    instruction = str(field_value(message, str(language_spec["field"])))
                if topic not in times_of:
                    continue
            times_of[topic].append(time_ns)
            # Messages become numeric rows as they are read: memory holds numbers, not decoded messages.
            for name, paths in fields_of[topic]:
                rows[name].append(self._row(eid, topic, name, message, paths))
        camera_times: dict[str, list[int]] = {renamed[c]: [] for c in cameras}
        if cameras:
            for topic, time_ns, _ in log.messages(list(camera_times), decode=False):
                camera_times[topic].append(time_ns)
        stream_times = {t: np.array(v, np.int64) for t, v in times_of.items()}
        stream_times.update({t: np.array(v, np.int64) for t, v in camera_times.items()})
        empty = [t for t, v in stream_times.items() if len(v) == 0]
        if empty:
            users = sorted(n for n, (t, _) in self.lowdim.items() if t in empty) + [
                c for c in cameras if renamed[c] in empty
            ]
            raise EpisodeError(eid, f"topic(s) {empty} (for {users}) have no messages", "missing_field")

        start = max(int(v[0]) for v in stream_times.values())
        end = min(int(v[-1]) for v in stream_times.values())
        if end < start:
            raise EpisodeError(eid, "the mapped topics do not overlap in time", "read_error")
        period_ns = 1e9 / params.fps
        grid = start + np.round(np.arange(int((end - start) / period_ns + 1e-9) + 1) * period_ns).astype(np.int64)
        length = len(grid)

        stream_gaps = {}
        aligned: dict[str, np.ndarray] = {}
        for topic, times in stream_times.items():
            index, age = align(times, grid)
            aligned[topic] = index
            stale = np.flatnonzero(age > self.tolerance_s + 1e-9)
            stream_gaps[topic] = {
                "messages": len(times),
                "rate_hz": round(float((len(times) - 1) / max((times[-1] - times[0]) / 1e9, 1e-9)), 3),
                "stale_steps": len(stale),
                "stale_at": stale[:MAX_LISTED].tolist(),
                "max_age_s": round(float(age.max()), 6),
            }

        lowdim: dict[str, np.ndarray] = {}
        for name, (topic, paths) in self.lowdim.items():
            try:
                values = np.stack(rows[name])  # (messages, D)
            except ValueError as e:
                raise EpisodeError(
                    eid, f"topic {topic}: field {paths} of {name!r} changes size ({e})", "read_error"
                ) from e
            lowdim[name] = values[aligned[topic]].astype(np.float32)  # (L, D)

        if isinstance(language_spec, str):
            language = {"original": [language_spec]}
        else:
            language = {"original": [instruction] if instruction else []}
        return Episode(
            episode_id=eid,
            length=length,
            lowdim=lowdim,
            language=language,
            cameras=cameras,
            frames=self._frames(eid, log, {c: renamed[c] for c in cameras}, aligned, length),
            metadata={"source": source, "fps": params.fps},
            timestamps=(grid - grid[0]) / 1e9,
            quality={"stream_gaps": stream_gaps},
        )

    @staticmethod
    def _row(eid: str, topic: str, name: str, message: Any, paths: list[str]) -> np.ndarray:
        try:
            return numeric_row(message, paths)
        except (AttributeError, KeyError, IndexError, TypeError, ValueError) as e:
            raise EpisodeError(
                eid, f"topic {topic}: field {paths} of {name!r} unreadable ({e!r})", "missing_field"
            ) from e

    @staticmethod
    def _frames(
        eid: str, log: LogFiles, cameras: dict[str, str], aligned: dict[str, np.ndarray], length: int
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Frames per step: message aligned[topic][t] of each camera topic, decoded once, when a step uses it.

        Every target message of step t is at or before the step's time, so reading the time-ordered stream until
        each topic reaches its target never passes another topic's target.
        """
        topics = sorted(set(cameras.values()))
        stream = log.messages(topics, decode=False)
        counts = dict.fromkeys(topics, -1)  # index of the latest message read, per topic
        raw: dict[str, Any] = {}  # latest message of each topic, undecoded
        decoded: dict[str, tuple[int, np.ndarray]] = {}
        for t in range(length):
            while any(counts[topic] < aligned[topic][t] for topic in topics):
                item = next(stream, None)
                if item is None:
                    raise EpisodeError(eid, f"camera messages ended before step {t}", "short_video")
                topic, _, thunk = item
                counts[topic] += 1
                raw[topic] = thunk
            images = {}
            for cam, topic in cameras.items():
                if topic not in decoded or decoded[topic][0] != counts[topic]:
                    decoded[topic] = (counts[topic], decode_image(raw[topic]()))
                images[cam] = decoded[topic][1]
            yield t, images
