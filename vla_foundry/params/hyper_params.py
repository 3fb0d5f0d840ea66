"""Optimisation hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from vla_foundry.params.base_params import ConfigError, derived_field


@dataclass(frozen=True)
class HyperParams:
    # Peak learning rate (after warmup).
    lr: float = 3e-4
    # Learning-rate schedule over all optimizer steps.
    lr_scheduler: Literal["cosine", "constant", "wsd"] = "cosine"
    # Warmup: an int is a number of optimizer steps, a float in [0, 1) a fraction of all steps.
    warmup: int | float = 0
    # Final lr as a fraction of `lr` (cosine and wsd).
    lr_min_ratio: float = 0.1
    # wsd: fraction of all steps spent in the final linear decay.
    lr_decay_fraction: float = 0.2
    # Optimizer (AdamW with decoupled weight decay).
    optimizer: Literal["adamw"] = "adamw"
    # AdamW weight decay.
    weight_decay: float = 0.1
    # No weight decay on norms, biases and embeddings.
    no_decay_norm_bias: bool = True
    # AdamW first-moment decay.
    beta1: float = 0.9
    # AdamW second-moment decay.
    beta2: float = 0.95
    # AdamW denominator epsilon.
    eps: float = 1e-8
    # torch intra-op CPU threads of each training process (torch.set_num_threads, applied at start); None keeps
    # torch's default (OMP_NUM_THREADS, else every core). Tiny models on a CPU run fastest on 1.
    torch_threads: int | None = None
    # Clip the global gradient norm (0 disables).
    grad_clip_norm: float = 1.0
    # fp32; amp_bf16: fp32 weights + bf16 autocast; pure_bf16: bf16 weights; fp16: autocast + gradient scaler.
    precision: Literal["fp32", "amp_bf16", "pure_bf16", "fp16"] = "amp_bf16"
    # Seed of the initial weights, data order and noise (shared to data.seed).
    seed: int = 42
    # Samples per process per forward/backward pass (the micro-batch).
    per_gpu_batch_size: int = 8
    # Samples per optimizer step, kept on any world size: accumulation = global / (per_gpu x world size). State it in
    # job files; None means per_gpu_batch_size (one process, no accumulation), and is an error on several processes.
    global_batch_size: int | None = None
    # Recompute each block's activations in backward instead of storing them (saves memory, costs compute).
    grad_checkpointing: bool = False
    # Compile each block with torch.compile.
    torch_compile: bool = False
    world_size: int | None = derived_field(None, "distributed.world_size")
    accumulation_steps: int | None = derived_field(None, "global_batch_size / (per_gpu_batch_size x world_size)")

    def validate(self) -> None:
        if self.per_gpu_batch_size < 1:
            raise ConfigError(f"hparams.per_gpu_batch_size={self.per_gpu_batch_size} must be >= 1")
        if self.global_batch_size is not None and self.global_batch_size < 1:
            raise ConfigError(f"hparams.global_batch_size={self.global_batch_size} must be >= 1")
        if isinstance(self.warmup, float) and not 0.0 <= self.warmup < 1.0:
            raise ConfigError(f"hparams.warmup={self.warmup}: a float is a fraction of all steps and must be in [0, 1)")
        if isinstance(self.warmup, int) and self.warmup < 0:
            raise ConfigError(f"hparams.warmup={self.warmup} must be >= 0")
        if self.lr <= 0:
            raise ConfigError(f"hparams.lr={self.lr} must be > 0")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise ConfigError(f"hparams.torch_threads={self.torch_threads} must be >= 1 (or null for torch's default)")
