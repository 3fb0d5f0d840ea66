"""Simulated environments registered by name, and the adapter between an environment and a policy.

    spec = get_sim_env("aloha_transfer_cube")       # ConfigError naming the closest names for a typo
    env = spec.make(cameras=("top",), image_size=(480, 640), max_steps=400)
    adapter = SimAdapter(spec, policy.metadata())  # checks cameras, proprioception and action sizes

Every environment gives observations in one layout: {"pixels": {camera: uint8 (H, W, 3)}, "agent_pos": (D,)}
(plus "env_state" for scripted experts), and takes one action row in physical units. A policy trained on the
LeRobot datasets of these environments names its cameras as preprocessing stores them (`observation.images.top`
-> `top`), its proprioception field `observation.state` and its action field `action`.

Adding a gymnasium environment (see docs/sim_evaluation.md):

    @register_sim_env("my_env")
    def _my_env() -> SimEnvSpec:
        return SimEnvSpec(name="my_env", make=make_my_env, cameras=("front",), state_dim=7, action_dim=7,
                          instruction="open the drawer", max_steps=300, fps=20, image_size=(240, 320))

where `make_my_env(cameras, image_size, max_steps)` returns a gymnasium env in the layout above whose `info`
holds `is_success`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vla_foundry.names import closest_names
from vla_foundry.params.base_params import ConfigError

STATE_FIELD = "observation.state"
ACTION_FIELD = "action"


@dataclass(frozen=True)
class SimEnvSpec:
    """What a policy needs to know about an environment, and how to build it."""

    name: str
    # (cameras, image_size (H, W), max_steps) -> gymnasium env in the common observation layout.
    make: Callable[[tuple[str, ...], tuple[int, int], int], Any]
    cameras: tuple[str, ...]
    state_dim: int
    action_dim: int
    instruction: str
    max_steps: int
    fps: int
    image_size: tuple[int, int]
    # The camera videos show by default (rendered only when videos are asked for or the policy uses it).
    video_camera: str = ""
    # env -> an expert with reset() and act() -> action row, acting on the env's privileged state; None: no expert.
    expert: Callable[[Any], Any] | None = None
    state_field: str = STATE_FIELD
    action_field: str = ACTION_FIELD
    # The env takes reset(options={"render": bool}) to skip rendering an episode nobody looks at.
    render_option: bool = False
    # Clip actions to the env's action space (gym-aloha's declared [-1, 1] is not its joint range: never clipped).
    clip_actions: bool = True
    # Proprioception fields beyond `state_field` a policy may take: field -> (observation key, width). Meta-World
    # offers its whole 39-value observation as `observation.environment_state` for policies without a camera.
    extra_state_fields: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def state_fields(self) -> dict[str, tuple[str, int]]:
        """What a policy may take as proprioception: field -> (observation key, width)."""
        return {self.state_field: ("agent_pos", self.state_dim), **self.extra_state_fields}


_REGISTRY: dict[str, Callable[[], SimEnvSpec]] = {}
# Suites: a name that means "each of these environments" (e.g. metaworld_mt10).
_SUITES: dict[str, tuple[str, ...]] = {}


def register_sim_env(name: str) -> Callable[[Callable[[], SimEnvSpec]], Callable[[], SimEnvSpec]]:
    """Register a function returning the `SimEnvSpec` of environment `name` (built on first use)."""

    def wrap(fn: Callable[[], SimEnvSpec]) -> Callable[[], SimEnvSpec]:
        if name in _REGISTRY:
            raise ValueError(f"sim environment {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def register_sim_suite(name: str, envs: Sequence[str]) -> None:
    """Register suite `name`: each of the registered environments `envs`, in that order."""
    if name in _SUITES or name in _REGISTRY:
        raise ValueError(f"sim environment or suite {name!r} is already registered")
    _SUITES[name] = tuple(envs)


def sim_env_names() -> list[str]:
    return sorted(_REGISTRY)


def sim_suite_names() -> list[str]:
    return sorted(_SUITES)


def _valid_names_hint() -> str:
    """The registered names in short: suites, non-Meta-World envs, and the Meta-World task pattern."""
    tasks = [n for n in _REGISTRY if n.startswith("metaworld/")]
    others = [n for n in sim_env_names() if not n.startswith("metaworld/")]
    pattern = f", metaworld/<task> for {len(tasks)} tasks (e.g. {tasks[0]})" if tasks else ""
    return f"valid: {others + sim_suite_names()}{pattern}"


def check_sim_env_name(name: str, where: str = "env", suites: bool = True) -> None:
    """ConfigError naming the closest registered names (environments and, with `suites`, suites) when `name` is
    neither."""
    if name in _REGISTRY or (suites and name in _SUITES):
        return
    candidates = sim_env_names() + (sim_suite_names() if suites else [])
    close = closest_names(name, candidates)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    kind = "sim environment or suite" if suites else "sim environment"
    raise ConfigError(f"{where}={name!r} is not a registered {kind}{hint} ({_valid_names_hint()})")


def expand_sim_envs(name: str, where: str = "env") -> list[str]:
    """The environments `name` means: a suite's members, or `[name]` for one environment."""
    check_sim_env_name(name, where)
    return list(_SUITES.get(name, (name,)))


def is_sim_suite(name: str) -> bool:
    return name in _SUITES


def get_sim_env(name: str, where: str = "env") -> SimEnvSpec:
    if name in _SUITES:
        raise ConfigError(f"{where}={name!r} is a suite of {len(_SUITES[name])} environments; give one of them here")
    check_sim_env_name(name, where, suites=False)
    return _REGISTRY[name]()


# ---------------------------------------------------------------------------------------------------------------
# Built-in environments


def _aloha(task: str) -> Callable[[tuple[str, ...], tuple[int, int], int], Any]:
    def make(cameras: tuple[str, ...], image_size: tuple[int, int], max_steps: int) -> Any:
        from vla_foundry.eval.aloha import make_aloha_env

        return make_aloha_env(task, cameras, image_size, max_steps)

    return make


def _transfer_cube_expert(env: Any) -> Any:
    from vla_foundry.eval.aloha import TransferCubeExpert

    return TransferCubeExpert(env)


@register_sim_env("aloha_transfer_cube")
def _aloha_transfer_cube() -> SimEnvSpec:
    from vla_foundry.eval.aloha import ALOHA_CAMERAS

    return SimEnvSpec(
        name="aloha_transfer_cube",
        make=_aloha("transfer_cube"),
        cameras=ALOHA_CAMERAS,
        state_dim=14,
        action_dim=14,
        instruction="Pick up the cube with the right arm and transfer it to the left arm.",
        max_steps=400,
        fps=50,
        image_size=(480, 640),
        video_camera="top",
        expert=_transfer_cube_expert,
        render_option=True,
        clip_actions=False,
    )


@register_sim_env("aloha_insertion")
def _aloha_insertion() -> SimEnvSpec:
    from vla_foundry.eval.aloha import ALOHA_CAMERAS

    return SimEnvSpec(
        name="aloha_insertion",
        make=_aloha("insertion"),
        cameras=ALOHA_CAMERAS,
        state_dim=14,
        action_dim=14,
        instruction="Insert the peg into the socket.",
        max_steps=400,
        fps=50,
        image_size=(480, 640),
        video_camera="top",
        render_option=True,
        clip_actions=False,
    )


PUSHT_CAMERA = "observation_image"  # LeRobot's pusht stores `observation.image`; preprocessing keeps it so


def _make_pusht(cameras: tuple[str, ...], image_size: tuple[int, int], max_steps: int) -> Any:
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym

    unknown = [c for c in cameras if c != PUSHT_CAMERA]
    if unknown:
        raise ValueError(f"unknown pusht camera(s) {unknown}; valid: [{PUSHT_CAMERA!r}]")
    env = gym.make(
        "gym_pusht/PushT-v0",
        obs_type="pixels_agent_pos",
        observation_height=image_size[0],
        observation_width=image_size[1],
        max_episode_steps=max_steps,
    )
    h, w = image_size
    space = gym.spaces.Dict(
        {
            "pixels": gym.spaces.Dict({PUSHT_CAMERA: gym.spaces.Box(0, 255, (h, w, 3), np.uint8)}),
            "agent_pos": env.observation_space["agent_pos"],
        }
    )
    return gym.wrappers.TransformObservation(
        env, lambda obs: {"pixels": {PUSHT_CAMERA: obs["pixels"]}, "agent_pos": obs["agent_pos"]}, space
    )


@register_sim_env("pusht")
def _pusht() -> SimEnvSpec:
    return SimEnvSpec(
        name="pusht",
        make=_make_pusht,
        cameras=(PUSHT_CAMERA,),
        state_dim=2,
        action_dim=2,
        instruction="Push the T-shaped block onto the T-shaped target.",
        max_steps=300,
        fps=10,
        image_size=(96, 96),
        video_camera=PUSHT_CAMERA,
    )


def _register_metaworld() -> None:
    """Every Meta-World v3 task as `metaworld/<task>`; suites metaworld_mt10, metaworld_mt50 and the difficulty
    groups metaworld_easy / _medium / _hard / _very_hard (vla_foundry.eval.metaworld; the package is imported only
    when an env is built)."""
    from vla_foundry.eval import metaworld as mw

    def spec_of(task: str) -> Callable[[], SimEnvSpec]:
        def make(cameras: tuple[str, ...], image_size: tuple[int, int], max_steps: int) -> Any:
            return mw.make_metaworld_env(task, cameras, image_size, max_steps)

        def spec() -> SimEnvSpec:
            return SimEnvSpec(
                name=f"metaworld/{task}",
                make=make,
                cameras=mw.CAMERAS,
                state_dim=mw.STATE_DIM,
                action_dim=mw.ACTION_DIM,
                instruction=mw.TASK_INSTRUCTIONS[task],
                max_steps=mw.MAX_STEPS,
                fps=mw.FPS,
                image_size=(96, 96),
                video_camera="corner2",
                expert=mw.MetaWorldExpert,
                extra_state_fields={mw.ENV_STATE_FIELD: ("environment_state", mw.ENV_STATE_DIM)},
            )

        return spec

    for task in sorted(mw.TASK_INSTRUCTIONS):
        register_sim_env(f"metaworld/{task}")(spec_of(task))
    for suite, tasks in mw.SUITES.items():
        register_sim_suite(f"metaworld_{suite}", [f"metaworld/{t}" for t in tasks])


_register_metaworld()


# ---------------------------------------------------------------------------------------------------------------
# Env <-> policy


class SimAdapter:
    """Maps env observations to the policy's observation dict and policy action rows to env actions.

    `metadata` is `Policy.metadata()` (or a policy server's /metadata): camera names, image offsets,
    proprioception fields and rows, action fields. The policy's own processor does the rest (resize, normalise).
    """

    def __init__(self, spec: SimEnvSpec, metadata: dict[str, Any], where: str = "policy") -> None:
        self.spec = spec
        self.cameras = list(metadata["camera_names"])
        self.image_indices = [int(i) for i in metadata["image_indices"]]
        self.proprio_rows = int(metadata["proprioception_rows"])
        self.proprio_fields = {k: int(v) for k, v in metadata["proprioception_fields"].items()}
        self.action_fields = {k: int(v) for k, v in metadata["action_fields"].items()}
        self.check(where)
        # Frames and states kept per env: enough for the oldest image offset and the past proprioception rows.
        self.history = max(self.proprio_rows, 1 - min(self.image_indices, default=0))

    def check(self, where: str) -> None:
        spec = self.spec
        unknown = [c for c in self.cameras if c not in spec.cameras]
        if unknown:
            raise ConfigError(
                f"{where} uses camera(s) {unknown} that env {spec.name} does not have (valid: {list(spec.cameras)})"
            )
        offered = {name: width for name, (_, width) in spec.state_fields.items()}
        wrong = {k: v for k, v in self.proprio_fields.items() if offered.get(k) != v}
        if wrong:
            raise ConfigError(
                f"{where} takes proprioception {self.proprio_fields} but env {spec.name} gives {offered} "
                f"(mismatched: {wrong})"
            )
        action_dim = sum(self.action_fields.values())
        if action_dim != spec.action_dim:
            raise ConfigError(
                f"{where} predicts {action_dim} action values ({self.action_fields}) but env {spec.name} takes "
                f"{spec.action_dim}"
            )
        if any(i > 0 for i in self.image_indices):
            raise ConfigError(f"{where} uses future image offsets {self.image_indices}; closed loop needs offsets <= 0")

    def policy_observation(
        self,
        frames: Sequence[dict[str, np.ndarray]],
        states: Sequence[dict[str, np.ndarray]],
        instruction: str | None = None,
    ) -> dict:
        """The policy's observation from one env's recent frames and states (oldest first, the current last; a
        state is {observation key: values}); `instruction` replaces the env's own (language-following tests)."""
        images = {cam: [frames[max(len(frames) - 1 + i, 0)][cam] for i in self.image_indices] for cam in self.cameras}
        rows = [states[max(len(states) - self.proprio_rows + r, 0)] for r in range(self.proprio_rows)]
        keys = self.spec.state_fields
        # A bare array is the env's `agent_pos` (the only state most envs have).
        rows = [row if isinstance(row, dict) else {"agent_pos": row} for row in rows]
        # (rows, width) per field
        proprio = {f: np.asarray([row[keys[f][0]] for row in rows], dtype=np.float64) for f in self.proprio_fields}
        text = self.spec.instruction if instruction is None else instruction
        return {"images": images, "proprioception": proprio, "instruction": text}

    def state_keys(self) -> list[str]:
        """The observation keys this policy's proprioception reads."""
        return [self.spec.state_fields[f][0] for f in self.proprio_fields]
