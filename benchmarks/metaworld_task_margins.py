"""How much room a Meta-World task leaves a learned policy: the scripted expert's margin and the goal's pixels.

    MUJOCO_GL=egl uv run python benchmarks/metaworld_task_margins.py [--tasks reach-v3 push-v3]
        [--seeds 100 110] [--steps 150] [--image_size 64]

For each task and seed the scripted expert acts for --steps steps (on past its first success, as a policy that
hovers at its goal would) and the script prints:
  - the step of the first success and whether the last step still succeeds;
  - `info["obj_to_target"]` at the last step: the distance Meta-World's success test compares with its threshold
    (for reach-v3 the tool centre point to the goal, success below 0.05 m; for push-v3 the puck to the goal);
  - the hand position of the observation (`observation.state`, what the expert steers to the goal) minus the tool
    centre point: reach-v3's expert puts the hand, not the tool centre point, on the goal;
  - the pixels of the `corner2` frame at --image_size that the goal marker covers (the frame rendered with and
    without the marker, as the pixel policies see it): what a policy without `observation.environment_state` has
    to find the goal from.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def goal_pixels(env: object) -> int:
    """Pixels of the env's current camera frame that change when the goal marker is hidden (-1: no marker)."""
    import mujoco

    inner = env.unwrapped.env
    site = mujoco.mj_name2id(inner.model, mujoco.mjtObj.mjOBJ_SITE, "goal")
    if site < 0:
        return -1
    shown = env.unwrapped.render().astype(int)
    alpha = inner.model.site_rgba[site, 3]
    inner.model.site_rgba[site, 3] = 0.0
    hidden = env.unwrapped.render().astype(int)
    inner.model.site_rgba[site, 3] = alpha
    return int((np.abs(shown - hidden).sum(-1) > 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["reach-v3", "push-v3", "pick-place-v3"])
    parser.add_argument("--seeds", nargs=2, type=int, default=[100, 110], help="first and one-past-last seed")
    parser.add_argument("--steps", type=int, default=150, help="expert steps per episode")
    parser.add_argument("--image_size", type=int, default=64, help="the corner2 frame's square size")
    args = parser.parse_args()

    from vla_foundry.eval.metaworld import expert_policy, make_metaworld_env

    for task in args.tasks:
        env = make_metaworld_env(task, (), (args.image_size, args.image_size), args.steps + 1)
        # The frame is rendered once per scene, from a second env of the task reset to the same seed.
        camera_env = make_metaworld_env(task, ("corner2",), (args.image_size, args.image_size), 1)
        expert = expert_policy(task)
        print(f"| {task} seed | first success | success at the end | obj_to_target (m) | hand - tcp (m) | goal px |")
        print("|---|---|---|---|---|---|")
        distances, pixels = [], []
        for seed in range(*args.seeds):
            obs, _ = env.reset(seed=seed)
            camera_env.reset(seed=seed)
            pixels.append(goal_pixels(camera_env))
            first, info = None, {}
            for t in range(args.steps):
                obs, _, _, _, info = env.step(expert.get_action(obs["environment_state"]))
                if info["success"] and first is None:
                    first = t + 1
            offset = obs["environment_state"][:3] - env.unwrapped.env.tcp_center
            distances.append(float(info["obj_to_target"]))
            print(
                f"| {seed} | {first} | {bool(info['success'])} | {info['obj_to_target']:.4f} | "
                f"{np.round(offset, 4).tolist()} | {pixels[-1]} |"
            )
        env.close()
        camera_env.close()
        print(
            f"{task}: obj_to_target at the end {min(distances):.4f}-{max(distances):.4f} m, goal marker "
            f"{min(pixels)}-{max(pixels)} px of {args.image_size}x{args.image_size}\n"
        )


if __name__ == "__main__":
    main()
