"""Share runs and datasets through the Hugging Face Hub.

    python -m vla_foundry.hub push RUN org/name [--checkpoint N] [--ema] [--private] [--revision BRANCH] \\
        [--with_optimizer] [--results results.json] [--dry_run]
    python -m vla_foundry.hub pull org/name DIR [--revision R]          # or hf://datasets/org/name DIR
    python -m vla_foundry.hub push_dataset DIR org/name [--private] [--revision BRANCH] [--dry_run]

`push` uploads, in one commit, what inference needs from a run (local or s3://): the exported
`model.safetensors` of the chosen checkpoint (and `ema.safetensors` with `--ema`), the configs, the normaliser and
processor configs, the statistics and preprocessing metadata, `metrics.jsonl` with its plot, the simulation
`results.json` when the run has one, and a model card (README.md). `--with_optimizer` adds the whole checkpoint
directory (optimizer and trainer state) so that training can resume from a pull. A pushed run is read back by
every command as `hf://org/name` (`Policy.from_run`, `eval.sim --run_dir`, the policy server, `backbone_run`...).

The only function that talks to the Hub when pushing is `upload`; everything before it (the plan: files, commit
operations, card) is built offline and printed by `--dry_run`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import yaml

from vla_foundry import storage

LIBRARY_NAME = "vla_foundry"
CARD = "README.md"
METRICS_PLOT = "metrics.png"
RESULTS_NAME = "results.json"
# Top-level files of a run dir that a pushed run carries when present (docs/formats.md §6).
RUN_FILES = (
    "config.yaml",
    "config_model.yaml",
    "config_processor.yaml",
    "config_normalizer.yaml",
    "stats.json",
    "preprocessing_config.yaml",
    "processing_metadata.json",
    "metrics.jsonl",
)


class HubError(ValueError):
    """A push or pull cannot be done as asked; the message names what and where."""


@dataclasses.dataclass(frozen=True)
class PushPlan:
    """Everything one push uploads, as one commit: `files` maps path in the repo -> local file (the card too)."""

    repo_id: str
    repo_type: str
    files: dict[str, str]
    card: str
    private: bool = False
    revision: str | None = None
    commit_message: str = "Upload with vla_foundry"

    def operations(self) -> list[Any]:
        """The commit operations of the push (one `CommitOperationAdd` per file), in path order."""
        from huggingface_hub import CommitOperationAdd

        return [CommitOperationAdd(path_in_repo=p, path_or_fileobj=self.files[p]) for p in sorted(self.files)]

    def describe(self) -> str:
        """The file list (with sizes) and the card, as `--dry_run` prints them."""
        where = f"{'datasets/' if self.repo_type == 'dataset' else ''}{self.repo_id}"
        lines = [f"push to hf://{where} (branch {self.revision or 'main'}, {'private' if self.private else 'public'})"]
        lines.append(f"{len(self.files)} files, one commit ({self.commit_message!r}):")
        lines += [f"  {p}  ({os.path.getsize(self.files[p]):,} bytes)" for p in sorted(self.files)]
        return "\n".join(lines) + f"\n--- {CARD} ---\n{self.card}"


def sha256_of(path: str) -> str:
    """sha256 of a file (local, s3:// or hf://)."""
    digest = hashlib.sha256()
    with storage.open_read(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def repo_id_of(name: str) -> tuple[str, str, str | None]:
    """(repo id, repo type, revision) of `org/name`, `datasets/org/name`, or an hf:// URL of either."""
    ref = storage.parse_hf(name if storage.is_hf(name) else storage.HF_PREFIX + name)
    if ref.path:
        raise HubError(f"{name}: give a repo (org/name or datasets/org/name), not a path inside one ({ref.path})")
    return ref.repo_id, ref.repo_type, ref.revision


# ------------------------------------------------------------------------------------------- model card


def read_results(path: str) -> dict[str, Any] | None:
    """A sim `results.json` (python -m vla_foundry.eval.sim) as {"env", "summary", "tasks": {name: summary}}, or
    None when it holds no summary. Read defensively: multi-task suites may add per-task summaries under `tasks` or
    `per_task` (a mapping or a list of entries naming their task)."""
    try:
        payload = json.loads(storage.read_text(path))
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("summary"), dict):
        return None
    tasks: dict[str, dict] = {}
    for key in ("tasks", "per_task"):
        entries = payload.get(key)
        if isinstance(entries, dict):
            items = entries.items()
        elif isinstance(entries, list):
            items = [
                (e.get("task") or e.get("env") or f"task {i}", e) for i, e in enumerate(entries) if isinstance(e, dict)
            ]
        else:
            continue
        for name, entry in items:
            summary = entry.get("summary", entry) if isinstance(entry, dict) else None
            if isinstance(summary, dict) and isinstance(summary.get("success_rate"), int | float):
                tasks[str(name)] = summary
    env = payload.get("env") or (payload.get("settings") or {}).get("env") or "sim"
    return {"env": str(env), "summary": payload["summary"], "tasks": tasks}


def _rate(summary: dict) -> str:
    rate = summary.get("success_rate")
    text = f"{rate:.1%}" if isinstance(rate, int | float) else "?"
    ci = summary.get("success_rate_ci95")
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(isinstance(x, int | float) for x in ci):
        text += f" (95% CI {ci[0]:.1%}-{ci[1]:.1%})"
    return text


def results_table(results: dict[str, Any]) -> str:
    """Markdown table: one row for the whole evaluation, then one per task."""
    rows = [("**all**" if results["tasks"] else results["env"], results["summary"])]
    rows += sorted(results["tasks"].items())
    lines = ["| env / task | episodes | successes | success rate |", "|---|---|---|---|"]
    for name, s in rows:
        lines.append(f"| {name} | {s.get('episodes', '?')} | {s.get('successes', '?')} | {_rate(s)} |")
    return "\n".join(lines)


def _hub_name(path: str | None, repo_type: str) -> str | None:
    """`org/name` when `path` is an hf:// repo of that type (what the card's metadata can link), else None."""
    if not path or not storage.is_hf(path):
        return None
    ref = storage.parse_hf(path)
    return ref.repo_id if ref.repo_type == repo_type else None


def dataset_entries(config: dict) -> list[dict[str, Any]]:
    """The run's datasets (config.yaml's data block): path, weight, modality and the sha256 of their manifest
    (None when the manifest cannot be read from here)."""
    from vla_foundry.data.manifest import dataset_paths

    data = config.get("data") or {}
    paths = data.get("dataset_manifest") or []
    weights = data.get("dataset_weighting") or []
    modalities = data.get("dataset_modality") or []
    out = []
    for i, path in enumerate(paths):
        digest = None
        if (modalities[i] if i < len(modalities) else None) != "lerobot":
            try:
                digest = sha256_of(dataset_paths(str(path))[1])
            except (OSError, ValueError):
                digest = None
        out.append(
            {
                "path": str(path),
                "weight": weights[i] if i < len(weights) else None,
                "modality": modalities[i] if i < len(modalities) else None,
                "manifest_sha256": digest,
            }
        )
    return out


def backbone_of(model: dict) -> str | None:
    """The run the model was initialised from: `backbone_run`, else a `resume_from_checkpoint` (the model's own when
    fine-tuned, else a sub-model's)."""
    for key in ("backbone_run", "resume_from_checkpoint"):
        if model.get(key):
            return str(model[key])
    for value in model.values():
        if isinstance(value, dict) and (found := backbone_of(value) or value.get("resume_from_checkpoint")):
            return str(found)
    return None


def model_card(
    repo_id: str,
    config: dict,
    model: dict,
    weights: dict[str, Any],
    results: dict[str, Any] | None,
    has_plot: bool,
) -> str:
    """README.md of a pushed run: YAML metadata (library, tags, datasets with manifest digests, base model, the sim
    results as model-index) and a body saying what the run is, how to use it and how it was trained."""
    from huggingface_hub import EvalResult, ModelCardData

    from vla_foundry.secret_values import mask_secrets

    model_type = str(model.get("type", "model"))
    datasets = dataset_entries(config)
    backbone = backbone_of(model)
    tags = [LIBRARY_NAME, model_type]
    acting = _is_policy_type(model_type, config.get("plugins") or [])
    if acting:
        tags += ["robotics", "vision-language-action"]
    eval_results = []
    if results:
        for name, summary in [(results["env"], results["summary"]), *sorted(results["tasks"].items())]:
            if isinstance(summary.get("success_rate"), int | float):
                eval_results.append(
                    EvalResult(
                        task_type="robotics",
                        dataset_type=name,
                        dataset_name=name,
                        metric_type="success_rate",
                        metric_value=float(summary["success_rate"]),
                        metric_name="success rate",
                    )
                )
    hub_datasets = [n for d in datasets if (n := _hub_name(d["path"], "dataset"))]
    data = ModelCardData(
        library_name=LIBRARY_NAME,
        tags=tags,
        datasets=hub_datasets or None,
        base_model=_hub_name(backbone, "model"),
        pipeline_tag="robotics" if acting else None,
        model_name=repo_id if eval_results else None,
        eval_results=eval_results or None,
        vla_foundry={
            "model_type": model_type,
            "checkpoint": weights["checkpoint"],
            "ema": weights["ema"],
            "backbone_run": backbone,
            "datasets": datasets,
        },
    )
    lines = [
        "---",
        data.to_yaml().strip(),
        "---",
        "",
        f"# {repo_id}",
        "",
        f"A `{model_type}` trained with vla_foundry (checkpoint {weights['checkpoint']}; "
        f"weights: `model.safetensors`{' and its EMA, `ema.safetensors`' if weights['ema'] else ''}).",
        "",
        "## Use",
        "",
        "```python",
        "from vla_foundry.inference.policy import Policy",
        "",
        f'policy = Policy.from_run("hf://{repo_id}")',
        "```",
        "",
        "```bash",
        f"python -m vla_foundry.inference.policy_server serve --run_dir hf://{repo_id} --port 8765",
        f"python -m vla_foundry.hub pull {repo_id} runs/{repo_id.split('/')[-1]}",
        "```",
    ]
    if results:
        lines += ["", "## Simulation results", "", f"`python -m vla_foundry.eval.sim` on `{results['env']}`:", ""]
        lines += [results_table(results)]
    lines += ["", "## Training", ""]
    if datasets:
        lines += ["| dataset | modality | weight | manifest sha256 |", "|---|---|---|---|"]
        lines += [
            f"| `{d['path']}` | {d['modality']} | {d['weight']} | {d['manifest_sha256'] or 'not readable'} |"
            for d in datasets
        ]
        lines.append("")
    if backbone:
        lines += [f"Initialised from `{backbone}`.", ""]
    lines += [
        "Trained by `vla_foundry/main.py`; `config.yaml` here is the whole resolved experiment, so this command "
        "trains it again (with the datasets reachable):",
        "",
        "```bash",
        "python vla_foundry/main.py --config_path config.yaml",
        "```",
    ]
    if has_plot:
        lines += ["", f"![training metrics]({METRICS_PLOT})"]
    return mask_secrets("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------- planning a push


def _read_yaml(path: str) -> dict:
    with open(path) as f:
        loaded = yaml.safe_load(f)
    return loaded if isinstance(loaded, dict) else {}


def _fetch(path: str, staging: str, name: str) -> str:
    local = os.path.join(staging, name)
    storage.download_file(path, local)
    return local


def _find_results(run_dir: str, number: int, given: str | None) -> str | None:
    """The sim results.json for the card: `given`, else the one during-training evaluation wrote for the pushed
    checkpoint (`sim_eval/checkpoint_<n>/results.json`), else the run's `results.json`."""
    if given:
        if not storage.exists(given):
            raise HubError(f"--results {given} does not exist")
        return given
    for candidate in (storage.join(run_dir, "sim_eval", f"checkpoint_{number}", RESULTS_NAME),):
        if number >= 0 and storage.exists(candidate):
            return candidate
    top = storage.join(run_dir, RESULTS_NAME)
    return top if storage.exists(top) else None


@dataclasses.dataclass(frozen=True)
class PushParams:
    """`hub push RUN REPO`: a run and the model repo it goes to."""

    # Run directory (local or s3://); also the first bare word.
    run_dir: str = ""
    # Model repo org/name (@revision allowed); also the second bare word.
    repo: str = ""
    # Checkpoint number to export (None: the latest).
    checkpoint: int | None = None
    # Also push the EMA weights (ema.safetensors).
    ema: bool = False
    # Create the repo private.
    private: bool = False
    # Branch to commit to (created when missing; None: main).
    revision: str | None = None
    # Also push the checkpoint directory (optimizer and trainer state), so training can resume from a pull.
    with_optimizer: bool = False
    # Sim results.json for the card (None: the run's own).
    results: str | None = None
    # Print the file list and the card; upload nothing.
    dry_run: bool = False

    def validate(self) -> None:
        _require(self, "run_dir", "repo")


@dataclasses.dataclass(frozen=True)
class PullParams:
    """`hub pull REPO DEST`: mirror a repo into a local directory."""

    # org/name, datasets/org/name or hf://...; @revision pins a branch, tag or commit; also the first bare word.
    repo: str = ""
    # Local directory; also the second bare word.
    dest: str = ""
    # Branch, tag or commit (the same as repo@revision).
    revision: str | None = None

    def validate(self) -> None:
        _require(self, "repo", "dest")


@dataclasses.dataclass(frozen=True)
class PushDatasetParams:
    """`hub push_dataset DIR REPO`: a shard dataset directory and the dataset repo it goes to."""

    # Directory holding manifest.jsonl and the shards (local or s3://); also the first bare word.
    dataset_dir: str = ""
    # Dataset repo org/name; also the second bare word.
    repo: str = ""
    # Create the repo private.
    private: bool = False
    # Branch to commit to (created when missing; None: main).
    revision: str | None = None
    # Print the file list and the card; upload nothing.
    dry_run: bool = False

    def validate(self) -> None:
        _require(self, "dataset_dir", "repo")


def _require(params: Any, *names: str) -> None:
    from vla_foundry.params.base_params import ConfigError

    for name in names:
        if not getattr(params, name):
            raise ConfigError(f"--{name} is required (or give it as a bare word; see --help)")


def plan_run_push(params: PushParams, staging: str) -> PushPlan:
    """Export the weights and gather a run's files into `staging`; returns the push plan (nothing uploaded)."""
    from vla_foundry.checkpoint import (
        EXPORTED_EMA,
        EXPORTED_MODEL,
        CheckpointError,
        checkpoint_dir,
        export_weights,
        resolve_checkpoint,
    )

    repo, checkpoint, ema = params.repo, params.checkpoint, params.ema
    repo_id, repo_type, url_revision = repo_id_of(repo)
    if repo_type != "model":
        raise HubError(f"{repo}: a run goes to a model repo (org/name); datasets/... is for push_dataset")
    run = str(params.run_dir).rstrip("/")
    if storage.is_hf(run):
        raise HubError(f"{run} is already on the Hub; pull it first (python -m vla_foundry.hub pull ...)")
    if not storage.exists(storage.join(run, "config_model.yaml")):
        raise HubError(f"{run} is not a run directory: {storage.join(run, 'config_model.yaml')} does not exist")
    try:
        ref = resolve_checkpoint(checkpoint_dir(run, checkpoint) if checkpoint is not None else run, verify=True)
    except CheckpointError as e:
        raise HubError(f"cannot push {run}: {e}") from None
    os.makedirs(staging, exist_ok=True)
    files: dict[str, str] = {}
    for name in RUN_FILES:
        if storage.exists(storage.join(run, name)):
            files[name] = _fetch(storage.join(run, name), staging, name)
    if ref.number < 0:  # already exported weights only (a pulled run): pushed as they are
        files[EXPORTED_MODEL] = _fetch(ref.path, staging, EXPORTED_MODEL)
        if ema:
            if not storage.exists(storage.join(run, EXPORTED_EMA)):
                raise HubError(f"--ema: {run} has no {EXPORTED_EMA}")
            files[EXPORTED_EMA] = _fetch(storage.join(run, EXPORTED_EMA), staging, EXPORTED_EMA)
    else:
        try:
            files[EXPORTED_MODEL] = export_weights(ref.path, os.path.join(staging, EXPORTED_MODEL))
            if ema:
                files[EXPORTED_EMA] = export_weights(ref.path, os.path.join(staging, EXPORTED_EMA), use_ema=True)
        except CheckpointError as e:
            raise HubError(f"cannot push {run}: {e}") from None
    if params.with_optimizer:
        if not ref.sharded:
            raise HubError(f"--with_optimizer: {ref.path} is not a checkpoint directory (no optimizer state)")
        for rel in storage.list_files(ref.path):
            name = f"checkpoints/{storage.basename(ref.path)}/{rel[len(ref.path) + 1 :]}"
            files[name] = _fetch(rel, staging, name)
    result_path = _find_results(run, ref.number, params.results)
    parsed = read_results(result_path) if result_path else None
    if result_path and parsed is None:
        raise HubError(f"{result_path} holds no 'summary' (not a results.json of python -m vla_foundry.eval.sim)")
    if parsed:
        files[f"eval/{RESULTS_NAME}"] = _fetch(result_path, staging, f"eval/{RESULTS_NAME}")
    has_plot = False
    if "metrics.jsonl" in files:
        from vla_foundry.plot_metrics import plot_metrics

        try:
            plot_metrics(files["metrics.jsonl"], os.path.join(staging, METRICS_PLOT))
            files[METRICS_PLOT] = os.path.join(staging, METRICS_PLOT)
            has_plot = True
        except ValueError:
            pass  # no plottable metric logged yet: the card goes without the plot
    config = _read_yaml(files["config.yaml"]) if "config.yaml" in files else {}
    model = _read_yaml(files["config_model.yaml"])
    weights = {"checkpoint": ref.number if ref.number >= 0 else "exported", "ema": ema}
    card = model_card(repo_id, config or {}, model, weights, parsed, has_plot)
    files[CARD] = os.path.join(staging, CARD)
    with open(files[CARD], "w") as f:
        f.write(card)
    message = f"Upload {storage.basename(run)} (checkpoint {weights['checkpoint']}) with vla_foundry"
    return PushPlan(repo_id, "model", files, card, params.private, params.revision or url_revision, message)


def dataset_card(repo_id: str, dataset_dir: str, files: dict[str, str]) -> str:
    """README.md of a pushed shard dataset: YAML metadata and what the processing metadata records (command,
    sources, counts, the quality summary)."""
    from huggingface_hub import DatasetCardData

    from vla_foundry.data.manifest import read_manifest
    from vla_foundry.secret_values import mask_secrets

    manifest = read_manifest(files["manifest.jsonl"])
    metadata = {}
    if "processing_metadata.json" in files:
        with open(files["processing_metadata.json"]) as f:
            metadata = json.load(f)
    data = DatasetCardData(
        tags=[LIBRARY_NAME, "webdataset", "robotics"],
        task_categories=["robotics"],
        vla_foundry={
            "manifest_sha256": sha256_of(files["manifest.jsonl"]),
            "shards": len(manifest.shards),
            "samples": manifest.num_samples,
        },
    )
    lines = [
        "---",
        data.to_yaml().strip(),
        "---",
        "",
        f"# {repo_id}",
        "",
        f"A vla_foundry shard dataset: {len(manifest.shards)} WebDataset shards, {manifest.num_samples} samples "
        f"(`manifest.jsonl` sha256 `{sha256_of(files['manifest.jsonl'])}`).",
        "",
        "```bash",
        f"python vla_foundry/main.py ... --data.dataset_manifest [hf://datasets/{repo_id}] ...",
        "```",
    ]
    if metadata.get("command"):
        command = metadata["command"]
        lines += ["", "## Processing", "", "```bash", " ".join(command) if isinstance(command, list) else str(command)]
        lines += ["```"]
    if metadata.get("sources"):
        lines += ["", "Sources: " + ", ".join(f"`{s}`" for s in metadata["sources"])]
    quality = (metadata.get("quality") or {}).get("summary")
    if quality:
        lines += ["", "## Quality report (summary)", "", "```json", json.dumps(quality, indent=1), "```"]
    return mask_secrets("\n".join(lines) + "\n")


def plan_dataset_push(params: PushDatasetParams, staging: str) -> PushPlan:
    """Gather a shard dataset (manifest, shards, stats, processing metadata) and its card into a push plan."""
    from vla_foundry.data.manifest import MANIFEST_NAME, read_manifest

    # A dataset always goes to a dataset repo: `org/name` and `datasets/org/name` name the same one here.
    repo_id, _, url_revision = repo_id_of(params.repo)
    dataset_dir = str(params.dataset_dir).rstrip("/")
    manifest = storage.join(dataset_dir, MANIFEST_NAME)
    if not storage.exists(manifest):
        raise HubError(f"{dataset_dir} is not a shard dataset: {manifest} does not exist")
    try:
        shards = read_manifest(manifest).shards
    except ValueError as e:
        raise HubError(str(e)) from None
    files: dict[str, str] = {}
    for path in storage.list_files(dataset_dir, recursive=False):
        name = storage.basename(path)
        if name == CARD or name.startswith(".tmp-") or ".tmp-" in name:
            continue
        files[name] = _fetch(path, staging, name)
    missing = [f"{s.name}.tar" for s in shards if f"{s.name}.tar" not in files]
    if missing:
        raise HubError(f"{dataset_dir}: manifest.jsonl lists shards that are not there: {', '.join(missing[:5])}")
    card = dataset_card(repo_id, dataset_dir, files)
    files[CARD] = os.path.join(staging, CARD)
    with open(files[CARD], "w") as f:
        f.write(card)
    message = f"Upload dataset {storage.basename(dataset_dir)} with vla_foundry"
    return PushPlan(repo_id, "dataset", files, card, params.private, params.revision or url_revision, message)


# ------------------------------------------------------------------------------------------- the network


def upload(plan: PushPlan) -> str:
    """THE network call of a push: create the repo (and branch) when missing, then upload every file in one commit,
    so a repo never shows a card whose files are missing. Returns the commit URL."""
    from huggingface_hub import HfApi

    settings = storage.hf_settings()
    if settings.offline:
        raise HubError(f"cannot push to {plan.repo_id}: HF_HUB_OFFLINE is set (unset it to upload)")
    api = HfApi(endpoint=settings.endpoint, token=settings.token)
    try:
        api.create_repo(plan.repo_id, repo_type=plan.repo_type, private=plan.private, exist_ok=True)
        if plan.revision:
            api.create_branch(plan.repo_id, branch=plan.revision, repo_type=plan.repo_type, exist_ok=True)
        info = api.create_commit(
            plan.repo_id,
            plan.operations(),
            commit_message=plan.commit_message,
            repo_type=plan.repo_type,
            revision=plan.revision,
        )
    except Exception as e:  # refused token, unreachable Hub, ...: one line naming the repo
        raise storage.hf_error(storage.HfPath(plan.repo_id, plan.repo_type, plan.revision), settings, e) from None
    return str(info.commit_url)


def pull(repo: str, dest: str) -> list[str]:
    """Mirror a Hub repo (org/name, datasets/org/name or an hf:// URL, `@revision` allowed) into `dest` through the
    Hub cache; returns the files written. `dest` is then a run dir (or dataset dir) every command accepts."""
    repo_id, repo_type, revision = repo_id_of(repo)
    ref = storage.HfPath(repo_id, repo_type, revision)
    written = []
    for rel in sorted(storage.hf_listing(ref)):
        local = os.path.join(dest, *rel.split("/"))
        storage.download_file(ref.url(rel), local)
        written.append(local)
    return written


# ------------------------------------------------------------------------------------------- command line


def _hub_failure(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    from vla_foundry.cli import Spelling, Subcommand, run_subcommands

    return run_subcommands(
        {
            "push": Subcommand(
                PushParams,
                _push,
                "push a run (local or s3://) to a model repo, in one commit",
                Spelling(positional=("run_dir", "repo")),
            ),
            "pull": Subcommand(PullParams, _pull, "mirror a repo into a local directory", Spelling(("repo", "dest"))),
            "push_dataset": Subcommand(
                PushDatasetParams,
                _push,
                "push a shard dataset directory to a dataset repo, in one commit",
                Spelling(positional=("dataset_dir", "repo")),
            ),
        },
        argv,
        prog="python -m vla_foundry.hub",
        doc=__doc__.split("\n")[0],
        errors=(HubError, OSError, ValueError),
    )


def _pull(params: PullParams) -> None:
    repo = params.repo if not params.revision else f"{params.repo.split('@')[0]}@{params.revision}"
    try:
        written = pull(repo, params.dest)
    except (HubError, OSError, ValueError) as e:
        raise HubError(_hub_failure(e)) from None
    print(f"pulled {len(written)} files into {params.dest}")


def _push(params: PushParams | PushDatasetParams) -> None:
    try:
        with tempfile.TemporaryDirectory(prefix="vla_foundry_push_") as staging:
            if isinstance(params, PushParams):
                plan = plan_run_push(params, staging)
            else:
                plan = plan_dataset_push(params, staging)
            if params.dry_run:
                print(plan.describe())
                return
            print(f"pushed: {upload(plan)}")
    except (HubError, OSError, ValueError) as e:
        raise HubError(_hub_failure(e)) from None


if __name__ == "__main__":
    raise SystemExit(main())


def _is_policy_type(model_type: str, plugins: list[str]) -> bool:
    """Whether `model_type` names a registered acting policy (built-in, or from the plugins the run recorded)."""
    import warnings

    from vla_foundry.params.base_params import ConfigError
    from vla_foundry.params.model_params import is_policy_type
    from vla_foundry.plugins import load_plugins, split_plugin_names

    try:
        load_plugins(split_plugin_names(plugins))
    except ConfigError as e:
        # The card is still written; only its robotics tags depend on the plugin.
        warnings.warn(f"model card: {e}; the card is written without robotics tags", stacklevel=2)
    return is_policy_type(model_type)
