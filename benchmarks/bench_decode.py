"""Per-frame decode cost of a LeRobot video against the JPEGs the offline job stores: why a stream that decodes
video for every sample cannot match the shard loader on the same CPU.

    uv run python benchmarks/bench_decode.py --video DATASET/videos/observation.images.cam0/chunk-000/file-000.mp4 \
        [--frames 600] [--repeats 3] [--quality 95]

Decodes the first --frames frames of --video to RGB with PyAV on one thread (the stream's decoder, lerobot's
default AV1 for a dataset lerobot wrote), then encodes those frames as JPEGs at --quality (as the offline job
stores them) and decodes them back with PIL on one thread (the shard loader's decoder). Each measurement is
repeated --repeats times, alternating; medians are printed, then last `video/jpeg decode cost ratio X`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time


def decode_video(path: str, frames: int) -> tuple[float, list]:
    """(seconds per frame, the first frames as RGB arrays) of decoding `frames` frames of `path` on one thread."""
    import av

    out = []
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        start = time.perf_counter()
        for frame in container.decode(stream):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) >= frames:
                break
        elapsed = time.perf_counter() - start
    return elapsed / len(out), out


def decode_jpegs(jpegs: list[bytes]) -> float:
    """Seconds per frame of decoding `jpegs` to RGB arrays with PIL."""
    import numpy as np
    from PIL import Image

    start = time.perf_counter()
    for data in jpegs:
        np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return (time.perf_counter() - start) / len(jpegs)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--video", required=True, help="an MP4 of a LeRobot dataset")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality", type=int, default=95, help="JPEG quality of the comparison frames")
    args = parser.parse_args()
    from PIL import Image

    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    _, frames = decode_video(args.video, args.frames)  # warm-up, and the frames to encode
    jpegs = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=args.quality)
        jpegs.append(buffer.getvalue())
    h, w = frames[0].shape[:2]
    video_s, jpeg_s = [], []
    for r in range(args.repeats):
        video_s.append(decode_video(args.video, args.frames)[0])
        jpeg_s.append(decode_jpegs(jpegs))
        print(f"repeat {r + 1}: video {1000 * video_s[-1]:.3f} ms/frame, jpeg {1000 * jpeg_s[-1]:.3f} ms/frame")
    video, jpeg = statistics.median(video_s), statistics.median(jpeg_s)
    print(f"{len(frames)} frames of {w}x{h}: video {1000 * video:.3f} ms/frame, jpeg {1000 * jpeg:.3f} ms/frame")
    print(f"video/jpeg decode cost ratio {video / jpeg:.2f}")


if __name__ == "__main__":
    main()
