"""Learning from scripted demonstrations: demos -> shards -> a VLA trained for a fixed budget -> success rate.

    uv run python benchmarks/bench_sim_learning.py [--demos 50] [--demo_workers 2] [--demo_image_size 240 320]
        [--model config_presets/models/vla_diffusion_tiny.yaml] [--hparams config_presets/hparams/cpu_tiny.yaml]
        [--total_train_samples 20000] [--eval_episodes 50] [--eval_envs 2] [--max_steps 400] [--work_dir DIR]

1. `make_sim_demos` records --demos scripted aloha_transfer_cube episodes (LeRobot v3.0);
2. the Ray preprocessing job cuts them into shards (1 past + 14 future steps, images resized to the model's size);
3. `vla_foundry/main.py` trains the --model preset for --total_train_samples samples (the budget);
4. `eval.sim` runs the trained policy for --eval_episodes episodes (seeds 1000 + k, never seen in the demos).

Prints the budget, the wall time of each stage and, last, `sim success rate X` (X in [0, 1]). The reference to
beat: LeRobot's ACT on AlohaTransferCube, 87.6% over 500 episodes (trained on 50 human demonstrations).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

PRESETS = "config_presets"


def main() -> None:
    from flags import add_list_flag, list_value

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demos", type=int, default=50)
    parser.add_argument("--demo_workers", type=int, default=2)
    add_list_flag(parser, "--demo_image_size", int, 'demo render size "[height, width]"', default=[240, 320])
    parser.add_argument("--image_size", type=int, default=32, help="training image size (the model's)")
    parser.add_argument("--model", default=f"{PRESETS}/models/vla_diffusion_tiny.yaml")
    parser.add_argument("--hparams", default=f"{PRESETS}/hparams/cpu_tiny.yaml")
    parser.add_argument("--total_train_samples", type=int, default=20000)
    parser.add_argument("--eval_episodes", type=int, default=50)
    parser.add_argument("--eval_envs", type=int, default=2)
    parser.add_argument("--max_steps", type=int, default=400)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--work_dir", default=None)
    args = parser.parse_args()
    args.demo_image_size = list_value(parser, args, "--demo_image_size")

    from vla_foundry.data.preprocessing.preprocess_robotics_to_tar import main as preprocess
    from vla_foundry.eval.make_sim_demos import SimDemosParams, make_sim_demos
    from vla_foundry.eval.sim import evaluate, format_summary
    from vla_foundry.main import main as train
    from vla_foundry.params.eval_params import SimEvalParams

    work = args.work_dir or tempfile.mkdtemp(prefix="bench_sim_learning_")
    print(
        f"budget: {args.demos} demos at {args.demo_image_size}, model {os.path.basename(args.model)}, "
        f"{args.total_train_samples} training samples ({os.path.basename(args.hparams)}), "
        f"{args.eval_episodes} evaluation episodes of at most {args.max_steps} steps; work dir {work}",
        flush=True,
    )
    t = time.perf_counter()
    demos = make_sim_demos(
        SimDemosParams(
            env="aloha_transfer_cube",
            episodes=args.demos,
            output_dir=os.path.join(work, "demos"),
            num_workers=args.demo_workers,
            image_size=tuple(args.demo_image_size),
        )
    )
    print(f"demos: {demos['episodes']} kept of {demos['attempts']} in {time.perf_counter() - t:.0f} s", flush=True)

    t = time.perf_counter()
    code = preprocess([
        "--config_path", f"{PRESETS}/preprocessing/lerobot_1past_14future.yaml",
        "--source_episodes", f"[{demos['output_dir']}]", "--output_dir", os.path.join(work, "shards"),
        "--image_size", f"[{args.image_size}, {args.image_size}]", "--show_progress", "False",
    ])  # fmt: skip
    assert code == 0, "preprocessing failed"
    print(f"preprocessing: {time.perf_counter() - t:.0f} s", flush=True)

    t = time.perf_counter()
    code = train([
        "--model", f"include {args.model}", "--data.type", "robotics",
        "--data.dataset_manifest", f"[{os.path.join(work, 'shards', 'shards')}]",
        "--data.dataset_weighting", "[1.0]", "--data.dataset_modality", "[robotics]",
        "--data.action_fields", "[action]", "--data.proprioception_fields", "[observation.state]",
        "--hparams", f"include {args.hparams}", "--total_train_samples", str(args.total_train_samples),
        "--save_path", work, "--name", "vla", "--wandb", "False",
    ])  # fmt: skip
    assert code == 0, "training failed"
    print(f"training: {time.perf_counter() - t:.0f} s", flush=True)

    t = time.perf_counter()
    out = evaluate(
        SimEvalParams(
            env="aloha_transfer_cube",
            episodes=args.eval_episodes,
            output_dir=os.path.join(work, "eval"),
            run_dir=os.path.join(work, "vla"),
            num_envs=args.eval_envs,
            seed=1000,
            max_steps=args.max_steps,
            image_size=tuple(args.demo_image_size),  # the demos' view: the render size sets the field of view
            videos=2,
            device=args.device,
        )
    )
    print(f"evaluation: {time.perf_counter() - t:.0f} s", flush=True)
    print(format_summary("aloha_transfer_cube", out["summary"]))
    # gym-aloha's transfer-cube stages: 1 touched by the right gripper, 2 lifted, 3 touched by the left gripper
    # too, 4 transferred (success); a contact alone is not a transfer.
    print(f"episodes per highest reward stage reached: {out['summary']['max_reward_counts']}")
    print(f"sim success rate {out['summary']['success_rate']:.3f}")


if __name__ == "__main__":
    main()
