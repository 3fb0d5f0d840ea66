"""Run a policy on recorded samples of a robotics dataset, as a robot would call it: raw camera frames, the
proprioception history and the instruction go in; the denormalised chunk is printed next to the recorded actions.

    python -m vla_foundry.inference.sample_prediction --run_dir experiments/vla_quickstart \\
        --dataset examples/data/robotics_lerobot --num_samples 2
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from vla_foundry.params.base_params import ConfigError


def raw_observation(raw: dict[str, Any], policy: Any, dataset_dir: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """A stored tar sample -> (observation for `Policy.predict`, recorded actions (future + 1, A), valid rows).

    The observation holds what a robot has at the anchor step: decoded camera frames (as stored), the
    proprioception rows up to the anchor, and the first original instruction.
    """
    from vla_foundry.data.processors.images import decode_image

    cfg = policy.config
    stored_past = policy.processor.layout(dataset_dir).past_lowdim_steps
    npz = np.load(io.BytesIO(raw["lowdim.npz"]), allow_pickle=False)
    images = {
        cam: [decode_image(raw[f"{cam}_t{offset}.jpg"]) for offset in cfg.image_indices] for cam in cfg.camera_names
    }
    lo = stored_past - cfg.past_lowdim_steps
    proprio = {}
    for name in cfg.proprioception_fields:
        arr = np.asarray(npz[name], dtype=np.float64)
        proprio[name] = (arr[:, None] if arr.ndim == 1 else arr)[lo : stored_past + 1]
    rows = slice(stored_past, stored_past + cfg.future_lowdim_steps + 1)
    actions = np.concatenate(
        [np.asarray(npz[n], dtype=np.float64).reshape(len(npz[n]), -1)[rows] for n in cfg.action_fields], axis=-1
    )
    instructions = json.loads(raw.get("language_instructions.json", b"{}"))
    instruction = (instructions.get("original") or [""])[0]
    observation = {"images": images, "proprioception": proprio, "instruction": instruction}
    return observation, actions, np.asarray(npz["future_mask"], dtype=bool)[rows]


def iter_raw_samples(dataset: str) -> Iterator[dict[str, Any]]:
    """The stored samples of a dataset (its directory or manifest.jsonl, local or s3://), shard by shard in manifest
    order, as raw tar members."""
    from vla_foundry.data.manifest import dataset_paths, read_manifest
    from vla_foundry.data.tar_stream import iter_tar_samples

    _, manifest_path = dataset_paths(dataset)
    manifest = read_manifest(manifest_path)
    for shard in manifest.shards:
        yield from iter_tar_samples(manifest.shard_url(shard.name))


def first_samples(dataset: str, n: int) -> list[dict[str, Any]]:
    """The first `n` stored samples of a dataset (fewer when it holds fewer)."""
    return list(itertools.islice(iter_raw_samples(dataset), n))


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.data.manifest import dataset_paths
    from vla_foundry.inference.policy import Policy

    parser = argparse.ArgumentParser(
        prog="python -m vla_foundry.inference.sample_prediction", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--run_dir", required=True, help="diffusion-policy run directory (local or s3://)")
    parser.add_argument("--dataset", required=True, help="robotics dataset directory or manifest.jsonl")
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        policy = Policy.from_run(args.run_dir, seed=args.seed)
        dataset_dir, _ = dataset_paths(args.dataset)
        np.set_printoptions(precision=3, suppress=True)
        for raw in first_samples(args.dataset, args.num_samples):
            obs, recorded, valid = raw_observation(raw, policy, dataset_dir)
            predicted = policy.predict(obs, seed=args.seed)
            mse = float(((predicted - recorded) ** 2)[valid].mean()) if valid.any() else float("nan")
            print(f"sample {raw['__key__']}: instruction {obs['instruction']!r}")
            print(f"  predicted ({predicted.shape[0]} steps x {predicted.shape[1]}):\n{predicted}")
            print(f"  recorded:\n{recorded}")
            print(f"  MSE on valid rows: {mse:.5f}")
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
