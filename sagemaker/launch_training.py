"""Launch a training job on SageMaker: the training flags of `vla_foundry/main.py` plus a `--sagemaker.*` group.

    uv run --group sagemaker sagemaker/launch_training.py \\
        --sagemaker.user alice --sagemaker.instance_count 2 --sagemaker.instance_type ml.p5.48xlarge \\
        --config_path config_presets/training_jobs/quickstart.yaml --remote_sync s3://bucket/runs

The training flags are parsed and validated here, with the job's world size, before anything is submitted; on the
instances SageMaker runs `torchrun` (one process per GPU, every node) on `vla_foundry/main.py` with the same flags.
`--sagemaker.dry_run True` prints the estimator settings, the image and the hyperparameters and exits without
importing or calling anything of AWS. WANDB_API_KEY and HF_TOKEN set in the launching shell are passed on to the
job's environment; secret values (those and AWS credentials, or any `--sagemaker.environment` entry named like a
key, token, secret or password) are printed as `***`.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from vla_foundry.params.base_params import ConfigError  # noqa: E402
from vla_foundry.secret_values import FORWARDED_SECRETS, is_secret_name, mask_secrets  # noqa: E402

# GPUs per instance of the common training instance types (processes per node under torchrun), per AWS's
# accelerated-computing instance tables: p4d/p4de 8x A100, p5 8x H100, p5e/p5en 8x H200; g5 (A10G) and g6e (L40S)
# have 1 GPU up to 16xlarge, 4 at 12xlarge and 24xlarge, 8 at 48xlarge.
GPUS_PER_INSTANCE = {
    "ml.p5e.48xlarge": 8,
    "ml.p5en.48xlarge": 8,
    "ml.p5.48xlarge": 8,
    "ml.p4de.24xlarge": 8,
    "ml.p4d.24xlarge": 8,
    **{
        f"ml.{family}.{size}": 1
        for family in ("g5", "g6e")
        for size in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")
    },
    **{f"ml.{family}.{size}": 4 for family in ("g5", "g6e") for size in ("12xlarge", "24xlarge")},
    **{f"ml.{family}.48xlarge": 8 for family in ("g5", "g6e")},
}
# A family alone (as in VLA Foundry's launcher, `--sagemaker.instance_type p4de`) means its 8-GPU size.
SHORT_INSTANCE_TYPES = {
    "p4d": "ml.p4d.24xlarge",
    "p4de": "ml.p4de.24xlarge",
    "p5": "ml.p5.48xlarge",
    "p5e": "ml.p5e.48xlarge",
    "p5en": "ml.p5en.48xlarge",
    "g5": "ml.g5.48xlarge",
    "g6e": "ml.g6e.48xlarge",
}


def resolve_instance_type(name: str) -> str:
    """`p4de` -> `ml.p4de.24xlarge` (a family alone), `g5.12xlarge` -> `ml.g5.12xlarge`; `ml.*` names unchanged."""
    if name in SHORT_INSTANCE_TYPES:
        return SHORT_INSTANCE_TYPES[name]
    return name if name.startswith("ml.") else f"ml.{name}"


def job_name_user(user: str) -> str:
    """A user name as SageMaker job names allow it: `your.user.name` -> `your-user-name` (runs of characters outside
    [A-Za-z0-9-] become one '-'; no leading or trailing '-')."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", user).strip("-")


ENTRY_POINT = "vla_foundry/main.py"
SAGEMAKER_PREFIX = "--sagemaker."


@dataclass(frozen=True)
class SageMakerParams:
    # Who launches: a tag on the job and, with characters outside [A-Za-z0-9-] turned into '-', the job name's start.
    user: str = ""
    instance_count: int = 1
    # A SageMaker type, the same without "ml.", or a family alone (p4d, p4de, p5, p5e, p5en, g5, g6e: its 8-GPU size).
    instance_type: str = "ml.p5.48xlarge"
    # Processes per instance; None takes the instance type's GPU count.
    nproc_per_node: int | None = None
    # Training image (ECR URI); None means <account>.dkr.ecr.<region>.amazonaws.com/<image_name>:<image_tag>.
    image: str | None = None
    image_name: str = "vla_foundry"
    image_tag: str = "latest"
    # IAM role ARN; None uses the current SageMaker execution role.
    role: str | None = None
    region: str | None = None
    max_run_hours: float = 72.0
    volume_size_gb: int = 500
    # Managed spot training (max_wait_hours >= max_run_hours).
    spot: bool = False
    max_wait_hours: float | None = None
    # Where the run dir is synced when the training flags give no --remote_sync: <output_s3>/<user>/<run name>
    # (--remote_sync <output_s3>/<user>; the run appends its name).
    output_s3: str | None = None
    # Extra environment variables for the training processes (e.g. WANDB_API_KEY is read from here).
    environment: dict[str, str] = field(default_factory=dict)
    # Submit and return (False: stream the logs until the job ends).
    detach: bool = True
    dry_run: bool = False

    def validate(self) -> None:
        if not self.user:
            raise ConfigError("sagemaker.user is required (it names the job and tags it)")
        if not job_name_user(self.user):
            raise ConfigError(f"sagemaker.user={self.user!r} has no letter or digit to name the job with")
        if self.instance_count < 1:
            raise ConfigError(f"sagemaker.instance_count={self.instance_count} must be >= 1")
        if self.nproc_per_node is None and self.ml_instance_type not in GPUS_PER_INSTANCE:
            import difflib

            known = [*SHORT_INSTANCE_TYPES, *GPUS_PER_INSTANCE]
            close = difflib.get_close_matches(self.instance_type, known, n=3, cutoff=0.5)
            raise ConfigError(
                f"sagemaker.instance_type={self.instance_type!r} has no known GPU count"
                + (f" (closest: {', '.join(close)})" if close else "")
                + f"; give --sagemaker.nproc_per_node N or one of: {', '.join(known)}"
            )
        if self.output_s3 is not None and not self.output_s3.startswith("s3://"):
            raise ConfigError(f"sagemaker.output_s3={self.output_s3!r} must be an s3:// URL")
        if self.spot and self.max_wait_hours is not None and self.max_wait_hours < self.max_run_hours:
            raise ConfigError("sagemaker.max_wait_hours must be >= sagemaker.max_run_hours for spot training")

    @property
    def ml_instance_type(self) -> str:
        """The instance type as SageMaker names it (short names resolved)."""
        return resolve_instance_type(self.instance_type)

    @property
    def procs_per_node(self) -> int:
        return self.nproc_per_node or GPUS_PER_INSTANCE[self.ml_instance_type]

    @property
    def world_size(self) -> int:
        return self.instance_count * self.procs_per_node


def split_args(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """(sagemaker flags without the prefix, training flags). Accepts `--flag value` and `--flag=value`."""
    sagemaker_args: list[str] = []
    train_args: list[str] = []
    i = 0
    args = list(args)
    while i < len(args):
        arg = args[i]
        if arg.startswith(SAGEMAKER_PREFIX):
            flag = "--" + arg[len(SAGEMAKER_PREFIX) :]
            if "=" in flag:
                sagemaker_args.append(flag)
                i += 1
                continue
            if i + 1 >= len(args):
                raise ConfigError(f"{arg} needs a value")
            sagemaker_args += [flag, args[i + 1]]
            i += 2
            continue
        train_args.append(arg)
        i += 1
    return sagemaker_args, train_args


def train_flags_to_hyperparameters(train_args: Sequence[str]) -> dict[str, str]:
    """SageMaker passes each hyperparameter back as `--key value` to the entry point, in order."""
    out: dict[str, str] = {}
    i = 0
    while i < len(train_args):
        arg = train_args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}: training flags are --group.field VALUE pairs")
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(train_args):
                raise ConfigError(f"{arg} needs a value")
            key, value = arg[2:], train_args[i + 1]
            i += 2
        out[key] = value
    return out


def job_name(user: str, run_name: str, now: datetime.datetime | None = None) -> str:
    """`<user>-<run>-<UTC time>`, cut to SageMaker's 63 characters of [A-Za-z0-9-]."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%d-%H%M%S")
    head = f"{job_name_user(user)}-{job_name_user(run_name)}"[: 63 - len(stamp) - 1].rstrip("-")
    return f"{head}-{stamp}"


def build_launch(sm: SageMakerParams, train_args: Sequence[str]) -> dict:
    """Validate the training flags with the job's world size and assemble the job description (no AWS calls)."""
    from vla_foundry.params import parse_train_params

    sm.validate()
    hyperparameters = train_flags_to_hyperparameters(train_args)
    # The batch math (global = per-GPU x world x accumulation) is checked for the job's world size now, not on
    # the instances an hour later.
    saved = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = str(sm.world_size)
    try:
        params = parse_train_params(list(train_args))
    finally:
        if saved is None:
            os.environ.pop("WORLD_SIZE", None)
        else:
            os.environ["WORLD_SIZE"] = saved
    run_name = params.name or f"{params.model.type}"
    name = job_name(sm.user, run_name)
    if params.name is None:
        # Every node must agree on the run dir: name the run after the job.
        hyperparameters["name"] = name
    if params.remote_sync is None and sm.output_s3:
        # The training run adds its own name: the run dir lands in <output_s3>/<user>/<run name>.
        hyperparameters["remote_sync"] = f"{sm.output_s3.rstrip('/')}/{sm.user}"
    if "save_path" not in hyperparameters:
        # Local disk of the instance (the volume); remote_sync carries the run dir to s3.
        hyperparameters["save_path"] = "/opt/ml/checkpoints"
    image = sm.image or f"<account>.dkr.ecr.<region>.amazonaws.com/{sm.image_name}:{sm.image_tag}"
    estimator = {
        "entry_point": ENTRY_POINT,
        "source_dir": REPO_ROOT,
        "image_uri": image,
        "role": sm.role or "<SageMaker execution role>",
        "instance_count": sm.instance_count,
        "instance_type": sm.ml_instance_type,
        "distribution": {"torch_distributed": {"enabled": True}},
        "max_run": int(sm.max_run_hours * 3600),
        "volume_size": sm.volume_size_gb,
        "use_spot_instances": sm.spot,
        "environment": {"OMP_NUM_THREADS": "1", **forwarded_secrets(os.environ), **sm.environment},
        "tags": [{"Key": "user", "Value": sm.user}],
    }
    if sm.spot:
        estimator["max_wait"] = int((sm.max_wait_hours or sm.max_run_hours) * 3600)
    return {
        "job_name": name,
        "world_size": sm.world_size,
        "processes_per_node": sm.procs_per_node,
        "image": image,
        "estimator": estimator,
        "hyperparameters": hyperparameters,
    }


def forwarded_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """WANDB_API_KEY / HF_TOKEN of the launching shell, passed on to the job's environment (AWS credentials are
    not: the job uses its IAM role). Printed only masked."""
    return {name: environ[name] for name in FORWARDED_SECRETS if environ.get(name)}


def printable(value: Any, sm: SageMakerParams | None = None) -> Any:
    """`value` with every secret shown as `***` (secret-named variables, and secret values found in any text)."""
    extra = [v for k, v in (sm.environment if sm else {}).items() if is_secret_name(k)]
    return mask_secrets(value, extra)


def aws_session(sm: SageMakerParams) -> Any:
    """The boto3 session the job is submitted with; a ConfigError (one line) when credentials, the region or the
    sagemaker package are missing, before anything is sent to AWS."""
    import boto3

    session = boto3.Session(region_name=sm.region) if sm.region else boto3.Session()
    if session.get_credentials() is None:
        raise ConfigError(
            "no AWS credentials found: run `aws configure` or set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY); --sagemaker.dry_run True shows the job without AWS"
        )
    if not session.region_name:
        raise ConfigError("no AWS region: set --sagemaker.region (e.g. us-east-1) or AWS_REGION")
    try:
        from sagemaker.pytorch import PyTorch  # noqa: F401
    except ImportError:
        raise ConfigError(
            "the sagemaker package is not installed: run the launcher as `uv run --group sagemaker "
            "sagemaker/launch_training.py ...`"
        ) from None
    return session


def resolve_aws(launch: dict, sm: SageMakerParams) -> dict:
    """Fill the account-dependent parts (image URI, role) from the AWS session."""
    import sagemaker

    session = aws_session(sm)
    region = session.region_name
    if sm.image is None:
        account = session.client("sts").get_caller_identity()["Account"]
        launch["image"] = f"{account}.dkr.ecr.{region}.amazonaws.com/{sm.image_name}:{sm.image_tag}"
        launch["estimator"]["image_uri"] = launch["image"]
    launch["estimator"]["role"] = sm.role or sagemaker.get_execution_role(sagemaker.Session(boto_session=session))
    launch["region"] = region
    return launch


def submit(launch: dict, sm: SageMakerParams) -> str:
    import boto3
    from sagemaker.pytorch import PyTorch

    import sagemaker

    session = sagemaker.Session(boto_session=boto3.Session(region_name=launch["region"]))
    estimator = PyTorch(hyperparameters=launch["hyperparameters"], sagemaker_session=session, **launch["estimator"])
    estimator.fit(job_name=launch["job_name"], wait=not sm.detach)
    return launch["job_name"]


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry.params.parsing import parse_params

    args = list(sys.argv[1:] if argv is None else argv)
    if "--help" in args or "-h" in args:
        print(__doc__)
        print("--sagemaker.* fields:")
        for name, value in asdict(SageMakerParams()).items():
            print(f"  --sagemaker.{name}  (default {value!r})")
        print("Training flags: see `python vla_foundry/main.py --help`.")
        return 0
    try:
        sagemaker_args, train_args = split_args(args)
        sm = parse_params(SageMakerParams, sagemaker_args)
        launch = build_launch(sm, train_args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {printable(str(e))}", file=sys.stderr)
        return 2
    if sm.dry_run:
        print(json.dumps(printable(launch, sm), indent=2))
        return 0
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        launch = resolve_aws(launch, sm)
        name = submit(launch, sm)
    except ConfigError as e:
        print(f"error: {printable(str(e))}", file=sys.stderr)
        return 2
    except (BotoCoreError, ClientError) as e:
        # Expired credentials, a missing role or ECR image, a quota: AWS's own message says which.
        print(f"error: AWS refused the job: {printable(str(e))}", file=sys.stderr)
        return 2
    print(f"submitted SageMaker training job {name} ({sm.instance_count} x {sm.ml_instance_type})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
