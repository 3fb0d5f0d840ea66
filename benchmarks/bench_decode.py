"""Per-frame decode cost of a LeRobot video against the JPEGs the offline job stores, each with the decoder this
project uses for it: the stream's video reader against the shard loader's JPEG decoder.

    uv run python benchmarks/bench_decode.py --video DATASET/videos/observation.images.cam0/chunk-000/file-000.mp4 \
        [--frames 600] [--repeats 3] [--quality 95]

Decodes the first --frames frames of --video to (H, W, 3) RGB arrays with the stream's reader
(`ForwardVideoReader`: PyAV, lerobot's default AV1 for a dataset lerobot wrote, one colour-conversion context per
reader) on one decoder thread, then encodes those frames as JPEGs at --quality (as the offline job stores them) and
decodes them back to (3, H, W) planes as the shard loader does (`decode_planar`: libjpeg-turbo through
torchvision), with one torch thread. Each measurement is repeated --repeats times, alternating; medians are
printed, then last `video/jpeg decode cost ratio X`.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def decode_video(path: str, frames: int) -> tuple[float, list]:
    """(seconds per frame, the frames as RGB arrays) of reading the first `frames` frames of `path` with the
    stream's reader, one decoder thread."""
    import av

    from vla_foundry.data.preprocessing.video import ForwardVideoReader

    with av.open(path) as container:
        fps = float(container.streams.video[0].average_rate)
    reader = ForwardVideoReader(path, fps)  # one decoder thread, as in the stream
    try:
        start = time.perf_counter()
        out = list(reader.frames_at([i / fps for i in range(frames)]))
        elapsed = time.perf_counter() - start
    finally:
        reader.close()
    return elapsed / len(out), out


def decode_jpegs(jpegs: list[bytes]) -> float:
    """Seconds per frame of decoding `jpegs` to (3, H, W) planes with the shard loader's decoder."""
    import torch

    from vla_foundry.data.processors.images import decode_planar

    torch.set_num_threads(1)
    start = time.perf_counter()
    for data in jpegs:
        decode_planar(data, None)
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
    decode_jpegs(jpegs[:8])  # warm-up: the decoder's import
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
