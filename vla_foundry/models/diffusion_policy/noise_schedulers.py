"""Noise schedules for generative action heads: flow matching and DDPM / DDIM.

Both expose the same three operations the policy needs:
  - `training_example(actions, generator)` -> (noisy actions, time, regression target) for one noise draw;
  - `sample(denoise, shape, generator, clamp)` -> a clean action chunk, integrating / denoising from pure noise;
  - `model_time(time)` -> the scalar fed to the network's time embedding, in [0, 1] for both schedulers.

Conventions (per element of a chunk x of shape (B, T, A)):
  Flow matching: x_t = (1 - t) * noise + t * x, t ~ U(0, 1); the network predicts the velocity x - noise; sampling
  integrates dx/dt = v(x_t, t) from t = 0 (noise) to t = 1 (data) with Euler or midpoint steps.
  DDPM: x_k = sqrt(abar_k) * x + sqrt(1 - abar_k) * noise for a discrete step k; the network predicts the noise
  ("epsilon") or the clean chunk ("sample"); sampling runs deterministic DDIM (eta = 0) or ancestral DDPM steps,
  clipping the predicted clean chunk to [-clip_sample, clip_sample] (actions are normalised).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch

from vla_foundry.models.diffusion_policy.params import DiffusionPolicyParams

# denoise(x (B, T, A), model_time (B,)) -> network output (B, T, A).
DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# clamp(x (B, T, A)) -> x with known rows (e.g. past actions) written back; applied after every step.
ClampFn = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class NoiseScheduler(ABC):
    """What the schedulers share: sampling starts from pure noise, with known rows written back by `clamp`."""

    @torch.no_grad()
    def sample(
        self,
        denoise: DenoiseFn,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        clamp: ClampFn = _identity,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """A clean chunk of `shape` (B, T, A) from Gaussian noise; `clamp` is applied after every step."""
        noise = clamp(torch.randn(shape, generator=generator, device=device, dtype=dtype))
        return self.denoise_from(noise, denoise, generator, clamp)

    @abstractmethod
    def denoise_from(
        self, x: torch.Tensor, denoise: DenoiseFn, generator: torch.Generator | None, clamp: ClampFn
    ) -> torch.Tensor:
        """The scheduler's steps from noise `x` (B, T, A) to a clean chunk."""


class FlowMatchingScheduler(NoiseScheduler):
    """Rectified flow from Gaussian noise (t = 0) to the action distribution (t = 1)."""

    def __init__(self, num_steps: int = 10, solver: str = "euler") -> None:
        if num_steps < 1:
            raise ValueError(f"num_flow_steps={num_steps} must be >= 1")
        if solver not in ("euler", "midpoint"):
            raise ValueError(f"flow_solver={solver!r} is not valid; valid: euler, midpoint")
        self.num_steps = num_steps
        self.solver = solver

    def model_time(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def training_example(
        self, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_t, t, velocity target) for clean `actions` (B, T, A); t is (B,) in [0, 1)."""
        noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype)
        t = torch.rand(actions.shape[0], generator=generator, device=actions.device, dtype=actions.dtype)
        tt = t[:, None, None]
        x_t = (1.0 - tt) * noise + tt * actions
        return x_t, t, actions - noise

    def denoise_from(
        self, x: torch.Tensor, velocity: DenoiseFn, generator: torch.Generator | None, clamp: ClampFn
    ) -> torch.Tensor:
        """Integrate dx/dt = velocity(x, t) from t = 0 to 1 in `num_steps` Euler or midpoint steps."""
        dt = 1.0 / self.num_steps
        for i in range(self.num_steps):
            t = torch.full((x.shape[0],), i * dt, device=x.device, dtype=x.dtype)  # (B,)
            v = velocity(x, t)
            if self.solver == "midpoint":
                x_mid = clamp(x + 0.5 * dt * v)
                v = velocity(x_mid, t + 0.5 * dt)
            x = clamp(x + dt * v)
        return x


def make_betas(num_train_timesteps: int, schedule: str) -> torch.Tensor:
    """Noise variances beta_k, k = 0 .. K-1 (float64 for accurate cumulative products)."""
    if schedule == "linear":
        # The DDPM paper's range, rescaled so that short schedules still end near pure noise.
        scale = 1000.0 / num_train_timesteps
        return torch.linspace(scale * 1e-4, scale * 0.02, num_train_timesteps, dtype=torch.float64).clamp(max=0.999)
    if schedule == "cosine":
        # Nichol & Dhariwal's squared-cosine abar(s), s = 0.008; betas capped at 0.999.
        def abar(s: float) -> float:
            return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

        steps = [
            min(1 - abar((k + 1) / num_train_timesteps) / abar(k / num_train_timesteps), 0.999)
            for k in range(num_train_timesteps)
        ]
        return torch.tensor(steps, dtype=torch.float64)
    raise ValueError(f"beta_schedule={schedule!r} is not valid; valid: linear, cosine")


class DDPMScheduler(NoiseScheduler):
    """Discrete-time diffusion with K training steps; DDIM (deterministic) or DDPM (ancestral) sampling."""

    def __init__(
        self,
        num_train_timesteps: int = 100,
        num_inference_steps: int = 10,
        prediction_type: str = "epsilon",
        clip_sample: float = 1.0,
        beta_schedule: str = "cosine",
        sampler: str = "ddim",
    ) -> None:
        if prediction_type not in ("epsilon", "sample"):
            raise ValueError(f"prediction_type={prediction_type!r} is not valid; valid: epsilon, sample")
        if sampler not in ("ddim", "ddpm"):
            raise ValueError(f"ddpm_sampler={sampler!r} is not valid; valid: ddim, ddpm")
        if not 1 <= num_inference_steps <= num_train_timesteps:
            raise ValueError(
                f"num_inference_steps={num_inference_steps} must be in [1, num_train_timesteps={num_train_timesteps}]"
            )
        self.num_train_timesteps = num_train_timesteps
        self.num_inference_steps = num_inference_steps
        self.prediction_type = prediction_type
        self.clip_sample = clip_sample
        self.sampler = sampler
        betas = make_betas(num_train_timesteps, beta_schedule)
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)  # (K,) float64

    def model_time(self, k: torch.Tensor) -> torch.Tensor:
        """Discrete step k in [0, K) -> a time in [0, 1] (1 = pure noise), the network's time input."""
        return k.float() / max(self.num_train_timesteps - 1, 1)

    def _abar(self, k: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(like.device)[k].to(like.dtype)[:, None, None]  # (B, 1, 1)

    def training_example(
        self, actions: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_k, k, target) for clean `actions` (B, T, A); k is a (B,) long tensor of steps."""
        noise = torch.randn(actions.shape, generator=generator, device=actions.device, dtype=actions.dtype)
        k = torch.randint(0, self.num_train_timesteps, (actions.shape[0],), generator=generator, device=actions.device)
        abar = self._abar(k, actions)
        x_k = abar.sqrt() * actions + (1.0 - abar).sqrt() * noise
        target = noise if self.prediction_type == "epsilon" else actions
        return x_k, k, target

    def inference_timesteps(self) -> list[int]:
        """Evenly spaced steps from K-1 down to 0 (both ends included)."""
        n = self.num_inference_steps
        if n == 1:
            return [self.num_train_timesteps - 1]
        return [round(i * (self.num_train_timesteps - 1) / (n - 1)) for i in range(n - 1, -1, -1)]

    def _split(self, x: torch.Tensor, out: torch.Tensor, abar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(clean estimate, noise estimate) from the network output, clean estimate clipped."""
        if self.prediction_type == "epsilon":
            x0 = (x - (1.0 - abar).sqrt() * out) / abar.sqrt()
        else:
            x0 = out
        if self.clip_sample > 0:
            x0 = x0.clamp(-self.clip_sample, self.clip_sample)
        eps = (x - abar.sqrt() * x0) / (1.0 - abar).sqrt().clamp(min=1e-8)
        return x0, eps

    def denoise_from(
        self, x: torch.Tensor, denoise: DenoiseFn, generator: torch.Generator | None, clamp: ClampFn
    ) -> torch.Tensor:
        """Step from K-1 down to 0 along `inference_timesteps`: deterministic DDIM or ancestral DDPM."""
        steps = self.inference_timesteps()
        for i, k in enumerate(steps):
            k_t = torch.full((x.shape[0],), k, device=x.device, dtype=torch.long)  # (B,)
            abar = self._abar(k_t, x)
            x0, eps = self._split(x, denoise(x, self.model_time(k_t)), abar)
            if i + 1 == len(steps):
                x = x0
            else:
                abar_prev = self._abar(torch.full_like(k_t, steps[i + 1]), x)
                if self.sampler == "ddim":
                    x = abar_prev.sqrt() * x0 + (1.0 - abar_prev).sqrt() * eps
                else:
                    # Ancestral step from k to k_prev: the posterior q(x_prev | x_k, x0) of the strided chain.
                    alpha = abar / abar_prev
                    var = (1.0 - abar_prev) / (1.0 - abar) * (1.0 - alpha)
                    mean = (abar_prev.sqrt() * (1.0 - alpha) * x0 + alpha.sqrt() * (1.0 - abar_prev) * x) / (1.0 - abar)
                    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                    x = mean + var.clamp(min=0).sqrt() * noise
            x = clamp(x)
        return x


def build_noise_scheduler(params: DiffusionPolicyParams) -> FlowMatchingScheduler | DDPMScheduler:
    """The scheduler a `DiffusionPolicyParams` asks for."""
    if params.objective == "flow_matching":
        return FlowMatchingScheduler(params.num_flow_steps, params.flow_solver)
    return DDPMScheduler(
        num_train_timesteps=params.num_train_timesteps,
        num_inference_steps=params.num_inference_steps,
        prediction_type=params.prediction_type,
        clip_sample=params.clip_sample,
        beta_schedule=params.beta_schedule,
        sampler=params.ddpm_sampler,
    )
