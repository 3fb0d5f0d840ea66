"""preprocessing_config.yaml's camera_image_sizes: [height, width] of each camera's stored colour image."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from vla_foundry.data.preprocessing.encoding import encode_jpeg
from vla_foundry.data.preprocessing.robotics import _stored_camera_sizes


def write_shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> None:
    with tarfile.open(path, "w") as tar:
        for key, members in samples:
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def jpeg(height: int, width: int) -> bytes:
    return encode_jpeg(np.full((height, width, 3), 128, np.uint8), 90)


def test_sizes_are_height_then_width_of_the_first_samples_images_in_camera_order(tmp_path: Path):
    meta = json.dumps({"camera_names": ["side", "front"]}).encode()
    first = {"metadata.json": meta, "front_t0.jpg": jpeg(12, 20), "side_t-1.jpg": jpeg(8, 6), "side_t0.jpg": jpeg(8, 6)}
    # A later sample at other sizes is not read: every sample of a dataset stores the same cameras.
    later = {"metadata.json": meta, "front_t0.jpg": jpeg(30, 40), "side_t-1.jpg": jpeg(5, 5), "side_t0.jpg": jpeg(5, 5)}
    write_shard(tmp_path / "shard_000000.tar", [("ep0__t000000", first), ("ep0__t000001", later)])
    sizes = _stored_camera_sizes(SimpleNamespace(dataset=str(tmp_path)))
    assert list(sizes) == ["side", "front"]
    assert sizes == {"side": [8, 6], "front": [12, 20]}


def test_a_camera_without_a_colour_image_in_the_first_sample_has_no_size(tmp_path: Path):
    meta = json.dumps({"camera_names": ["front", "depth_only"]}).encode()
    depth = {"metadata.json": meta, "front_t0.jpg": jpeg(4, 4), "depth_only_t0.png": b"not read"}
    write_shard(tmp_path / "shard_000000.tar", [("ep0__t000000", depth)])
    assert _stored_camera_sizes(SimpleNamespace(dataset=str(tmp_path))) == {"front": [4, 4], "depth_only": []}
