"""gym-aloha environments that render only the cameras asked for, and a scripted expert for the cube transfer.

gym-aloha's own tasks render three 480x640 cameras at every step; on a CPU with software EGL a frame costs tens
of milliseconds whatever its size, so `AlohaSimEnv` renders only `cameras` (none at all is allowed: physics-only
rollouts run thousands of steps per second).

The expert (`TransferCubeExpert`) is a waypoint controller in end-effector space: the right gripper picks the cube,
lifts it to a meeting point, the left gripper closes on it and the right one lets go. Each step it turns the
end-effector target into joint targets with damped least-squares inverse kinematics on a kinematic copy of the
arm, and it re-reads the cube's position before each grasp, so the joint commands it sends are exactly what the
environment executes (and what a recorded dataset holds).
"""

from __future__ import annotations

import collections
import itertools
from typing import Any

import numpy as np

# Gripper orientations are written as quaternions (w, x, y, z); the right arm's gripper faces -x at rest.
_IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])
_FACE_MINUS_X = np.array([0.0, 0.0, 0.0, 1.0])  # 180 degrees about z
# The point between the fingertips, in the gripper_link frame (measured on the model at the start pose).
_GRASP_OFFSET = np.array([0.0935, 0.0, 0.002])
ALOHA_CAMERAS = ("top", "angle", "front_close", "left_pillar", "right_pillar", "left_wrist", "right_wrist")


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
            w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2,
        ]
    )


def quat_axis(axis: tuple[float, float, float], degrees: float) -> np.ndarray:
    half = np.radians(degrees) / 2
    return np.concatenate([[np.cos(half)], np.sin(half) * np.asarray(axis, dtype=float)])


def quat_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def make_aloha_env(
    task: str = "transfer_cube",
    cameras: tuple[str, ...] = ("top",),
    image_size: tuple[int, int] = (480, 640),
    max_steps: int = 400,
) -> Any:
    """A gymnasium env of the ALOHA `task` ("transfer_cube" or "insertion") rendering `cameras` at `image_size`
    (height, width), wrapped in a TimeLimit of `max_steps`. Observations: {"pixels": {camera: uint8 (H, W, 3)},
    "agent_pos": (14,), "env_state": object poses (privileged, for scripted experts)}. `reset(options={"render":
    False})` skips rendering for that episode (the frames are black)."""
    import gymnasium as gym

    return gym.wrappers.TimeLimit(AlohaSimEnv(task, tuple(cameras), tuple(image_size)), max_episode_steps=max_steps)


def _aloha_env_class() -> type:
    from dm_control import mujoco
    from dm_control.rl import control
    from gym_aloha.constants import ASSETS_DIR, DT
    from gym_aloha.env import AlohaEnv
    from gym_aloha.tasks.sim import InsertionTask, TransferCubeTask
    from gymnasium import spaces

    def with_cameras(base: type) -> type:
        class Task(base):
            """gym-aloha's task rendering only the requested cameras."""

            def __init__(self, cameras: tuple[str, ...], size: tuple[int, int]) -> None:
                super().__init__()
                self.cameras, self.size = cameras, size
                self.render_images = True

            def get_observation(self, physics: Any) -> dict:
                obs = collections.OrderedDict()
                obs["qpos"] = self.get_qpos(physics)
                obs["env_state"] = self.get_env_state(physics)
                h, w = self.size
                if self.cameras and self.render_images and getattr(physics, "_light_offscreen", None) != (h, w):
                    # Before dm_control makes its rendering context: a buffer of the image's size, no shadow map,
                    # no multisampling (vla_foundry.eval.rendering).
                    from vla_foundry.eval.rendering import light_offscreen

                    light_offscreen(physics.model.ptr, h, w)
                    physics._light_offscreen = (h, w)
                obs["images"] = {
                    cam: physics.render(height=h, width=w, camera_id=cam)
                    if self.render_images
                    else np.zeros((h, w, 3), np.uint8)
                    for cam in self.cameras
                }
                return obs

        return Task

    tasks = {
        "transfer_cube": ("bimanual_viperx_transfer_cube.xml", with_cameras(TransferCubeTask)),
        "insertion": ("bimanual_viperx_insertion.xml", with_cameras(InsertionTask)),
    }

    class _AlohaSimEnv(AlohaEnv):
        def __init__(self, task: str, cameras: tuple[str, ...], image_size: tuple[int, int]) -> None:
            unknown = [c for c in cameras if c not in ALOHA_CAMERAS]
            if unknown:
                raise ValueError(f"unknown ALOHA camera(s) {unknown}; valid: {list(ALOHA_CAMERAS)}")
            self.cameras, self.image_size = cameras, image_size
            super().__init__(task=task, obs_type="pixels_agent_pos")
            h, w = image_size
            self.observation_space = spaces.Dict(
                {
                    "pixels": spaces.Dict({c: spaces.Box(0, 255, (h, w, 3), np.uint8) for c in cameras}),
                    "agent_pos": spaces.Box(-1000.0, 1000.0, (14,), np.float64),
                    "env_state": spaces.Box(-1000.0, 1000.0, (7 if task == "transfer_cube" else 14,), np.float64),
                }
            )

        def _make_env_task(self, task_name: str) -> Any:
            if task_name not in tasks:
                raise ValueError(f"unknown ALOHA task {task_name!r}; valid: {sorted(tasks)}")
            xml, task_class = tasks[task_name]
            physics = mujoco.Physics.from_xml_path(str(ASSETS_DIR / xml))
            return control.Environment(
                physics,
                task_class(self.cameras, self.image_size),
                float("inf"),
                control_timestep=DT,
                n_sub_steps=None,
                flat_observation=False,
            )

        def _format_raw_obs(self, raw_obs: dict) -> dict:
            return {
                "pixels": {c: raw_obs["images"][c].copy() for c in self.cameras},
                "agent_pos": raw_obs["qpos"].copy(),
                "env_state": raw_obs["env_state"].copy(),
            }

        def reset(self, seed: int | None = None, options: dict | None = None) -> tuple:
            # options={"render": False}: black frames for this episode (rendering is most of a step's cost).
            self._env.task.render_images = bool((options or {}).get("render", True))
            return super().reset(seed=seed, options=options)

        def step(self, action: np.ndarray) -> tuple:
            obs, reward, terminated, truncated, info = super().step(np.asarray(action, dtype=np.float64))
            return obs, float(reward), bool(terminated), truncated, info

        def physics(self) -> Any:
            return self._env.physics

    return _AlohaSimEnv


def AlohaSimEnv(task: str, cameras: tuple[str, ...], image_size: tuple[int, int]) -> Any:
    """The gym-aloha env class is built on first use so importing this module does not import MuJoCo."""
    return _aloha_env_class()(task, cameras, image_size)


class _ArmIK:
    """Damped least-squares IK for one arm's gripper_link on a private MjData of the env's model."""

    def __init__(self, model: Any, side: str) -> None:
        import mujoco

        self.mujoco = mujoco
        self.model = model
        self.data = mujoco.MjData(model)
        self.body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, f"vx300s_{side}/gripper_link")
        first = 0 if side == "left" else 8  # each arm: 6 joints and 2 finger joints in qpos / qvel
        self.qpos_index = np.arange(first, first + 6)
        self.dof_index = np.arange(first, first + 6)
        self.low = model.jnt_range[first : first + 6, 0]
        self.high = model.jnt_range[first : first + 6, 1]

    def solve(
        self, qpos: np.ndarray, pos: np.ndarray, quat: np.ndarray, iterations: int = 30, damping: float = 1e-3
    ) -> np.ndarray:
        """6 joint angles placing gripper_link at `pos` with orientation `quat`, starting from `qpos` (full)."""
        mj = self.mujoco
        d = self.data
        d.qpos[:] = qpos
        jacp = np.zeros((3, self.model.nv))
        jacr = np.zeros((3, self.model.nv))
        err_rot = np.zeros(3)
        for _ in range(iterations):
            mj.mj_kinematics(self.model, d)
            mj.mj_comPos(self.model, d)
            err_pos = pos - d.xpos[self.body]
            mj.mju_subQuat(err_rot, quat, d.xquat[self.body])  # in the body frame; the Jacobian is in the world's
            err = np.concatenate(
                [err_pos, 0.5 * d.xmat[self.body].reshape(3, 3) @ err_rot]
            )  # (6,): metres and radians, rotation weighted down
            if np.linalg.norm(err) < 1e-5:
                break
            mj.mj_jacBody(self.model, d, jacp, jacr, self.body)
            jac = np.concatenate([jacp, 0.5 * jacr])[:, self.dof_index]  # (6, 6)
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping * np.eye(6), err)
            d.qpos[self.qpos_index] = np.clip(d.qpos[self.qpos_index] + step, self.low, self.high)
        return d.qpos[self.qpos_index].copy()


def _gripper_pose(grasp_point: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """gripper_link (pos, quat) that puts the point between the fingertips at `grasp_point`."""
    return np.concatenate([grasp_point - quat_matrix(orientation) @ _GRASP_OFFSET, orientation])


class TransferCubeExpert:
    """Scripted bimanual cube transfer for `AlohaSimEnv("transfer_cube")`, acting in joint space (14 actions).

    Phases (50 Hz steps): the right gripper reaches above the cube (0-50), descends (50-80), closes (80-100),
    lifts the cube to the meeting point (100-150); the left gripper comes in, rolled 90 degrees so its fingers
    close across the right's, onto the cube's position read at step 160 (160-180), closes (180-195); the right
    gripper opens (195-210) and moves away. gym-aloha counts success when the left gripper holds the cube off
    the table: around step 185-200. 39 of seeds 0-39 succeed.
    """

    # Waypoint times (steps) and the meeting point of the grippers (m).
    T_ABOVE, T_DOWN, T_CLOSE, T_MEET, T_LEFT_IN, T_LEFT_CLOSE = 50, 80, 100, 150, 180, 195
    MEET = np.array([0.05, 0.5, 0.25])
    # The right gripper pitches 70 degrees down to pick and keeps that pitch while it holds the cube (levelling it
    # lets the cube slip); the left aims 6 cm short of the cube's centre and 1 cm below, read at step 160.
    PICK_PITCH = 70.0
    LEFT_AIM_STEP = 160
    LEFT_OFFSET = np.array([-0.06, 0.0, -0.01])

    def __init__(self, env: Any) -> None:
        self.env = env.unwrapped
        physics = self.env.physics()
        self.model = physics.model.ptr
        self.data = physics.data.ptr
        self.ik = {"left": _ArmIK(self.model, "left"), "right": _ArmIK(self.model, "right")}
        self.t = 0
        self.plans: dict[str, list[tuple[int, np.ndarray]]] = {}

    def _box(self) -> np.ndarray:
        return self.data.qpos[16:19].copy()

    def _gripper_now(self, side: str) -> np.ndarray:
        import mujoco

        body = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_BODY, f"vx300s_{side}/gripper_link")
        return np.concatenate([self.data.xpos[body], self.data.xquat[body], [0.0]])

    def reset(self) -> None:
        """Plan from the cube's start position; call after env.reset."""
        self.t = 0
        cube = self._box()
        right_rest = np.concatenate([self._gripper_now("right")[:7], [0.0]])
        left_rest = np.concatenate([self._gripper_now("left")[:7], [0.0]])
        pick = quat_mul(_FACE_MINUS_X, quat_axis((0, 1, 0), self.PICK_PITCH))  # pitched down
        hold = quat_mul(_FACE_MINUS_X, quat_axis((0, 1, 0), self.PICK_PITCH))

        def at(t: int, point: np.ndarray, quat: np.ndarray, gripper: float) -> tuple[int, np.ndarray]:
            return t, np.concatenate([_gripper_pose(point, quat), [gripper]])

        away = self.MEET + np.array([0.1, 0, 0])
        self.plans["right"] = [
            (0, right_rest),
            at(self.T_ABOVE, cube + np.array([0, 0, 0.06]), pick, 1.0),
            at(self.T_DOWN, cube, pick, 1.0),
            at(self.T_CLOSE, cube, pick, 0.0),
            at(self.T_MEET, self.MEET, hold, 0.0),
            at(self.T_LEFT_CLOSE, self.MEET, hold, 0.0),
            at(self.T_LEFT_CLOSE + 15, self.MEET, hold, 1.0),
            at(self.T_LEFT_CLOSE + 40, away, hold, 1.0),
        ]
        self.left_quat = quat_mul(_IDENTITY, quat_axis((1, 0, 0), 90))
        self.plans["left"] = [
            (0, left_rest),
            at(self.T_CLOSE, self.MEET + np.array([-0.15, 0, 0]), self.left_quat, 1.0),
            at(self.T_MEET, self.MEET + np.array([-0.08, 0, 0]), self.left_quat, 1.0),
        ]

    def _replan_left(self) -> None:
        # The cube sits where the right gripper's grasp left it: aim the left fingers at where it is now.
        target = self._box() + self.LEFT_OFFSET
        back = target + np.array([-0.05, 0, 0])
        self.plans["left"][3:] = [
            (self.T_LEFT_IN, np.concatenate([_gripper_pose(target, self.left_quat), [1.0]])),
            (self.T_LEFT_CLOSE, np.concatenate([_gripper_pose(target, self.left_quat), [0.0]])),
            (self.T_LEFT_CLOSE + 40, np.concatenate([_gripper_pose(back, self.left_quat), [0.0]])),
        ]

    @staticmethod
    def _interpolate(plan: list[tuple[int, np.ndarray]], t: int) -> np.ndarray:
        for (t0, a), (t1, b) in itertools.pairwise(plan):
            if t0 <= t <= t1:
                b = b.copy()
                if np.dot(a[3:7], b[3:7]) < 0:  # q and -q are one rotation: interpolate along the short way
                    b[3:7] = -b[3:7]
                out = a + (b - a) * ((t - t0) / max(t1 - t0, 1))
                out[3:7] /= np.linalg.norm(out[3:7])
                return out
        return plan[-1][1]

    def act(self) -> np.ndarray:
        """The next joint-space action (14,): [left arm 6, left gripper, right arm 6, right gripper]."""
        if self.t == self.LEFT_AIM_STEP:
            self._replan_left()
        qpos = self.data.qpos.copy()
        action = np.zeros(14)
        for side, first in (("left", 0), ("right", 7)):
            pose = self._interpolate(self.plans[side], self.t)
            action[first : first + 6] = self.ik[side].solve(qpos, pose[:3], pose[3:7])
            action[first + 6] = pose[7]
        self.t += 1
        return action
