"""Forward decoding: one open per file, frames matched to timestamps across episodes, AV1 / H.264 / MPEG-4."""

from __future__ import annotations

import pytest

from vla_foundry.data.preprocessing.video import ForwardVideoReader, VideoDecodeError
from vla_foundry.data.scripts.make_synthetic_lerobot import FPS, decode_colour, make_frame, write_video


@pytest.mark.parametrize("codec", ["libsvtav1", "libx264", "mpeg4"])
def test_frames_at_timestamps_of_two_packed_episodes_decode_to_their_ids(tmp_path, codec):
    path = tmp_path / f"{codec}.mp4"
    write_video(path, [make_frame(0, t, 0) for t in range(6)] + [make_frame(1, t, 0) for t in range(5)], codec)
    with ForwardVideoReader(str(path), FPS) as reader:
        second = [decode_colour(f) for f in reader.frames_at([(6 + t) / FPS for t in range(5)])]
        assert second == [(1, t, 0) for t in range(5)]
        # Going back to the first episode seeks instead of reopening the file.
        first = [decode_colour(f) for f in reader.frames_at([t / FPS for t in range(2, 4)])]
        assert first == [(0, 2, 0), (0, 3, 0)]
        assert reader.opens == 1


def test_decoding_forward_does_not_seek_between_consecutive_episodes(tmp_path):
    path = tmp_path / "v.mp4"
    write_video(path, [make_frame(0, t, 0) for t in range(10)])
    with ForwardVideoReader(str(path), FPS) as reader:
        list(reader.frames_at([t / FPS for t in range(4)]))
        list(reader.frames_at([t / FPS for t in range(4, 10)]))
        assert (reader.seeks, reader.decoded) == (1, 10)


def test_a_timestamp_past_the_end_names_the_file(tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, [make_frame(0, t, 0) for t in range(3)])
    with ForwardVideoReader(str(path), FPS) as reader, pytest.raises(VideoDecodeError, match="short.mp4 ends"):
        list(reader.frames_at([t / FPS for t in range(5)]))


def test_a_corrupt_file_is_a_video_decode_error(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(b"not a video at all" * 100)
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        ForwardVideoReader(str(path), FPS)


def test_the_reader_decodes_on_one_thread(tmp_path):
    # Readers run one per worker process or Ray task; the codec's own threads (one per core by default) would
    # compete with them.
    path = tmp_path / "v.mp4"
    write_video(path, [make_frame(0, t, 0) for t in range(4)], "libsvtav1")
    with ForwardVideoReader(str(path), FPS) as reader:
        list(reader.frames_at([t / FPS for t in range(4)]))
        assert reader.stream.codec_context.name == "libdav1d"
        assert reader.stream.codec_context.thread_count == 1
