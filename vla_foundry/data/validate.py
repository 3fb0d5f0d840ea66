"""Check a dataset directory (local or s3://) against docs/formats.md and report every problem with shard and key.

    python -m vla_foundry.data.validate DIR [--modality robotics] [--max_samples_per_shard N]

Exit status 0 when the dataset is valid, 1 otherwise. The modality is inferred from the first sample's members
when not given.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
import yaml

from vla_foundry import storage
from vla_foundry.data.manifest import dataset_paths, parse_manifest_line
from vla_foundry.data.preprocessing.encoding import decode_image
from vla_foundry.data.tar_stream import ShardReadError, iter_tar_samples
from vla_foundry.params.base_params import ConfigError

METADATA_KEYS = (
    "episode_id",
    "sample_id",
    "anchor_timestep",
    "anchor_relative_idx",
    "camera_names",
    "image_timesteps",
    "original_episode_length",
    "past_padding",
    "future_padding",
    "is_padded",
)
INSTRUCTION_TYPES = ("original", "randomized", "verbose", "alternative")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


@dataclass(frozen=True)
class Problem:
    where: str  # file, or shard and key
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def infer_modality(sample: dict) -> str:
    exts = set(sample)
    if "lowdim.npz" in exts:
        return "robotics"
    if any(e in exts for e in IMAGE_EXTENSIONS):
        return "image_caption"
    if "json.gz" in exts:
        return "text"
    if "json" in exts:
        try:
            return "text" if isinstance(json.loads(sample["json"]), list) else "text_untokenized"
        except json.JSONDecodeError:
            return "text_untokenized"
    return "text_untokenized"


class DatasetValidator:
    def __init__(self, path: str, modality: str | None = None, max_samples_per_shard: int | None = None) -> None:
        self.dataset_dir, self.manifest_path = dataset_paths(path)
        self.modality = modality
        self.max_samples = max_samples_per_shard
        self.problems: list[Problem] = []
        self.layout: dict | None = None
        self.stats: dict | None = None

    def add(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message))

    def run(self) -> list[Problem]:
        entries = self.check_manifest()
        if self.modality in (None, "robotics"):
            self.load_robotics_side_files(required=self.modality == "robotics")
        seen_keys: dict[str, str] = {}
        for name, count in entries:
            self.check_shard(name, count, seen_keys)
        listed = {f"{n}.tar" for n, _ in entries}
        for url in storage.list_files(self.dataset_dir, recursive=False):
            base = storage.basename(url)
            if base.endswith(".tar") and base not in listed:
                self.add(base, "tar shard in the directory is not listed in manifest.jsonl")
        return self.problems

    def check_manifest(self) -> list[tuple[str, int]]:
        try:
            text = storage.read_text(self.manifest_path)
        except FileNotFoundError:
            self.add(self.manifest_path, "manifest.jsonl does not exist")
            return []
        entries = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                shard = parse_manifest_line(line)
            except ValueError as e:
                self.add(f"manifest.jsonl:{lineno}", str(e))
                continue
            entries.append((shard.name, shard.num_sequences))
        if not entries and not self.problems:
            self.add("manifest.jsonl", "lists no shards")
        return entries

    def load_robotics_side_files(self, required: bool) -> None:
        cfg_path = storage.join(self.dataset_dir, "preprocessing_config.yaml")
        stats_path = storage.join(self.dataset_dir, "stats.json")
        if storage.exists(cfg_path):
            try:
                self.layout = yaml.safe_load(storage.read_text(cfg_path)) or {}
            except yaml.YAMLError as e:
                self.add("preprocessing_config.yaml", f"not valid YAML: {e}")
            else:
                for key in ("past_lowdim_steps", "future_lowdim_steps", "image_indices", "camera_names"):
                    if key not in self.layout:
                        self.add("preprocessing_config.yaml", f"lacks {key!r}")
        elif required:
            self.add("preprocessing_config.yaml", "missing (robotics datasets need it)")
        if storage.exists(stats_path):
            try:
                self.stats = json.loads(storage.read_text(stats_path))
            except json.JSONDecodeError as e:
                self.add("stats.json", f"not valid JSON: {e}")
            else:
                from vla_foundry.data.robotics.stats import nonfinite_stats

                if isinstance(self.stats, dict):
                    entries = {k: v for k, v in self.stats.items() if isinstance(v, dict)}
                    for where in nonfinite_stats(entries):
                        self.add("stats.json", f"{where} holds non-finite values (NaN/Inf)")
        elif required:
            self.add("stats.json", "missing (robotics datasets need it)")

    def check_shard(self, name: str, count: int, seen_keys: dict[str, str]) -> None:
        url = storage.join(self.dataset_dir, f"{name}.tar")
        shard = f"{name}.tar"
        if not storage.exists(url):
            self.add(shard, "listed in manifest.jsonl but does not exist")
            return
        n = 0
        try:
            for sample in iter_tar_samples(url):
                n += 1
                key = sample["__key__"]
                where = f"{shard} key {key}"
                if key in seen_keys:
                    self.add(where, f"key also used in {seen_keys[key]} (keys must be unique in a dataset)")
                seen_keys[key] = shard
                if self.max_samples is not None and n > self.max_samples:
                    continue
                if self.modality is None:
                    self.modality = infer_modality(sample)
                    if self.modality == "robotics" and self.layout is None and self.stats is None:
                        self.load_robotics_side_files(required=True)
                self.check_sample(sample, where)
        except ShardReadError as e:
            self.add(shard, str(e))
        if n != count:
            self.add(shard, f"holds {n} samples, manifest.jsonl says num_sequences {count}")

    def check_sample(self, sample: dict, where: str) -> None:
        members = {k for k in sample if not k.startswith("__")}
        if self.modality == "text":
            data = sample.get("json.gz") or sample.get("json")
            if data is None:
                self.add(where, "missing json.gz / json (a JSON list of token ids)")
                return
            try:
                ids = json.loads(gzip.decompress(data) if "json.gz" in sample else data)
                if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
                    self.add(where, "token member is not a JSON list of integers")
            except (OSError, json.JSONDecodeError) as e:
                self.add(where, f"token member unreadable: {e}")
        elif self.modality == "text_untokenized":
            if "json" not in sample and "txt" not in sample:
                self.add(where, 'missing json ({"text": ...})')
                return
            if "json" in sample:
                try:
                    value = json.loads(sample["json"])
                    if not isinstance(value, str) and not (
                        isinstance(value, dict) and isinstance(value.get("text"), str)
                    ):
                        self.add(where, 'json must be {"text": "..."} or a JSON string')
                except json.JSONDecodeError as e:
                    self.add(where, f"json not valid: {e}")
        elif self.modality == "image_caption":
            ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
            if ext is None:
                self.add(where, f"missing image member (one of {', '.join(IMAGE_EXTENSIONS)})")
            else:
                self._check_image(sample[ext], where, ext)
            if "txt" not in sample:
                self.add(where, "missing caption member txt")
        elif self.modality == "robotics":
            self.check_robotics(sample, where, members)

    def _check_image(self, data: bytes, where: str, member: str) -> None:
        try:
            decode_image(data)
        except ValueError as e:
            self.add(where, f"{member}: {e}")

    def check_robotics(self, sample: dict, where: str, members: set[str]) -> None:
        for member in ("lowdim.npz", "metadata.json", "language_instructions.json"):
            if member not in members:
                self.add(where, f"missing member {member}")
        layout = self.layout or {}
        t_expected = None
        if "past_lowdim_steps" in layout and "future_lowdim_steps" in layout:
            t_expected = int(layout["past_lowdim_steps"]) + 1 + int(layout["future_lowdim_steps"])
        for cam in layout.get("camera_names") or []:
            for off in layout.get("image_indices") or []:
                member = f"{cam}_t{off}.jpg"
                if member not in members:
                    self.add(where, f"missing camera image {member}")
                else:
                    self._check_image(sample[member], where, member)
        if "lowdim.npz" in sample:
            self._check_lowdim(sample["lowdim.npz"], where, t_expected)
        if "metadata.json" in sample:
            try:
                meta = json.loads(sample["metadata.json"])
                missing = [k for k in METADATA_KEYS if k not in meta]
                if missing:
                    self.add(where, f"metadata.json lacks {', '.join(missing)}")
            except json.JSONDecodeError as e:
                self.add(where, f"metadata.json not valid JSON: {e}")
        if "language_instructions.json" in sample:
            try:
                instr = json.loads(sample["language_instructions.json"])
                if not isinstance(instr, dict) or not any(isinstance(instr.get(t), list) for t in INSTRUCTION_TYPES):
                    self.add(where, f"language_instructions.json needs lists under some of {INSTRUCTION_TYPES}")
            except json.JSONDecodeError as e:
                self.add(where, f"language_instructions.json not valid JSON: {e}")

    def _check_lowdim(self, data: bytes, where: str, t_expected: int | None) -> None:
        try:
            npz = np.load(io.BytesIO(data), allow_pickle=False)
            arrays = {}
            for k in npz.files:
                try:
                    arrays[k] = npz[k]
                except ValueError:
                    continue  # object arrays need pickle; the loader never reads them
        except Exception as e:
            self.add(where, f"lowdim.npz unreadable: {e}")
            return
        for mask in ("past_mask", "future_mask"):
            if mask not in arrays:
                self.add(where, f"lowdim.npz lacks {mask}")
            elif arrays[mask].dtype != np.bool_ or arrays[mask].ndim != 1:
                self.add(
                    where,
                    f"lowdim.npz {mask} must be a boolean [T] array, got {arrays[mask].dtype} {arrays[mask].shape}",
                )
            elif t_expected is not None and len(arrays[mask]) != t_expected:
                self.add(
                    where,
                    f"lowdim.npz {mask} has {len(arrays[mask])} rows, preprocessing_config.yaml says T={t_expected}",
                )
        for name, arr in arrays.items():
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = np.argwhere(~np.isfinite(arr))
                self.add(
                    where,
                    f"lowdim.npz {name} holds {len(bad)} non-finite value(s) (NaN/Inf), first at index "
                    f"{tuple(int(i) for i in bad[0])}",
                )
            if name in ("past_mask", "future_mask") or arr.dtype.kind != "f" or arr.ndim != 2:
                continue
            if t_expected is not None and arr.shape[0] != t_expected:
                self.add(where, f"lowdim.npz {name} has {arr.shape[0]} rows, expected T={t_expected}")
            if self.stats is None:
                continue
            entry = self.stats.get(name)
            if not isinstance(entry, dict):
                self.add(where, f"field {name} has no entry in stats.json")
                continue
            for key in ("mean", "std", "min", "max"):
                if len(entry.get(key, [])) != arr.shape[1]:
                    self.add("stats.json", f"field {name}: {key} must have length D={arr.shape[1]}")
                    break


def validate_dataset(path: str, modality: str | None = None, max_samples_per_shard: int | None = None) -> list[Problem]:
    """Every problem found in the dataset at `path` (directory or manifest.jsonl, local or s3://)."""
    return DatasetValidator(path, modality, max_samples_per_shard).run()


@dataclasses.dataclass(frozen=True)
class ValidateParams:
    """`python -m vla_foundry.data.validate DIR`: the dataset and how much of it to read."""

    # Dataset directory or its manifest.jsonl (local or s3://); also the first bare word.
    dataset: str = ""
    # The dataset's modality (None: inferred from the first sample's members).
    modality: Literal["text", "text_untokenized", "image_caption", "robotics"] | None = None
    # Check only the first N samples of each shard (None: all).
    max_samples_per_shard: int | None = None

    def validate(self) -> None:
        if not self.dataset:
            raise ConfigError("give the dataset: python -m vla_foundry.data.validate DIR (or --dataset DIR)")


def main(argv: list[str] | None = None) -> int:
    from vla_foundry.cli import Spelling, run_command

    return run_command(
        ValidateParams,
        _run,
        argv,
        prog="python -m vla_foundry.data.validate",
        doc=__doc__,
        spelling=Spelling(positional=("dataset",)),
    )


def _run(params: ValidateParams) -> int:
    problems = validate_dataset(params.dataset, params.modality, params.max_samples_per_shard)
    for p in problems:
        print(p)
    print(f"{params.dataset}: {'valid' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
