"""Distributed settings. Rank and world size come from the torchrun environment, never from the user."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

from vla_foundry.params.base_params import derived_field


@dataclass(frozen=True)
class DistributedParams:
    # Shard parameters, gradients and optimizer state with FSDP2 when more than one process runs.
    fsdp: bool = True
    # Use DDP instead when fsdp is False and more than one process runs.
    ddp: bool = True
    # FSDP2: keep parameters and optimizer state in CPU memory between uses.
    cpu_offload: bool = False
    # FSDP2: free gathered parameters after forward (saves memory; costs a second all-gather in backward).
    reshard_after_forward: bool = True
    # "auto": nccl on GPU, gloo on CPU.
    backend: Literal["auto", "nccl", "gloo"] = "auto"
    # Seconds a collective may wait before the process group gives up.
    timeout_s: int = 1800

    # Read once from the torchrun / SageMaker environment (RANK, WORLD_SIZE, LOCAL_RANK) by `from_environment`
    # (called by `derive_params` and `init_distributed`); never typed by users.
    rank: int = derived_field(0, "environment variable RANK")
    world_size: int = derived_field(1, "environment variable WORLD_SIZE")
    local_rank: int = derived_field(0, "environment variable LOCAL_RANK")

    # Field -> environment variable, for the parser's "do not set it" message.
    ENVIRONMENT_FIELDS: ClassVar[dict[str, str]] = {
        "rank": "RANK",
        "world_size": "WORLD_SIZE",
        "local_rank": "LOCAL_RANK",
    }

    def from_environment(self, environ: Mapping[str, str] | None = None) -> DistributedParams:
        """These params with rank / world size / local rank read from `environ` (default: the process environment)."""
        env = os.environ if environ is None else environ
        return dataclasses.replace(
            self,
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
        )
