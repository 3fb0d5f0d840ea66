"""A robot policy from the run of any acting-policy model type: raw observations in, denormalised action chunks out.

    policy = Policy.from_run("experiments/my_vla")            # local or s3://, EMA weights when saved
    chunk = policy.predict({
        "images": {"scene_left_0": frame_uint8_hwc, ...},    # any size: resized/cropped as in preprocessing
        "proprioception": {"robot__actual__poses...": history},  # (past + 1, D) per field, oldest first
        "instruction": "put the pepper in the bin",
    })                                                         # (future + 1, action_dim), the anchor row first
    chunks = policy.predict([obs_a, obs_b])                    # batched: (2, future + 1, action_dim)

A camera may be given one frame (for a single image offset) or a list of frames, one per offset in
`policy.image_indices`. `past_actions` ((past, action_dim), physical units) may be given: the policy then keeps
those rows fixed while sampling, as in training (where they are known except at an episode's start). In a batch,
observations with and without past actions may be mixed.

The model side is the acting-policy contract of the model registry (`PolicyParams` + `ActingPolicy`): the action
spec, `generate_actions`, and the batch handler's `to_device` applied to processed observations as to training
batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vla_foundry import storage
from vla_foundry.inference.run_loading import LoadedRun, load_run
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.model_params import PolicyParams

Observation = dict[str, Any]


class Policy:
    """Wraps a loaded acting-policy run with its saved robotics processor (cameras, fields, normaliser)."""

    def __init__(self, run: LoadedRun, processor: Any, seed: int = 0) -> None:
        from vla_foundry.models.registry import get_batch_handler, list_registered_policies

        if not isinstance(run.model_params, PolicyParams):
            raise ConfigError(
                f"Policy needs the run of an acting policy ({', '.join(list_registered_policies())}); "
                f"{run.run_dir} holds a {run.model_params.type!r}"
            )
        self.run = run
        self.batch_handler = get_batch_handler(run.model_params)
        self.model = run.model
        self.processor = processor
        self.config = processor.config
        self.normalizer = processor.normalizer
        self.device = run.device
        self.generator = torch.Generator(self.device).manual_seed(seed)
        self._check_model_matches_processor()

    @classmethod
    def from_run(
        cls,
        path: str,
        checkpoint: int | str | None = None,
        use_ema: bool = True,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> Policy:
        """Load the model, the processor and normaliser configs and stats saved in the run directory."""
        from vla_foundry.data.robotics.normalizer import NORMALIZER_CONFIG
        from vla_foundry.data.robotics.processor import PROCESSOR_CONFIG, STATS_NAME, RoboticsProcessor
        from vla_foundry.inference.run_loading import split_run_path

        run_dir, _ = split_run_path(path, checkpoint)
        missing = [
            name
            for name in (PROCESSOR_CONFIG, NORMALIZER_CONFIG, STATS_NAME)
            if not storage.exists(storage.join(run_dir, name))
        ]
        if missing:
            raise FileNotFoundError(
                f"run {run_dir} has no {', '.join(missing)}: a policy needs the processor and normaliser configs and "
                "the statistics a robotics training run saves next to config_model.yaml"
            )
        processor = RoboticsProcessor.load(run_dir)
        return cls(load_run(path, checkpoint, use_ema, device), processor, seed)

    def _check_model_matches_processor(self) -> None:
        spec = self.run.model_params.action_spec()
        c = self.config
        expected = {
            "action_dim": (spec.action_dim, self.normalizer.config.action_dim),
            "proprioception_dim": (spec.proprioception_dim, self.normalizer.config.proprioception_dim),
            "past_lowdim_steps": (spec.past_steps, c.past_lowdim_steps),
            "future_lowdim_steps": (spec.future_steps, c.future_lowdim_steps),
        }
        for name, (model_value, data_value) in expected.items():
            if model_value != data_value:
                raise ConfigError(
                    f"run {self.run.run_dir}: model.{name}={model_value} but the saved processor has {data_value}; "
                    "config_model.yaml and config_processor.yaml / config_normalizer.yaml come from different runs"
                )

    # -- what the robot must send ----------------------------------------------------------------------------------

    @property
    def camera_names(self) -> list[str]:
        return list(self.config.camera_names)

    @property
    def image_indices(self) -> list[int]:
        return list(self.config.image_indices)

    @property
    def proprioception_fields(self) -> dict[str, int]:
        return {f.name: f.dim for f in self.normalizer.config.proprioception_fields}

    @property
    def action_fields(self) -> dict[str, int]:
        return {f.name: f.dim for f in self.normalizer.config.action_fields}

    @property
    def chunk_length(self) -> int:
        """Rows returned per observation: the anchor (current step) and the future steps."""
        return self.config.future_lowdim_steps + 1

    def metadata(self) -> dict[str, Any]:
        """What a client needs to build observations and read actions (served at /metadata)."""
        return {
            "camera_names": self.camera_names,
            "image_indices": self.image_indices,
            "image_size": self.config.image_size,
            # Camera -> [height, width] of the training images as stored ({} when the run does not record it).
            "camera_image_sizes": dict(self.config.camera_image_sizes),
            "proprioception_fields": self.proprioception_fields,
            "proprioception_rows": self.config.past_lowdim_steps + 1,
            "action_fields": self.action_fields,
            "chunk_length": self.chunk_length,
            "past_lowdim_steps": self.config.past_lowdim_steps,
            "run_dir": self.run.run_dir,
            "checkpoint": self.run.checkpoint,
            "used_ema": self.run.used_ema,
        }

    # -- observation checks -----------------------------------------------------------------------------------

    def check_observation(self, obs: Observation, where: str = "observation") -> None:
        """Raise ValueError naming the field and the expected shape for anything the processor cannot use."""
        if not isinstance(obs, dict):
            raise ValueError(f"{where} must be a dict with images, proprioception and instruction; got {type(obs)}")
        images = obs.get("images")
        if images is None and not self.camera_names:
            images = {}  # a policy without cameras needs no images
        if not isinstance(images, dict):
            raise ValueError(
                f"{where}['images'] must map camera name -> uint8 (H, W, 3) frames; cameras: {self.camera_names}"
            )
        n_frames = len(self.image_indices)
        for cam in self.camera_names:
            if cam not in images:
                if self.config.missing_camera == "zero_pad":
                    continue
                raise ValueError(
                    f"{where}['images'] lacks camera {cam!r}: expected uint8 (H, W, 3) frames for every camera of "
                    f"{self.camera_names} ({n_frames} per camera, image offsets {self.image_indices})"
                )
            frames = images[cam]
            if not isinstance(frames, (list, tuple, np.ndarray)):
                raise ValueError(
                    f"{where}['images'][{cam!r}] is a {type(frames).__name__}; expected a list of uint8 (H, W, 3) frames"
                )
            frames = [frames] if isinstance(frames, np.ndarray) and frames.ndim == 3 else list(frames)
            if len(frames) != n_frames:
                raise ValueError(
                    f"{where}['images'][{cam!r}] has {len(frames)} frames; expected {n_frames} (one per image offset "
                    f"{self.image_indices})"
                )
            for frame in frames:
                frame = np.asarray(frame)
                if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or 0 in frame.shape:
                    raise ValueError(
                        f"{where}['images'][{cam!r}] is {frame.dtype} of shape {frame.shape}; expected uint8 (H, W, 3) "
                        "with H, W > 0"
                    )
        proprio = obs.get("proprioception")
        rows = self.config.past_lowdim_steps + 1
        if not isinstance(proprio, dict):
            raise ValueError(
                f"{where}['proprioception'] must map field name -> array; fields: {self.proprioception_fields}"
            )
        for name, dim in self.proprioception_fields.items():
            if name not in proprio:
                raise ValueError(f"{where}['proprioception'] lacks field {name!r}: expected shape ({rows}, {dim})")
            arr = _finite_numbers(proprio[name], f"{where}['proprioception'][{name!r}]")
            ok = arr.shape == (rows, dim) or (rows == 1 and arr.shape == (dim,))
            if not ok:
                raise ValueError(
                    f"{where}['proprioception'][{name!r}] has shape {arr.shape}; expected ({rows}, {dim}) "
                    "(past + 1 rows, oldest first)"
                )
        past = obs.get("past_actions")
        if past is not None:
            shape = (self.config.past_lowdim_steps, self.normalizer.config.action_dim)
            arr = _finite_numbers(past, f"{where}['past_actions']")
            if arr.shape != shape:
                raise ValueError(f"{where}['past_actions'] has shape {arr.shape}; expected {shape}")
        if not isinstance(obs.get("instruction", ""), str):
            raise ValueError(f"{where}['instruction'] must be a string")

    # -- prediction -------------------------------------------------------------------------------------------

    def _batch(
        self, observations: Sequence[Observation]
    ) -> tuple[dict[str, Any], torch.Tensor | None, torch.Tensor | None]:
        items = []
        for i, obs in enumerate(observations):
            where = "observation" if len(observations) == 1 else f"observation {i}"
            self.check_observation(obs, where)
            item = self.processor.process_observation(
                obs.get("images") or {}, obs["proprioception"], obs.get("instruction", "")
            )
            item["metadata"] = [{"instruction": obs.get("instruction", "")}]
            items.append(item)
        batch = {k: torch.cat([it[k] for it in items]) for k in items[0] if k != "metadata"}
        batch["metadata"] = [it["metadata"][0] for it in items]
        known = known_mask = None
        given = [obs.get("past_actions") is not None for obs in observations]
        if any(given):
            T, past = self.config.window_length, self.config.past_lowdim_steps
            A = self.normalizer.config.action_dim
            window = np.zeros((len(observations), T, A))
            known_mask = torch.zeros(len(observations), T, dtype=torch.bool)
            for i, obs in enumerate(observations):
                if given[i]:  # the others sample their past rows, as at an episode's start in training
                    window[i, :past] = np.asarray(obs["past_actions"])
                    known_mask[i, :past] = True
            known = torch.as_tensor(
                np.stack([self.normalizer.normalize_actions(w) for w in window]), dtype=torch.float32
            )
        # The model type's own device step, as in training (e.g. uint8 images cross to the device, floats are made
        # there).
        return self.batch_handler.to_device(batch, self.device), known, known_mask

    @torch.no_grad()
    def predict(self, observation: Observation | Sequence[Observation], seed: int | None = None) -> np.ndarray:
        """Denormalised action chunk(s): (chunk_length, action_dim) for one observation, (B, chunk_length,
        action_dim) for a list. With `seed` the noise is drawn from that seed (the same seed gives the same
        actions); otherwise from the policy's own generator."""
        single = isinstance(observation, dict)
        observations = [observation] if single else list(observation)
        if not observations:
            raise ValueError("predict needs at least one observation")
        batch, known, known_mask = self._batch(observations)
        generator = torch.Generator(self.device).manual_seed(seed) if seed is not None else self.generator
        if known is not None:
            known, known_mask = known.to(self.device), known_mask.to(self.device)
        window = self.model.generate_actions(batch, known_actions=known, known_mask=known_mask, generator=generator)
        # Denormalise the whole window (per-timestep statistics are per row), then keep the anchor and future rows.
        physical = np.asarray(self.normalizer.denormalize_actions(window.double().cpu().numpy()))  # (B, T, A)
        actions = physical[:, self.config.past_lowdim_steps :]  # (B, future + 1, A)
        return actions[0] if single else actions

    def split_action_fields(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """(..., action_dim) -> {field name: (..., field dim)} in the training order of `data.action_fields`."""
        out, start = {}, 0
        for name, dim in self.action_fields.items():
            out[name] = actions[..., start : start + dim]
            start += dim
        return out


def _finite_numbers(value: Any, where: str) -> np.ndarray:
    """`value` as an array of finite real numbers; ValueError naming `where` otherwise (NaN / Inf would give
    NaN actions without any error)."""
    try:
        arr = np.asarray(value)
    except ValueError as e:  # ragged nested lists
        raise ValueError(f"{where} is not a rectangular array of numbers ({e})") from None
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{where} has dtype {arr.dtype}; expected real numbers (float or int)")
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{where} holds {int(np.size(arr) - np.isfinite(arr).sum())} NaN/Inf value(s); expected finite numbers"
        )
    return arr
