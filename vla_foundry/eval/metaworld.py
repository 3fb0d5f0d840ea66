"""Meta-World v3 tasks as simulated environments: one env per task, suites of tasks, scripted experts.

    spec = get_sim_env("metaworld/drawer-open-v3")
    env = spec.make(("corner2",), (96, 96), 500)       # or cameras=() for a state-only policy
    names = expand_sim_envs("metaworld_mt10")          # the ten tasks of the suite

Observations follow LeRobot's Meta-World convention: the `corner2` camera shown upright (Meta-World renders it
upside down), `agent_pos` = the first 4 values of Meta-World's observation (end-effector xyz + gripper opening),
and `environment_state` = the whole 39-value observation (hand, gripper, object poses, previous frame's values and
the goal) for policies without a camera. Actions are 4 values in [-1, 1] (end-effector xyz motion + gripper).
Success is Meta-World's own `info["success"]`, and the episode ends at its first success.

Episodes are reproducible: episode seed s draws the object and goal positions from a generator seeded with s
(Meta-World's seeded task randomisation), so demonstrations and evaluation use disjoint seeds by choosing them.

Rendering is the cost of pixel policies on a CPU, so the renderer is built once per env at the requested size,
without shadows, reflections or multisampling (`vla_foundry.eval.rendering`). Demonstrations and evaluation both
render through this class, so training and test images match.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

# One instruction per Meta-World v3 task: what a person would tell the robot. Tasks that share a scene (drawer
# open / close, window open / close, door lock / unlock, faucet open / close, ...) differ only by this text.
TASK_INSTRUCTIONS: dict[str, str] = {
    "assembly-v3": "put the ring on the peg",
    "basketball-v3": "dunk the ball into the basket",
    "bin-picking-v3": "move the cube from one bin to the other",
    "box-close-v3": "put the lid on the box",
    "button-press-topdown-v3": "press the button from the top",
    "button-press-topdown-wall-v3": "press the button behind the wall from the top",
    "button-press-v3": "press the button",
    "button-press-wall-v3": "press the button behind the wall",
    "coffee-button-v3": "press the button on the coffee machine",
    "coffee-pull-v3": "pull the mug away from the coffee machine",
    "coffee-push-v3": "push the mug under the coffee machine",
    "dial-turn-v3": "turn the dial",
    "disassemble-v3": "take the ring off the peg",
    "door-close-v3": "close the door",
    "door-lock-v3": "lock the door",
    "door-open-v3": "open the door",
    "door-unlock-v3": "unlock the door",
    "drawer-close-v3": "close the drawer",
    "drawer-open-v3": "open the drawer",
    "faucet-close-v3": "turn the faucet off",
    "faucet-open-v3": "turn the faucet on",
    "hammer-v3": "hammer the nail into the wall",
    "hand-insert-v3": "put the cube into the hole",
    "handle-press-side-v3": "press the handle down from the side",
    "handle-press-v3": "press the handle down",
    "handle-pull-side-v3": "pull the handle up from the side",
    "handle-pull-v3": "pull the handle up",
    "lever-pull-v3": "pull the lever up",
    "peg-insert-side-v3": "insert the peg into the hole from the side",
    "peg-unplug-side-v3": "unplug the peg from the side",
    "pick-out-of-hole-v3": "pick the peg out of the hole",
    "pick-place-v3": "pick up the puck and place it at the goal",
    "pick-place-wall-v3": "pick up the puck and place it at the goal behind the wall",
    "plate-slide-back-side-v3": "slide the plate back into the cabinet from the side",
    "plate-slide-back-v3": "slide the plate back into the cabinet",
    "plate-slide-side-v3": "slide the plate into the goal from the side",
    "plate-slide-v3": "slide the plate into the goal",
    "push-back-v3": "push the puck back to the goal",
    "push-v3": "push the puck to the goal",
    "push-wall-v3": "push the puck to the goal behind the wall",
    "reach-v3": "reach the goal position",
    "reach-wall-v3": "reach the goal position behind the wall",
    "shelf-place-v3": "place the puck on the shelf",
    "soccer-v3": "kick the ball into the goal",
    "stick-pull-v3": "pull the bottle with the stick",
    "stick-push-v3": "push the bottle with the stick",
    "sweep-into-v3": "sweep the puck into the hole",
    "sweep-v3": "sweep the puck off the table",
    "window-close-v3": "close the window",
    "window-open-v3": "open the window",
}

MT10 = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

# The difficulty groups LeRobot reports Meta-World by (from Seo et al., "Masked World Models", 2022).
DIFFICULTY: dict[str, tuple[str, ...]] = {
    "easy": (
        "button-press-v3",
        "button-press-topdown-v3",
        "button-press-topdown-wall-v3",
        "button-press-wall-v3",
        "coffee-button-v3",
        "dial-turn-v3",
        "door-close-v3",
        "door-lock-v3",
        "door-open-v3",
        "door-unlock-v3",
        "drawer-close-v3",
        "drawer-open-v3",
        "faucet-close-v3",
        "faucet-open-v3",
        "handle-press-v3",
        "handle-press-side-v3",
        "handle-pull-v3",
        "handle-pull-side-v3",
        "lever-pull-v3",
        "plate-slide-v3",
        "plate-slide-back-v3",
        "plate-slide-back-side-v3",
        "plate-slide-side-v3",
        "reach-v3",
        "reach-wall-v3",
        "window-close-v3",
        "window-open-v3",
        "peg-unplug-side-v3",
    ),
    "medium": (
        "basketball-v3",
        "bin-picking-v3",
        "box-close-v3",
        "coffee-pull-v3",
        "coffee-push-v3",
        "hammer-v3",
        "peg-insert-side-v3",
        "push-wall-v3",
        "soccer-v3",
        "sweep-v3",
        "sweep-into-v3",
    ),
    "hard": ("assembly-v3", "hand-insert-v3", "pick-out-of-hole-v3", "pick-place-v3", "push-v3", "push-back-v3"),
    "very_hard": ("shelf-place-v3", "disassemble-v3", "stick-pull-v3", "stick-push-v3", "pick-place-wall-v3"),
}

SUITES: dict[str, tuple[str, ...]] = {
    "mt10": MT10,
    "mt50": tuple(sorted(TASK_INSTRUCTIONS)),
    **DIFFICULTY,
}

CAMERAS = ("corner2", "corner", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
STATE_DIM = 4  # end-effector xyz + gripper opening
ENV_STATE_DIM = 39  # Meta-World's whole observation
ACTION_DIM = 4
MAX_STEPS = 500  # Meta-World's own episode limit
FPS = 80  # Meta-World steps at 80 Hz (5 MuJoCo steps of 2.5 ms)
ENV_STATE_FIELD = "observation.environment_state"


def _metaworld() -> Any:
    try:
        import metaworld
    except ImportError as e:
        raise ImportError(
            f"Meta-World environments need the metaworld package ({e}); install it with `uv sync` "
            "(it is a dependency of vla_foundry)"
        ) from None
    return metaworld


def task_class(task: str) -> type:
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    _metaworld()
    return ALL_V3_ENVIRONMENTS[task]


def expert_policy(task: str) -> Any:
    """Meta-World's scripted expert for `task` (e.g. SawyerDrawerOpenV3Policy): acts on the 39-value observation."""
    from metaworld.policies import ENV_POLICY_MAP

    return ENV_POLICY_MAP[task]()


def make_metaworld_env(task: str, cameras: tuple[str, ...], image_size: tuple[int, int], max_steps: int) -> Any:
    """The gymnasium env of Meta-World task `task` rendering `cameras` at `image_size` (H, W), `max_steps` long."""
    import gymnasium as gym

    unknown = [c for c in cameras if c not in CAMERAS]
    if unknown:
        raise ValueError(f"unknown Meta-World camera(s) {unknown}; valid: {list(CAMERAS)}")
    return _env_class(gym)(task, tuple(cameras), tuple(image_size), max_steps)


_ENV_CLASS: list[type] = []


def _env_class(gym: Any) -> type:
    if _ENV_CLASS:
        return _ENV_CLASS[0]

    class _MetaWorldEnv(gym.Env):
        metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": FPS}

        def __init__(self, task: str, cameras: tuple[str, ...], image_size: tuple[int, int], max_steps: int):
            metaworld = _metaworld()
            from metaworld.env_dict import ALL_V3_ENVIRONMENTS

            self.task, self.cameras, self.image_size, self.max_steps = task, cameras, image_size, max_steps
            self.env = ALL_V3_ENVIRONMENTS[task]()
            # A task fixes the observation layout (goal observable, as in Meta-World's MT benchmarks); its
            # object/goal positions are then redrawn from the episode seed at every reset.
            self.env.set_task(metaworld.MT1(task, seed=0).train_tasks[0])
            self.env._freeze_rand_vec = False
            self.env.seeded_rand_vec = True
            # Episodes are cut at `max_steps` here; Meta-World's own limit would raise when a vector env keeps
            # stepping an env whose last episode has ended.
            self.env.max_path_length = 1 << 62
            h, w = image_size
            pixels = {c: gym.spaces.Box(0, 255, (h, w, 3), np.uint8) for c in cameras}
            self.observation_space = gym.spaces.Dict(
                {
                    "pixels": gym.spaces.Dict(pixels),
                    "agent_pos": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float64),
                    "environment_state": gym.spaces.Box(-np.inf, np.inf, (ENV_STATE_DIM,), np.float64),
                }
            )
            self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
            self._renderer: Any = None
            self._steps = 0

        # ---- rendering -------------------------------------------------------------------------------------------

        def _render(self) -> dict[str, np.ndarray]:
            if not self.cameras:
                return {}
            import mujoco

            from vla_foundry.eval.rendering import light_offscreen, no_shadows_or_reflections

            if self._renderer is None:
                h, w = self.image_size
                light_offscreen(self.env.model, h, w)
                self._renderer = mujoco.Renderer(self.env.model, h, w)
            out = {}
            for cam in self.cameras:
                self._renderer.update_scene(self.env.data, camera=cam)
                no_shadows_or_reflections(self._renderer.scene)
                # Meta-World's corner cameras look at the table upside down: turn the image upright.
                out[cam] = np.ascontiguousarray(self._renderer.render()[::-1, ::-1])
            return out

        def render(self) -> np.ndarray | None:
            frames = self._render()
            return next(iter(frames.values())) if frames else None

        def _observation(self, raw: np.ndarray) -> dict[str, Any]:
            raw = np.asarray(raw, dtype=np.float64)
            return {"pixels": self._render(), "agent_pos": raw[:STATE_DIM].copy(), "environment_state": raw.copy()}

        # ---- gymnasium API ---------------------------------------------------------------------------------------

        def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
            super().reset(seed=seed)
            if seed is not None:
                self.env.seed(int(seed))  # the object / goal positions are drawn from this generator
            raw, info = self.env.reset()
            self._steps = 0
            self._last_raw = raw
            return self._observation(raw), {**info, "is_success": False}

        def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
            raw, reward, _, _, info = self.env.step(np.asarray(action, dtype=np.float32))
            self._steps += 1
            self._last_raw = raw
            success = bool(info.get("success", False))
            truncated = self._steps >= self.max_steps
            # An episode ends at its first success (as LeRobot's Meta-World evaluation counts it).
            return self._observation(raw), float(reward), success, truncated, {**info, "is_success": success}

        def close(self) -> None:
            if self._renderer is not None:
                self._renderer.close()
                self._renderer = None
            self.env.close()

    _ENV_CLASS.append(_MetaWorldEnv)
    return _MetaWorldEnv


class MetaWorldExpert:
    """Meta-World's scripted policy for the env's task, acting on the env's current 39-value observation."""

    def __init__(self, env: Any) -> None:
        self.env = env.unwrapped
        self.policy = expert_policy(self.env.task)

    def reset(self) -> None:
        pass

    def act(self) -> np.ndarray:
        return np.clip(np.asarray(self.policy.get_action(self.env._last_raw), dtype=np.float64), -1.0, 1.0)
