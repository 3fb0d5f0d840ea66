"""Distributed settings. Rank and world size come from the torchrun environment, never from the user."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class DistributedParams:
    # Shard parameters, gradients and optimizer state with FSDP2 when more than one process runs.
    fsdp: bool = True
    # Use DDP instead when fsdp is False and more than one process runs.
    ddp: bool = True
    cpu_offload: bool = False
    # FSDP2: free gathered parameters after forward (saves memory; costs a second all-gather in backward).
    reshard_after_forward: bool = True
    # "auto": nccl on GPU, gloo on CPU.
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    # Seconds a collective may wait before the process group gives up.
    timeout_s: int = 1800

    # Read from the standard torchrun / SageMaker environment variables at access time. Reading them does not
    # initialise a process group.
    @property
    def rank(self) -> int:
        return int(os.environ.get("RANK", "0"))

    @property
    def world_size(self) -> int:
        return int(os.environ.get("WORLD_SIZE", "1"))

    @property
    def local_rank(self) -> int:
        return int(os.environ.get("LOCAL_RANK", "0"))

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1
