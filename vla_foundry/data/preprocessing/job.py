"""The shape every preprocessing job shares: read tasks on Ray -> spools -> shuffled shards -> dataset files.

    <output_dir>/_work/run.json                 fingerprint of the run (params that decide the output)
    <output_dir>/_work/tasks/<task>.tar         samples of one read task (a spool), + .index.json
    <output_dir>/_work/tasks/<task>.done.json   written last by a task: counts, failures (resume skips it)
    <output_dir>/shards/                        manifest.jsonl, shard_*.tar, + the job's dataset files;
                                                processing_metadata.json is written last (the job is complete)

A re-run with the same fingerprint resumes (finished tasks and finished shards are skipped); a different one is
refused with both fingerprints' sources named, unless `--overwrite True`. Shard contents depend only on the
spools and the seed, never on which task finished first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vla_foundry import storage
from vla_foundry.data.preprocessing.shard_writing import (
    SpoolEntry,
    SpoolWriter,
    plan_shards,
    shard_name,
    write_manifest,
    write_shard,
)
from vla_foundry.params.parsing import params_to_dict

logger = logging.getLogger(__name__)

WORK_DIR = "_work"
DATASET_DIR = "shards"
# Params that change how a job runs, not what it writes: excluded from the fingerprint.
RUN_ONLY_FIELDS = (
    "ray_address",
    "num_cpus",
    "overwrite",
    "keep_work_dir",
    "show_progress",
    "max_failure_fraction",
    "record_git_commit",
)


class JobError(RuntimeError):
    """A preprocessing job cannot go on; the message says why and what to do."""


@dataclass
class TaskResult:
    """What a read task reports (stored as <task>.done.json)."""

    task_id: str
    inputs: int  # episodes / files read by the task
    samples: int
    potential: int
    failures: list[dict] = field(default_factory=list)  # {"id", "reason", "kind", "potential"}
    dropped: dict[str, int] = field(default_factory=dict)  # samples dropped by reason
    counters: dict[str, int] = field(default_factory=dict)
    # Robotics: the quality report of each converted episode (episode_quality.py).
    quality: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        return self.__dict__.copy()


@dataclass
class JobPaths:
    output_dir: str

    @property
    def work(self) -> str:
        return storage.join(self.output_dir, WORK_DIR)

    @property
    def dataset(self) -> str:
        return storage.join(self.output_dir, DATASET_DIR)

    def task_file(self, task_id: str, suffix: str) -> str:
        return storage.join(self.work, "tasks", f"{task_id}{suffix}")


def fingerprint(kind: str, params: Any) -> tuple[str, dict]:
    config = {k: v for k, v in params_to_dict(params).items() if k not in RUN_ONLY_FIELDS}
    payload = {"kind": kind, "params": config}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return digest, payload


def prepare_output(paths: JobPaths, kind: str, params: Any) -> tuple[str, bool]:
    """Refuse, resume or start; returns (fingerprint, already complete)."""
    digest, payload = fingerprint(kind, params)
    if params.overwrite:
        storage.remove(paths.work)
        storage.remove(paths.dataset)
    metadata_path = storage.join(paths.dataset, "processing_metadata.json")
    run_path = storage.join(paths.work, "run.json")
    if storage.exists(metadata_path):
        previous = json.loads(storage.read_text(metadata_path)).get("fingerprint")
        if previous == digest:
            return digest, True
        raise JobError(
            f"{paths.output_dir} already holds a finished dataset made with different settings (fingerprint "
            f"{previous}, this run {digest}); choose another --output_dir or pass --overwrite True to replace it"
        )
    if storage.exists(run_path):
        previous_run = json.loads(storage.read_text(run_path))
        if previous_run.get("fingerprint") != digest:
            changed = _changed_keys(previous_run.get("payload", {}).get("params", {}), payload["params"])
            raise JobError(
                f"{paths.output_dir} holds an unfinished run with different settings (changed: {changed}); "
                f"re-run with the same settings to resume it, choose another --output_dir, or pass --overwrite True"
            )
        logger.info("resuming the unfinished run in %s", paths.output_dir)
        return digest, False
    if storage.exists(storage.join(paths.dataset, "manifest.jsonl")):
        raise JobError(
            f"{paths.dataset} holds a dataset this job did not write (no processing_metadata.json); "
            f"choose another --output_dir or pass --overwrite True"
        )
    storage.write_text(run_path, json.dumps({"fingerprint": digest, "payload": payload}, indent=1, sort_keys=True))
    return digest, False


def _changed_keys(old: dict, new: dict) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


class TaskSpool:
    """A read task's output: a local spool (uploaded / renamed on commit) and its done marker."""

    def __init__(self, paths: JobPaths, task_id: str) -> None:
        self.paths = paths
        self.task_id = task_id
        # Local output: spool inside _work so the final rename stays on one filesystem (atomic). S3 output: a
        # local temp dir, uploaded on commit.
        parent = None
        if not storage.is_s3(paths.work):
            parent = storage.join(paths.work, "tmp")
            os.makedirs(parent, exist_ok=True)
        self.local_dir = tempfile.mkdtemp(prefix=f"{task_id}_", dir=parent)
        self.writer = SpoolWriter(os.path.join(self.local_dir, "spool.tar"))
        self.extra_files: dict[str, bytes] = {}

    def commit(self, result: TaskResult) -> None:
        """Move the spool and its index into _work/tasks, then write the done marker last."""
        entries = self.writer.close()
        spool_path = self.paths.task_file(self.task_id, ".tar")
        if storage.is_s3(spool_path):
            storage.upload_file(self.writer.path, spool_path)
        else:
            os.makedirs(os.path.dirname(spool_path), exist_ok=True)
            os.replace(self.writer.path, spool_path)
        for suffix, data in self.extra_files.items():
            storage.write_bytes(self.paths.task_file(self.task_id, suffix), data)
        index = [[e.key, e.offset, e.length] for e in entries]
        storage.write_text(self.paths.task_file(self.task_id, ".index.json"), json.dumps(index))
        storage.write_text(self.paths.task_file(self.task_id, ".done.json"), json.dumps(result.to_json()))
        storage.remove(self.local_dir)

    def discard(self) -> None:
        self.writer.file.close()
        storage.remove(self.local_dir)


def init_ray(params: Any) -> bool:
    """Connect to `--ray_address` or start a local Ray; returns whether this call started it."""
    if not params.ray_address:
        from vla_foundry.local_ray import prepare_local_ray_environment

        prepare_local_ray_environment()
    import ray

    if ray.is_initialized():
        return False
    if params.ray_address:
        ray.init(address=params.ray_address, log_to_driver=True)
    else:
        ray.init(num_cpus=params.num_cpus, include_dashboard=False, log_to_driver=True)
    return True


def run_remote(
    fn: Callable[..., Any],
    args: list[tuple],
    max_in_flight: int,
    on_done: Callable[[int, Any], None],
) -> None:
    """Run fn(*a) for each a as Ray tasks (1 CPU each), at most `max_in_flight` at once; results in on_done."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=1)(fn)
    env = forwarded_env()
    if env:
        remote = remote.options(runtime_env={"env_vars": env})
    pending: dict[Any, int] = {}
    queue = list(enumerate(args))
    while queue or pending:
        while queue and len(pending) < max_in_flight:
            i, a = queue.pop(0)
            pending[remote.remote(*a)] = i
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as e:
                # Surface the task's own exception (its message names the episode / file), not Ray's wrapper.
                cause = getattr(e, "cause", None)
                if isinstance(cause, Exception):
                    raise cause from None
                raise
            on_done(i, value)


def forwarded_env() -> dict[str, str]:
    """S3 and Hub settings of the driver that workers need too: a custom S3 endpoint (and, for it, its
    credentials); the Hub cache, offline mode, endpoint and token (hf:// sources read in the tasks).

    Workers of an existing cluster otherwise use their own environment and credentials (e.g. instance roles).
    """
    names = ["VLA_FOUNDRY_S3_ATTEMPTS", "VLA_FOUNDRY_S3_BACKOFF_S"]
    names += ["HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN"]
    if os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL_S3"):
        names += ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        names += ["AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"]
    return {n: os.environ[n] for n in names if n in os.environ}


def max_in_flight() -> int:
    import ray

    # Two tasks per CPU keep every core busy while bounding how many spools are open at once.
    return max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))


def _load_result(paths: JobPaths, task_id: str) -> TaskResult | None:
    path = paths.task_file(task_id, ".done.json")
    if not storage.exists(path):
        return None
    return TaskResult(**json.loads(storage.read_text(path)))


def _write_shard_group(shard_jobs: list[tuple[str, list[tuple[str, int, int]]]]) -> list[int]:
    return [write_shard(path, parts) for path, parts in shard_jobs]


@dataclass
class JobOutcome:
    dataset_dir: str
    results: list[TaskResult]
    shard_counts: list[int]
    fingerprint: str
    resumed_tasks: int
    already_complete: bool = False
    metadata: dict = field(default_factory=dict)


def run_job(
    kind: str,
    params: Any,
    task_ids: list[str],
    task_args: list[tuple],
    task_fn: Callable[..., dict],
    task_inputs: list[int],
    finalize: Callable[[JobPaths, list[TaskResult]], dict],
    sources: list[str],
    check_results: Callable[[list[TaskResult]], None] | None = None,
) -> JobOutcome:
    """Run read tasks (skipping finished ones), check failures, write shards, then the job's dataset files.

    `task_fn(*task_args[i], output_dir)` must commit a TaskSpool and return its TaskResult as a dict;
    `finalize` writes the job's own files (stats.json, preprocessing_config.yaml) and returns extra metadata;
    `check_results`, when given, may end the job (raising) after reading, before any shard is written.
    """
    from tqdm import tqdm

    paths = JobPaths(params.output_dir.rstrip("/"))
    digest, complete = prepare_output(paths, kind, params)
    if complete:
        metadata = json.loads(storage.read_text(storage.join(paths.dataset, "processing_metadata.json")))
        logger.info("%s is already complete; nothing to do", paths.dataset)
        return JobOutcome(paths.dataset, [], metadata.get("shard_sample_counts", []), digest, 0, True, metadata)
    if len(set(task_ids)) != len(task_ids):
        raise JobError("read task ids are not unique; two sources hold episodes with the same id")

    started = time.time()
    results: list[TaskResult | None] = [_load_result(paths, t) for t in task_ids]
    resumed = sum(r is not None for r in results)
    todo = [i for i, r in enumerate(results) if r is None]
    started_ray = init_ray(params)
    try:
        bar = tqdm(
            total=sum(task_inputs), unit="ep" if kind == "robotics" else "file", disable=not params.show_progress
        )
        bar.update(sum(task_inputs[i] for i in range(len(task_ids)) if results[i] is not None))
        samples = sum(r.samples for r in results if r is not None)

        def on_done(j: int, result: dict) -> None:
            nonlocal samples
            i = todo[j]
            results[i] = TaskResult(**result)
            samples += results[i].samples
            bar.update(task_inputs[i])
            bar.set_postfix(samples=samples, failed=sum(len(r.failures) for r in results if r is not None))

        run_remote(task_fn, [(*task_args[i], params.output_dir) for i in todo], max_in_flight(), on_done)
        bar.close()
        final = [r for r in results if r is not None]
        _check_failures(kind, params, final, paths)
        if check_results is not None:
            check_results(final)

        # Every sample of every task, in task order; the seeded permutation cuts them into shards.
        entries: list[tuple[str, SpoolEntry]] = []
        for task_id in task_ids:
            index = json.loads(storage.read_text(paths.task_file(task_id, ".index.json")))
            spool = paths.task_file(task_id, ".tar")
            entries.extend((spool, SpoolEntry(k, o, n)) for k, o, n in index)
        if not entries:
            raise JobError(f"no samples were produced from {sources}; see the failures above")
        keys = [e.key for _, e in entries]
        if len(set(keys)) != len(keys):
            duplicate = next(k for k in keys if keys.count(k) > 1)
            raise JobError(f"sample key {duplicate} occurs twice: two sources hold the same episode id")
        shards = plan_shards(entries, params.samples_per_shard, params.seed)
        shard_jobs = []
        for s, members in enumerate(shards):
            path = storage.join(paths.dataset, f"{shard_name(s)}.tar")
            if storage.exists(path):
                continue  # finished in an earlier attempt (shards only ever appear whole)
            parts = [(entries[i][0], entries[i][1].offset, entries[i][1].length) for i in members]
            shard_jobs.append((path, parts))
        # Group a few shards per Ray task so tiny shards do not pay one task each.
        groups = [shard_jobs[i : i + 4] for i in range(0, len(shard_jobs), 4)]
        shard_bar = tqdm(total=len(shard_jobs), unit="shard", disable=not params.show_progress)
        run_remote(
            _write_shard_group,
            [(g,) for g in groups],
            max_in_flight(),
            lambda i, sizes: shard_bar.update(len(sizes)),
        )
        shard_bar.close()
    finally:
        if started_ray:
            import ray

            ray.shutdown()

    counts = [len(s) for s in shards]
    write_manifest(paths.dataset, counts)
    extra = finalize(paths, final)
    metadata = processing_metadata(kind, params, digest, sources, final, counts, started)
    metadata.update(extra)
    if not params.keep_work_dir:
        storage.remove(paths.work)
    # Written last: its presence means the dataset is complete.
    storage.write_text(
        storage.join(paths.dataset, "processing_metadata.json"), json.dumps(metadata, indent=1, sort_keys=True)
    )
    return JobOutcome(paths.dataset, final, counts, digest, resumed, False, metadata)


def _check_failures(kind: str, params: Any, results: list[TaskResult], paths: JobPaths) -> None:
    inputs = sum(r.inputs for r in results)
    failures = [f for r in results for f in r.failures]
    for f in failures:
        logger.warning(
            "%s %s failed (%s): %s", "episode" if kind == "robotics" else "input", f["id"], f["kind"], f["reason"]
        )
    if inputs and len(failures) / inputs > params.max_failure_fraction:
        listing = "; ".join(f"{f['id']}: {f['reason']}" for f in failures[:20])
        more = f" (and {len(failures) - 20} more)" if len(failures) > 20 else ""
        raise JobError(
            f"{len(failures)} of {inputs} inputs failed, above max_failure_fraction={params.max_failure_fraction}: "
            f"{listing}{more}. Finished tasks are kept in {paths.work}; fix the inputs or raise "
            f"--max_failure_fraction, and re-run to resume"
        )


def package_versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("vla_foundry", "numpy", "pyarrow", "av", "ray", "pillow", "webdataset", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    try:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def processing_metadata(
    kind: str,
    params: Any,
    digest: str,
    sources: list[str],
    results: list[TaskResult],
    counts: list[int],
    started: float,
) -> dict:
    failures = [f for r in results for f in r.failures]
    dropped: dict[str, int] = {}
    failed_by_kind: dict[str, int] = {}
    for r in results:
        for reason, n in r.dropped.items():
            dropped[reason] = dropped.get(reason, 0) + n
    for f in failures:
        failed_by_kind[f["kind"]] = failed_by_kind.get(f["kind"], 0) + 1
    counters: dict[str, int] = {}
    for r in results:
        for name, n in r.counters.items():
            counters[name] = counters.get(name, 0) + n
    return {
        "kind": kind,
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "versions": package_versions(),
        "git_commit": git_commit() if params.record_git_commit else None,
        "fingerprint": digest,
        "sources": list(sources),
        "output_dir": params.output_dir,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "elapsed_s": round(time.time() - started, 3),
        "num_read_tasks": len(results),
        "inputs": sum(r.inputs for r in results),
        "inputs_failed": len(failures),
        "inputs_failed_by_reason": failed_by_kind,
        "failures": failures,
        "samples": {
            "potential": sum(r.potential for r in results),
            "written": sum(counts),
            "dropped": dropped,
        },
        "num_shards": len(counts),
        "shard_sample_counts": counts,
        "counters": counters,
        "seed": params.seed,
        "samples_per_shard": params.samples_per_shard,
    }
