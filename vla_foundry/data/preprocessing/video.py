"""Forward video decoding with PyAV: open a file once, seek once, decode forward through many episodes.

LeRobot v3 packs many episodes into one MP4 per camera; episode e's frame at timestamp s lies at
`from_timestamp(e) + s` in the file. `ForwardVideoReader.frames_at` walks increasing target times, decoding
forward and matching each target to the decoded frame within half a frame period; it seeks only when a target
lies behind the decoder (or far ahead of it), so one pass serves every episode of a read task. Only the current
frame is held in memory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

# Targets further ahead than this are reached by seeking instead of decoding every frame in between.
SEEK_AHEAD_S = 5.0


class VideoDecodeError(Exception):
    """A video cannot be opened or decoded; the message names the file."""


class ForwardVideoReader:
    """Sequential reader of one video file. Counters: `opens`, `seeks`, `decoded` frames."""

    def __init__(self, path: str, fps: float) -> None:
        import av

        self.path = path
        self.fps = fps
        self.tolerance = 0.5 / fps
        try:
            self.container = av.open(path)
            self.stream = self.container.streams.video[0]
            # One decoding thread: readers run in parallel worker processes or Ray tasks, one per core, and a codec's
            # own threads (one per core by default) then only compete with them: on 2 cores, libdav1d spent 0.09-0.10
            # ms of CPU per 224 px AV1 frame with its default threads and 0.043 ms with one.
            self.stream.codec_context.thread_count = 1
        except Exception as e:  # PyAV raises several error types for broken files
            raise VideoDecodeError(f"cannot open video {path}: {e}") from e
        # One reformatter per reader keeps its colour-conversion context across frames (frame.to_ndarray would
        # build a new one per frame, which costs more than decoding a small frame).
        from av.video.reformatter import VideoReformatter

        self.reformatter = VideoReformatter()
        # Seconds per pts tick as a float (Fraction arithmetic per frame costs more than decoding a small frame).
        self.time_base = float(self.stream.time_base)
        self.opens, self.seeks, self.decoded = 1, 0, 0
        self._frames: Iterator | None = None
        self._current: tuple[float, object] | None = None  # (time, av.VideoFrame)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> ForwardVideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _seek(self, t: float) -> None:
        # Seek to the keyframe at or before t (in stream time base), then decode forward from there.
        offset = int(max(0.0, t - self.tolerance) / self.time_base)
        self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
        self.seeks += 1
        self._frames = self.container.decode(self.stream)
        self._current = None

    def _next(self) -> tuple[float, object] | None:
        assert self._frames is not None
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except Exception as e:
            raise VideoDecodeError(f"cannot decode video {self.path}: {e}") from e
        self.decoded += 1
        return frame.pts * self.time_base, frame

    def frames_at(self, times: Iterator[float] | list[float]) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 RGB frame for each target time (seconds, increasing within a call)."""
        for target in times:
            current_time = self._current[0] if self._current is not None else None
            if (
                self._frames is None
                or (current_time is not None and target < current_time - self.tolerance)
                or (current_time is not None and target > current_time + SEEK_AHEAD_S)
            ):
                self._seek(target)
            while self._current is None or self._current[0] < target - self.tolerance:
                item = self._next()
                if item is None:
                    raise VideoDecodeError(
                        f"video {self.path} ends before t={target:.4f}s "
                        f"(last frame at {current_time if current_time is not None else 'none'})"
                    )
                self._current = item
                current_time = item[0]
            if abs(self._current[0] - target) > self.tolerance:
                raise VideoDecodeError(
                    f"video {self.path} has no frame at t={target:.4f}s (nearest {self._current[0]:.4f}s)"
                )
            yield self.reformatter.reformat(self._current[1], format="rgb24").to_ndarray()


def open_video(path: str, fps: float, local_cache: str | None = None) -> ForwardVideoReader:
    """Open a local video, or an s3:// one after downloading it into `local_cache` (PyAV needs seekable input)."""
    from vla_foundry import storage

    if storage.is_hf(path):
        path = storage.hf_file(path)  # the Hub cache holds a local copy: decoded in place
    if storage.is_s3(path):
        if local_cache is None:
            raise ValueError("reading an s3:// video needs a local cache directory")
        local = os.path.join(local_cache, path.replace("s3://", "").replace("/", "__"))
        if not os.path.exists(local):
            storage.download_file(path, local)
        return ForwardVideoReader(local, fps)
    if not os.path.exists(path):
        raise VideoDecodeError(f"video file not found: {path}")
    return ForwardVideoReader(path, fps)
