"""Run a policy on recorded samples of a robotics dataset, as a robot would call it: raw camera frames, the
proprioception history and the instruction go in; the denormalised chunk is printed next to the recorded actions.

    python -m vla_foundry.inference.sample_prediction --run_dir experiments/vla_quickstart \\
        --dataset examples/data/robotics_lerobot --num_samples 2
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class SamplePredictionParams:
    """`python -m vla_foundry.inference.sample_prediction`: a policy run and the dataset whose samples it acts on."""

    # Diffusion-policy run directory (local, s3:// or hf://).
    run_dir: str = ""
    # Robotics dataset directory or manifest.jsonl.
    dataset: str = ""
    # Samples predicted (the dataset's first ones).
    num_samples: int = 1
    # Seed of the diffusion noise.
    seed: int = 0

    def validate(self) -> None:
        for name in ("run_dir", "dataset"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} is required (see --help)")
        if self.num_samples < 1:
            raise ConfigError(f"num_samples={self.num_samples} must be >= 1")


def predict_samples(params: SamplePredictionParams) -> None:
    """Print each sample's predicted chunk, the recorded one and their MSE on valid rows."""
    from vla_foundry.data.manifest import dataset_paths
    from vla_foundry.inference.policy import Policy

    policy = Policy.from_run(params.run_dir, seed=params.seed)
    dataset_dir, _ = dataset_paths(params.dataset)
    np.set_printoptions(precision=3, suppress=True)
    for raw in first_samples(params.dataset, params.num_samples):
        obs, recorded, valid = raw_observation(raw, policy, dataset_dir)
        predicted = policy.predict(obs, seed=params.seed)
        mse = float(((predicted - recorded) ** 2)[valid].mean()) if valid.any() else float("nan")
        print(f"sample {raw['__key__']}: instruction {obs['instruction']!r}")
        print(f"  predicted ({predicted.shape[0]} steps x {predicted.shape[1]}):\n{predicted}")
        print(f"  recorded:\n{recorded}")
        print(f"  MSE on valid rows: {mse:.5f}")


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import run_command

    return run_command(
        SamplePredictionParams,
        predict_samples,
        argv,
        prog="python -m vla_foundry.inference.sample_prediction",
        doc=__doc__,
        errors=(FileNotFoundError, ValueError),
    )


if __name__ == "__main__":
    raise SystemExit(main())
