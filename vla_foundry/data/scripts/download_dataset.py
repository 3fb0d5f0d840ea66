"""Download public LBM / Spartan tasks from the public S3 registry with unsigned requests (no credentials).

    python vla_foundry/data/scripts/download_dataset.py --list
    python vla_foundry/data/scripts/download_dataset.py --task BimanualPutRedBellPepperInBin --local_path /tmp/raw_data --raw
    python vla_foundry/data/scripts/download_dataset.py --task BimanualPutRedBellPepperInBin --local_path /tmp/data

Registry layout (under s3://<bucket>/<prefix>/): `raw/tasks/<Task>/...` holds Spartan episode folders, and
`preprocessed/<Task>/...` training-ready shards. With --raw a task lands in <local_path>/tasks/<Task>/ (the
layout `preprocess_robotics_to_tar.py --type spartan` reads); without it in <local_path>/<Task>/. Files already
present with the right size are skipped, so an interrupted download resumes. The endpoint follows
AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 (any S3-compatible server).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from vla_foundry.params.base_params import ConfigError

DEFAULT_BUCKET = "tri-ml-public"
DEFAULT_PREFIX = "vla_foundry/lbm"


class DownloadError(RuntimeError):
    """A task cannot be found or a file cannot be downloaded; the message names it."""


def _client():
    from vla_foundry import storage

    return storage.s3_client(unsigned=True)


def _root(prefix: str, raw: bool) -> str:
    return "/".join(p for p in (prefix.strip("/"), "raw/tasks" if raw else "preprocessed") if p) + "/"


@dataclasses.dataclass(frozen=True)
class DownloadParams:
    """`download_dataset.py`: which tasks of the public registry, and where they go."""

    # Task names, e.g. [BimanualPutRedBellPepperInBin] (a repeated --task adds one).
    task: tuple[str, ...] = ()
    # Where to put the files.
    local_path: str | None = None
    # Raw Spartan episodes instead of preprocessed shards.
    raw: bool = False
    # List the available tasks and exit.
    list: bool = False
    # The registry's S3 bucket.
    bucket: str = DEFAULT_BUCKET
    # The registry's prefix in the bucket.
    prefix: str = DEFAULT_PREFIX
    # Files downloaded at once.
    workers: int = 8

    def validate(self) -> None:
        if not self.list and (not self.task or not self.local_path):
            raise ConfigError("--task and --local_path are required (or --list)")


def list_tasks(bucket: str, prefix: str, raw: bool) -> list[str]:
    """Task names available in the registry (the folders under its raw/ or preprocessed/ root)."""
    root = _root(prefix, raw)
    names: list[str] = []
    for page in _list_pages(bucket, root, delimiter="/"):
        names.extend(p["Prefix"][len(root) :].strip("/") for p in page.get("CommonPrefixes", []))
    return sorted(names)


def task_objects(bucket: str, prefix: str, task: str, raw: bool) -> list[tuple[str, int]]:
    root = _root(prefix, raw) + task + "/"
    objects: list[tuple[str, int]] = []
    for page in _list_pages(bucket, root):
        objects.extend((o["Key"], int(o["Size"])) for o in page.get("Contents", []))
    return objects


def _list_pages(bucket: str, prefix: str, delimiter: str | None = None) -> list[dict]:
    """All listing pages under a prefix; an unreachable endpoint or bucket becomes one `DownloadError`."""
    kwargs = {"Bucket": bucket, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
    try:
        return list(_client().get_paginator("list_objects_v2").paginate(**kwargs))
    except Exception as e:  # botocore raises connection, credential and client errors of unrelated types
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "the public S3"
        raise DownloadError(f"cannot list s3://{bucket}/{prefix} at {endpoint}: {e}") from e


def download_task(task: str, params: DownloadParams) -> list[str]:
    """Download every file of `task` from `params.bucket` / `params.prefix` under `params.local_path`; returns the
    local paths (skipping files already complete)."""
    local_path, raw, bucket, prefix = str(params.local_path), params.raw, params.bucket, params.prefix
    objects = task_objects(bucket, prefix, task, raw)
    if not objects:
        available = list_tasks(bucket, prefix, raw)
        kind = "raw" if raw else "preprocessed"
        raise DownloadError(
            f"no {kind} task {task!r} in s3://{bucket}/{_root(prefix, raw)}; available: {', '.join(available) or 'none'}"
        )
    strip = _root(prefix, raw)
    base = os.path.join(local_path, "tasks") if raw else local_path
    client = _client()

    def fetch(item: tuple[str, int]) -> str:
        key, size = item
        local = os.path.join(base, *key[len(strip) :].split("/"))
        if os.path.exists(local) and os.path.getsize(local) == size:
            return local
        os.makedirs(os.path.dirname(local), exist_ok=True)
        tmp = f"{local}.part-{os.getpid()}"
        try:
            client.download_file(bucket, key, tmp)
            if os.path.getsize(tmp) != size:
                raise DownloadError(f"s3://{bucket}/{key}: got {os.path.getsize(tmp)} bytes, expected {size}")
            os.replace(tmp, local)
        except Exception as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(e, DownloadError):
                raise
            raise DownloadError(f"downloading s3://{bucket}/{key} failed: {e}") from e
        return local

    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=params.workers) as pool:
        return list(tqdm(pool.map(fetch, objects), total=len(objects), unit="file", desc=task))


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry.cli import run_command

    return run_command(
        DownloadParams,
        _run,
        argv,
        prog="python vla_foundry/data/scripts/download_dataset.py",
        doc=__doc__,
        errors=(DownloadError,),
    )


def _run(params: DownloadParams) -> None:
    if params.list:
        for name in list_tasks(params.bucket, params.prefix, params.raw):
            print(name)
        return
    for task in params.task:
        files = download_task(task, params)
        print(f"{task}: {len(files)} files under {params.local_path}")


if __name__ == "__main__":
    sys.exit(main())
