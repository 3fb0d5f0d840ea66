"""Policy inference latency: in process vs through the HTTP policy server, and batched vs one observation at a time.

    uv run python benchmarks/bench_policy_inference.py [--model config_presets/models/vla_diffusion_tiny.yaml]
        [--n 30] [--batch 8] [--image_hw 480 640]

Builds a run directory in a temporary folder for the model preset on a generated robotics dataset (2 cameras x 2
image offsets, window 1 past + 4 future; weights are freshly initialised: latency does not depend on them), then
measures, on raw observations of --image_hw camera frames:
  in_process   Policy.predict of one observation (preprocessing + backbone + all sampling steps + denormalisation);
  server       the same through PolicyServer / PolicyClient on 127.0.0.1 (encode, HTTP, decode);
  batched      Policy.predict of --batch observations, per observation.
Figures of merit (measured in the same run): the serving overhead server - in_process in ms (encoding, HTTP on
loopback and decoding of the observation's frames; it does not grow with the model) and the ratio server /
in_process, which shrinks as models grow; and in_process / batched-per-observation (the gain from batching).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")


def build_run(model_preset: str, root: str) -> str:
    """A run directory laid out as training writes it, with fresh weights."""
    import torch

    from vla_foundry.checkpoint import checkpoint_file, save_file
    from vla_foundry.data.robotics.processor import RoboticsProcessor, derive_robotics_data
    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics
    from vla_foundry.models import create_model
    from vla_foundry.params import derive_params
    from vla_foundry.params.parsing import parse_params, save_params
    from vla_foundry.params.train_experiment_params import TrainExperimentParams

    dataset = make_robotics(os.path.join(root, "data"), "lerobot", seed=0)
    params = parse_params(
        TrainExperimentParams,
        [
            "--model", f"include {model_preset}",
            "--data", "include config_presets/data/tiny_robotics_lerobot.yaml",
            "--data.dataset_manifest", f"[{dataset}]",
        ],
    )  # fmt: skip
    params = derive_params(dataclasses.replace(params, data=derive_robotics_data(params.data)))
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    save_params(params, os.path.join(run_dir, "config.yaml"))
    save_params(params.model, os.path.join(run_dir, "config_model.yaml"))
    RoboticsProcessor.from_data_params(params.data).save(run_dir)
    torch.manual_seed(0)
    save_file(create_model(params.model).state_dict(), checkpoint_file(run_dir, 1))
    save_file({"step": 0}, checkpoint_file(run_dir, 1, "trainer_state"))
    return run_dir


def timed(fn, n: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    import numpy as np
    import torch
    from flags import add_list_flag, list_value

    from vla_foundry.inference import Policy, PolicyClient, PolicyServer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="config_presets/models/vla_diffusion_tiny.yaml")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    add_list_flag(parser, "--image_hw", int, 'camera frame size "[height, width]"', default=[480, 640])
    args = parser.parse_args()
    args.image_hw = list_value(parser, args, "--image_hw")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    with tempfile.TemporaryDirectory(prefix="bench_policy_") as root:
        policy = Policy.from_run(build_run(args.model, root))
        rng = np.random.default_rng(0)

        def observation() -> dict:
            frames = {
                c: [rng.integers(0, 256, (*args.image_hw, 3), dtype=np.uint8) for _ in range(2)]
                for c in policy.camera_names
            }
            proprio = {
                n: rng.normal(size=(policy.config.past_lowdim_steps + 1, d))
                for n, d in policy.proprioception_fields.items()
            }
            return {"images": frames, "proprioception": proprio, "instruction": "move left"}

        obs = observation()
        batch = [observation() for _ in range(args.batch)]
        in_process = timed(lambda: policy.predict(obs, seed=0), args.n)
        batched = [t / args.batch for t in timed(lambda: policy.predict(batch, seed=0), max(3, args.n // args.batch))]
        with PolicyServer(policy, port=0) as server:
            client = PolicyClient(server.url)
            served = timed(lambda: client.predict(obs, seed=0), args.n)

    med = {
        name: statistics.median(v) * 1e3
        for name, v in (("in_process", in_process), ("server", served), ("batched", batched))
    }
    print(f"model {args.model}; camera frames {args.image_hw[0]}x{args.image_hw[1]}; n={args.n}")
    print(f"  in process          median {med['in_process']:.1f} ms per observation")
    print(f"  through the server  median {med['server']:.1f} ms per observation")
    print(f"  batched x{args.batch:<3}        median {med['batched']:.1f} ms per observation")
    megabytes = sum(f.nbytes for frames in obs["images"].values() for f in frames) / 1e6
    print(f"serving overhead = {med['server'] - med['in_process']:.1f} ms for {megabytes:.1f} MB of camera frames")
    print(f"server / in_process = {med['server'] / med['in_process']:.2f}")
    print(f"in_process / batched = {med['in_process'] / med['batched']:.2f}  (batching gain)")


if __name__ == "__main__":
    main()
