"""Generate tiny deterministic datasets of every modality (docs/formats.md) for tests, quickstarts and benchmarks.

    python -m vla_foundry.data.scripts.make_tiny_datasets --output_dir examples/data

writes text/, text_untokenized/, image_caption/, robotics_lerobot/ (LeRobot field names: observation.state,
action) and robotics_spartan/ (Spartan field names: robot__actual__poses__left::panda__xyz, ...). The same seed gives
byte-identical files.

The robotics data is learnable: a point moves in the plane; the commanded action is the next state, which is the
current state plus a step along the direction the instruction names ("move left", ...). Camera images draw the
point, so actions are a deterministic function of proprioception (or images) and the instruction.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import sys

import numpy as np
import yaml

from vla_foundry import storage
from vla_foundry.data.processors.tokenizers import ByteTokenizer
from vla_foundry.data.robotics.stats import compute_field_stats
from vla_foundry.data.tar_stream import write_tar_shard

DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, 1.0), "down": (0.0, -1.0)}
STEP = 0.1
WORDS = [
    "the",
    "a",
    "robot",
    "arm",
    "picks",
    "places",
    "moves",
    "red",
    "green",
    "blue",
    "cube",
    "bowl",
    "bin",
    "plate",
    "slowly",
    "quickly",
    "onto",
    "into",
]
COLORS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "bar", "dot")


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def write_dataset(out_dir: str, shards: list[list[tuple[str, dict[str, bytes]]]], name_format: str) -> list[str]:
    """Write shards and manifest.jsonl; returns the shard names."""
    names = []
    lines = []
    for i, samples in enumerate(shards):
        name = name_format.format(i)
        write_tar_shard(storage.join(out_dir, f"{name}.tar"), samples)
        names.append(name)
        lines.append(json.dumps({"shard": name, "num_sequences": len(samples)}))
    storage.write_text(storage.join(out_dir, "manifest.jsonl"), "\n".join(lines) + "\n")
    return names


def _chunk(samples: list, num_shards: int) -> list[list]:
    per = -(-len(samples) // num_shards)
    return [samples[i * per : (i + 1) * per] for i in range(num_shards)]


def _sentence(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(WORDS[int(i)] for i in rng.integers(len(WORDS), size=n_words)) + "."


def make_text(out_dir: str, num_shards: int = 2, samples_per_shard: int = 16, seed: int = 0) -> str:
    """Pre-tokenized text (byte tokenizer ids + EOS) as `KEY.json.gz`."""
    rng = np.random.default_rng([seed, 1])
    tok = ByteTokenizer()
    samples = []
    for i in range(num_shards * samples_per_shard):
        text = " ".join(_sentence(rng, int(rng.integers(4, 10))) for _ in range(int(rng.integers(2, 5))))
        ids = tok.encode(text, add_eos=True)
        samples.append((f"doc{i:05d}", {"json.gz": gzip.compress(json.dumps(ids).encode(), mtime=0)}))
    write_dataset(out_dir, _chunk(samples, num_shards), "shard_{:06d}")
    return out_dir


def make_text_untokenized(out_dir: str, num_shards: int = 2, samples_per_shard: int = 16, seed: int = 0) -> str:
    rng = np.random.default_rng([seed, 2])
    samples = []
    for i in range(num_shards * samples_per_shard):
        text = " ".join(_sentence(rng, int(rng.integers(4, 10))) for _ in range(int(rng.integers(1, 4))))
        samples.append((f"doc{i:05d}", {"json": json.dumps({"text": text}).encode()}))
    write_dataset(out_dir, _chunk(samples, num_shards), "shard-{:04d}")
    return out_dir


def make_image_caption(
    out_dir: str, num_shards: int = 2, samples_per_shard: int = 16, seed: int = 0, image_size: int = 32
) -> str:
    """Coloured shapes on a grey background, captioned with their colour and shape."""
    rng = np.random.default_rng([seed, 3])
    samples = []
    for i in range(num_shards * samples_per_shard):
        color = list(COLORS)[int(rng.integers(len(COLORS)))]
        shape = SHAPES[int(rng.integers(len(SHAPES)))]
        img = np.full((image_size, image_size, 3), 128, dtype=np.uint8)
        c = image_size // 2
        r = image_size // 4
        if shape == "square":
            img[c - r : c + r, c - r : c + r] = COLORS[color]
        elif shape == "bar":
            img[c - r // 2 : c + r // 2, 2:-2] = COLORS[color]
        else:
            yy, xx = np.mgrid[:image_size, :image_size]
            img[(yy - c) ** 2 + (xx - c) ** 2 <= r * r] = COLORS[color]
        caption = f"a {color} {shape} on a grey background"
        samples.append(
            (f"img{i:05d}", {"jpg": encode_jpeg(img), "txt": caption.encode(), "json": b'{"source": "tiny"}'})
        )
    write_dataset(out_dir, _chunk(samples, num_shards), "{:08d}")
    return out_dir


def textured_background(size: int, seed: int) -> np.ndarray:
    """A photo-like background (smooth colour blobs plus grain) whose JPEGs cost about as much to decode as photos."""
    from PIL import Image

    rng = np.random.default_rng([seed, 99])
    coarse = rng.integers(0, 256, size=(max(2, size // 16), max(2, size // 16), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-24, 25, size=(size, size, 3), dtype=np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def render_point(
    xy: np.ndarray, size: int, color: tuple[int, int, int], flip: bool = False, background: np.ndarray | None = None
) -> np.ndarray:
    """A camera view: a coloured point at position xy (in [-1, 1]^2) on a dark (or the given) background."""
    img = np.full((size, size, 3), 30, dtype=np.uint8) if background is None else background.copy()
    x, y = np.clip(xy, -1, 1)
    col = int((x + 1) / 2 * (size - 1))
    row = int((1 - y) / 2 * (size - 1))
    if flip:
        col = size - 1 - col
    r = max(1, size // 16)
    img[max(0, row - r) : row + r + 1, max(0, col - r) : col + r + 1] = color
    return img


def make_robotics(
    out_dir: str,
    style: str = "lerobot",
    num_episodes: int = 4,
    episode_length: int = 6,
    num_shards: int = 2,
    past: int = 1,
    future: int = 4,
    image_indices: tuple[int, ...] = (-1, 0),
    image_size: int = 32,
    seed: int = 0,
    jpeg_quality: int = 90,
    textured: bool = False,
) -> str:
    """Robotics windows in the VLA Foundry layout: lowdim.npz, camera JPEGs, metadata, language instructions.

    style "lerobot": fields observation.state [4] (x, y, vx, vy) and action [4]; cameras front, wrist.
    style "spartan": fields robot__actual__poses__left::panda__xyz [3], robot__actual__poses__left::panda__rot_6d
    [6], robot__actual__grippers__left::panda_hand [1] and their robot__desired__* action counterparts; cameras
    scene_left_0, wrist_left. `textured` draws photo-like backgrounds (for decode benchmarks) instead of flat ones.
    """
    if style not in ("lerobot", "spartan"):
        raise ValueError(f"style must be lerobot or spartan, got {style!r}")
    rng = np.random.default_rng([seed, 4, 0 if style == "lerobot" else 1])
    cameras = ["front", "wrist"] if style == "lerobot" else ["scene_left_0", "wrist_left"]
    t_window = past + 1 + future
    samples: list[tuple[str, dict[str, bytes]]] = []
    field_windows: dict[str, list[np.ndarray]] = {}
    valid_rows: list[np.ndarray] = []
    for ep in range(num_episodes):
        direction_name = list(DIRECTIONS)[ep % len(DIRECTIONS)]
        d = np.array(DIRECTIONS[direction_name])
        xy = np.zeros((episode_length + 1, 2))
        xy[0] = rng.uniform(-0.5, 0.5, size=2)
        for t in range(episode_length):
            xy[t + 1] = xy[t] + STEP * d
        state_xy = xy[:episode_length]  # (L, 2)
        action_xy = xy[1 : episode_length + 1]  # next position: (L, 2)
        fields = _episode_fields(style, state_xy, action_xy, d)
        instructions = {
            "original": [f"move {direction_name}"],
            "randomized": [f"go {direction_name}", f"push the point {direction_name}"],
            "verbose": [f"move the point one step to the {direction_name} at every timestep"],
        }
        for t in range(episode_length):
            rows = np.arange(t - past, t + future + 1)
            clamped = np.clip(rows, 0, episode_length - 1)
            inside = (rows >= 0) & (rows < episode_length)
            past_mask = inside & (rows < t)
            future_mask = inside & (rows >= t)
            npz = {name: arr[clamped].astype(np.float32) for name, arr in fields.items()}
            members: dict[str, bytes] = {}
            for cam_i, cam in enumerate(cameras):
                for off in image_indices:
                    frame = int(np.clip(t + off, 0, episode_length - 1))
                    color = (240, 200, 40) if cam_i == 0 else (60, 220, 240)
                    background = textured_background(image_size, seed * 1000 + ep * 10 + cam_i) if textured else None
                    img = render_point(state_xy[frame], image_size, color, flip=cam_i == 1, background=background)
                    members[f"{cam}_t{off}.jpg"] = encode_jpeg(img, jpeg_quality)
            buf = io.BytesIO()
            np.savez_compressed(buf, past_mask=past_mask, future_mask=future_mask, **npz)
            members["lowdim.npz"] = buf.getvalue()
            metadata = {
                "episode_id": f"{style}_episode_{ep:04d}",
                "sample_id": f"ep{ep:04d}_t{t:04d}",
                "anchor_timestep": t,
                "anchor_relative_idx": past,
                "camera_names": cameras,
                "image_timesteps": [int(np.clip(t + o, 0, episode_length - 1)) for o in image_indices],
                "original_episode_length": episode_length,
                "past_padding": int(max(0, past - t)),
                "future_padding": int(max(0, t + future - (episode_length - 1))),
                "is_padded": bool(not inside.all()),
            }
            members["metadata.json"] = json.dumps(metadata).encode()
            members["language_instructions.json"] = json.dumps(instructions).encode()
            samples.append((f"ep{ep:04d}_t{t:04d}", members))
            for name, arr in npz.items():
                field_windows.setdefault(name, []).append(arr)
            valid_rows.append(past_mask | future_mask)
    order = rng.permutation(len(samples))
    samples = [samples[i] for i in order]
    write_dataset(out_dir, _chunk(samples, num_shards), "shard_{:06d}")

    valid = np.stack(valid_rows)  # (N, T)
    stats = {name: compute_field_stats(np.stack(w), valid) for name, w in field_windows.items()}
    storage.write_text(storage.join(out_dir, "stats.json"), json.dumps(stats))
    config = {
        "type": style,
        "camera_names": cameras,
        "image_indices": list(image_indices),
        "past_lowdim_steps": past,
        "future_lowdim_steps": future,
        "stride": 1,
        "max_past_padding": past,
        "max_future_padding": future,
        "padding_strategy": "edge",
        "image_size": [image_size, image_size],
        "resize_mode": "center_crop",
        "jpeg_quality": jpeg_quality,
        "samples_per_shard": -(-len(samples) // num_shards),
        "lowdim_fields": sorted(field_windows),
    }
    storage.write_text(storage.join(out_dir, "preprocessing_config.yaml"), yaml.safe_dump(config, sort_keys=False))
    metadata = {
        "command": "python -m vla_foundry.data.scripts.make_tiny_datasets",
        "generator": "vla_foundry tiny dataset generator",
        "seed": seed,
        "source_paths": [],
        "num_episodes": num_episodes,
        "samples": {"potential": len(samples), "written": len(samples), "dropped": {}},
        "window_length": t_window,
    }
    storage.write_text(storage.join(out_dir, "processing_metadata.json"), json.dumps(metadata, indent=2))
    return out_dir


def _episode_fields(style: str, state_xy: np.ndarray, action_xy: np.ndarray, d: np.ndarray) -> dict[str, np.ndarray]:
    n = len(state_xy)
    vel = np.repeat(d[None] * STEP, n, axis=0)
    if style == "lerobot":
        return {
            "observation.state": np.concatenate([state_xy, vel], axis=1),
            "action": np.concatenate([action_xy, vel], axis=1),
        }
    z = np.full((n, 1), 0.3)
    rot = np.repeat(np.array([[1.0, 0, 0, 0, 1.0, 0]]), n, axis=0)
    gripper = np.full((n, 1), 0.04)
    return {
        "robot__actual__poses__left::panda__xyz": np.concatenate([state_xy, z], axis=1),
        "robot__actual__poses__left::panda__rot_6d": rot,
        "robot__actual__grippers__left::panda_hand": gripper,
        "robot__desired__poses__left::panda__xyz": np.concatenate([action_xy, z], axis=1),
        "robot__desired__poses__left::panda__rot_6d": rot,
        "robot__desired__grippers__left::panda_hand": gripper,
    }


def make_all(output_dir: str, seed: int = 0) -> dict[str, str]:
    """Every tiny dataset under `output_dir`; returns {name: directory}."""
    out = {
        "text": make_text(storage.join(output_dir, "text"), seed=seed),
        "text_untokenized": make_text_untokenized(storage.join(output_dir, "text_untokenized"), seed=seed),
        "image_caption": make_image_caption(storage.join(output_dir, "image_caption"), seed=seed),
        "robotics_lerobot": make_robotics(storage.join(output_dir, "robotics_lerobot"), "lerobot", seed=seed),
        "robotics_spartan": make_robotics(storage.join(output_dir, "robotics_spartan"), "spartan", seed=seed),
    }
    return out


@dataclasses.dataclass(frozen=True)
class TinyDatasetsParams:
    """`python -m vla_foundry.data.scripts.make_tiny_datasets`: where the tiny datasets go."""

    # Where to write (local path or s3://).
    output_dir: str = "examples/data"
    # Seed of the generated contents.
    seed: int = 0


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import run_command

    return run_command(
        TinyDatasetsParams, _run, argv, prog="python -m vla_foundry.data.scripts.make_tiny_datasets", doc=__doc__
    )


def _run(params: TinyDatasetsParams) -> None:
    for name, path in make_all(params.output_dir, params.seed).items():
        n = sum(
            json.loads(line)["num_sequences"]
            for line in storage.read_text(storage.join(path, "manifest.jsonl")).split("\n")
            if line
        )
        print(f"{name}: {n} samples -> {path}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
