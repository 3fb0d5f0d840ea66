"""Run training in Ray Train workers, restarting failed workers from the latest complete checkpoint.

    python -m vla_foundry.launch.ray_train --ray.num_workers 2 --ray.use_gpu False --ray.max_failures 1 \\
        --config_path config_presets/training_jobs/vla_diffusion_tiny_quickstart.yaml --name my_run

Every worker runs the same training function as `torchrun` does (`run_training`): Ray Train sets up the process
group (gloo on CPU, NCCL on GPU) and the RANK / WORLD_SIZE / LOCAL_RANK environment it reads. The run dir is
`<save_path>/<name>` as for any run (a name is fixed here when none is given, so every attempt uses the same dir),
`--remote_sync` works as usual. When a worker dies (a crash, a killed process, a lost node) Ray Train stops the group
and starts it again, up to `--ray.max_failures` times (`FailureConfig`); each attempt whose run dir holds a complete
checkpoint resumes from it (`--model.resume_from_checkpoint <run_dir>`), so at most one checkpoint interval is redone.

Launcher flags (`--help` lists them; the rest are training flags, checked here before Ray starts): `--ray.num_workers`,
`--ray.use_gpu`, `--ray.max_failures`, `--ray.cpus_per_worker` and `--ray_address` (`--ray.address` still works and
warns).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from vla_foundry.cli import Spelling, parse_command
from vla_foundry.params.base_params import ConfigError


@dataclass(frozen=True)
class RayLaunchParams:
    """The `--ray.*` flags of the launcher: Ray Train's scaling and failure settings."""

    # Training workers.
    num_workers: int = 1
    # One GPU per worker.
    use_gpu: bool = False
    # Restarts allowed after worker failures (-1: unlimited).
    max_failures: int = 0
    # CPUs reserved per worker (lower it to leave CPUs to a LeRobot stream).
    cpus_per_worker: float = 1.0

    def validate(self) -> None:
        if self.num_workers < 1:
            raise ConfigError(f"--ray.num_workers={self.num_workers} must be >= 1")
        if self.max_failures < -1:
            raise ConfigError(f"--ray.max_failures={self.max_failures} must be >= -1 (-1: unlimited)")
        if self.cpus_per_worker < 0:
            raise ConfigError(f"--ray.cpus_per_worker={self.cpus_per_worker} must be >= 0")


@dataclass(frozen=True)
class LauncherParams:
    """The launcher's own flags (every other flag is a training flag)."""

    # Ray Train workers and restarts.
    ray: RayLaunchParams = field(default_factory=RayLaunchParams)
    # An existing Ray cluster (`auto` or host:port; the spelling of the preprocessing job and of data.ray_address);
    # None starts a local one.
    ray_address: str | None = None

    def validate(self) -> None:
        self.ray.validate()


# The old spelling of --ray_address (warns).
LAUNCHER_SPELLING = Spelling(renamed={"ray.address": "ray_address"})


def _is_launcher_flag(word: str) -> bool:
    name = word[2:].partition("=")[0] if word.startswith("--") else ""
    return name == "ray_address" or name.startswith("ray.")


def split_args(argv: Sequence[str]) -> tuple[LauncherParams, list[str]]:
    """(the launcher's flags `--ray.*` and `--ray_address`, parsed; the training flags). An unknown `--ray.*` name is
    a ConfigError with the closest ones."""
    ours: list[str] = []
    rest: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        word = args[i]
        target = ours if _is_launcher_flag(word) else rest
        target.append(word)
        i += 1
        # The flag's value (a lone bool flag has none).
        if target is ours and "=" not in word and i < len(args) and not args[i].startswith("--"):
            ours.append(args[i])
            i += 1
    return parse_command(LauncherParams, ours, LAUNCHER_SPELLING), rest


def train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the training run of the given flags, resumed from the run dir's latest complete
    checkpoint when an earlier attempt left one."""
    from vla_foundry.checkpoint import CheckpointError, resolve_checkpoint
    from vla_foundry.params.parsing import parse_train_params
    from vla_foundry.training_run import run_training

    # Paths in the flags are relative to where the launcher ran.
    os.chdir(config["cwd"])
    argv = list(config["argv"])
    run_dir = config["run_dir"]
    try:
        resolve_checkpoint(run_dir)
        resumable = True
    except CheckpointError:
        resumable = False
    if resumable:
        print(f"[ray_train] resuming from the latest complete checkpoint of {run_dir}", file=sys.stderr, flush=True)
        argv += ["--model.resume_from_checkpoint", run_dir]
    run_training(parse_train_params(argv))


def launch(argv: Sequence[str]) -> Any:
    """Check the flags, start (or join) Ray and run the trainer; returns Ray Train's result."""
    from vla_foundry.params.parsing import parse_train_params
    from vla_foundry.training_run import default_run_name

    launcher, train_argv = split_args(argv)
    ray_params = launcher.ray
    params = parse_train_params(train_argv)  # a bad flag ends here, before Ray starts
    if params.model.resume_from_checkpoint and not params.model.resume_weights_only:
        raise ConfigError(
            "--model.resume_from_checkpoint with the Ray launcher: give the run's --name instead; attempts resume "
            "from its run dir by themselves"
        )
    name = params.name or default_run_name(params)
    if not params.name:
        train_argv += ["--name", name]
    save_path = os.path.abspath(params.save_path)
    run_dir = os.path.join(save_path, name)

    if not launcher.ray_address:
        from vla_foundry.local_ray import prepare_local_ray_environment

        prepare_local_ray_environment()
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    # Ray Train's workers replace `print` with one that logs each line and, as Ray's worker streams are wrapped,
    # prints it too: every line of rank 0 arrived twice. Turned off, a print goes to the worker's output once (a
    # value the user set is kept).
    env_vars = {"RAY_TRAIN_ENABLE_PRINT_PATCH": os.environ.get("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")}
    if not ray.is_initialized():
        if launcher.ray_address:
            ray.init(address=launcher.ray_address, runtime_env={"env_vars": env_vars})
        else:
            # Each worker's LeRobot stream runs its Ray Data tasks beside the workers. With only the cores' count of
            # CPUs, one worker's decode task can hold the last CPU while its worker waits for the others in a
            # collective, and the other workers' streams never get one (a deadlock seen on 2 cores). The local
            # cluster counts one more CPU per worker for its stream (scheduling slots, not cores).
            slots = math.ceil(ray_params.num_workers * ray_params.cpus_per_worker) + ray_params.num_workers
            ray.init(
                include_dashboard=False,
                num_cpus=max(os.cpu_count() or 1, slots),
                runtime_env={
                    "worker_process_setup_hook": "vla_foundry.local_ray.quiet_ray_train_worker",
                    # The spot-preemption watcher has nothing to watch on one machine; it logged an error-level
                    # line about its restart arguments on every run.
                    "env_vars": {
                        **env_vars,
                        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": os.environ.get(
                            "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0"
                        ),
                    },
                },
            )
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"argv": train_argv, "cwd": os.getcwd(), "run_dir": run_dir},
        torch_config=TorchConfig(backend="nccl" if ray_params.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=ray_params.num_workers,
            use_gpu=ray_params.use_gpu,
            resources_per_worker={"CPU": ray_params.cpus_per_worker, **({"GPU": 1} if ray_params.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=name,
            storage_path=os.path.join(save_path, "ray_train"),
            failure_config=FailureConfig(max_failures=ray_params.max_failures),
        ),
    )
    return trainer.fit()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        from vla_foundry.cli import command_help

        prog = "python -m vla_foundry.launch.ray_train"
        print(command_help(prog, __doc__, LauncherParams, LAUNCHER_SPELLING, common_flags=False))
        print("Every other flag is a training flag: python vla_foundry/main.py --help")
        return 0
    try:
        launch(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        if type(e).__name__ != "TrainingFailedError":
            raise
        # Ray Train gave up (more failures than --ray.max_failures): its message names the worker error.
        print(f"error: training failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
