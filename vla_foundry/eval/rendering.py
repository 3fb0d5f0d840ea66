"""Cheap offscreen rendering for MuJoCo simulators on a CPU (software EGL).

MuJoCo allocates its offscreen buffer at the model's `offwidth x offheight` (640x480 for Meta-World's and
gym-aloha's models) whatever size is asked for, renders a 4096-texel shadow map per light and multisamples every
pixel 4 times. On llvmpipe each of these costs more than the scene itself at policy resolutions (64-128 px), so
the envs here size the buffer to the image and switch the three off. Demonstrations and evaluation render through
the same envs, so the policy is trained and tested on the same kind of image.
"""

from __future__ import annotations

from typing import Any


def light_offscreen(model: Any, height: int, width: int) -> None:
    """Set `model` (a mujoco.MjModel) up for rendering `height x width` frames without shadows or multisampling.
    Call before the first render: the buffer size is read when the rendering context is made."""
    model.vis.global_.offwidth = int(width)
    model.vis.global_.offheight = int(height)
    model.vis.quality.offsamples = 0  # no multisampling
    model.vis.quality.shadowsize = 0  # no shadow map


def no_shadows_or_reflections(scene: Any) -> None:
    """Switch a mujoco.MjvScene's shadow and reflection passes off (set after every update_scene)."""
    import mujoco

    scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
