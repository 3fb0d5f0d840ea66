"""A stream source defined in a user's own package, named by `--plugins`, trains a VLA straight from its files: the
data params accept its modality, the planner plans its episodes, the loader reads them through its stream."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PRESETS, REPO_ROOT

# The user's package: episodes as npz files (state [L, 2], action [L, 2], front [L, H, W, 3] uint8), streamed.
PLUGIN = '''
"""Folders of episode_<i>.npz files read while training (modality toy_npz), cut with data.streaming."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla_foundry import storage
from vla_foundry.data.manifest import Manifest, ShardInfo
from vla_foundry.data.preprocessing.episodes import Episode
from vla_foundry.data.preprocessing.robotics import preprocessing_config
from vla_foundry.data.preprocessing.sample_cutting import cut_samples, cut_window_lowdim, plan_anchors
from vla_foundry.data.preprocessing.window_statistics import WindowStats
from vla_foundry.data.sample_streams import EndlessStream
from vla_foundry.data.streaming.registry import StreamSource, register_stream_source, interval_share


def read_episode(path, eid):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    frames = arrays.pop("front")
    return Episode(
        episode_id=eid, length=len(frames), lowdim={k: v.astype(np.float32) for k, v in arrays.items()},
        language={"original": ["push the block"]}, cameras=["front"],
        frames=((t, {"front": frames[t]}) for t in range(len(frames))),
    )


@register_stream_source("toy_npz")
class ToyNpzSource(StreamSource):
    def __init__(self, data_params, root):
        super().__init__(data_params, root)
        self.params = data_params.streaming
        paths = sorted(p for p in storage.list_files(self.root) if p.endswith(".npz"))
        self.files = {storage.basename(p).removesuffix(".npz"): p for p in paths}
        self.anchors = {}
        for eid, path in self.files.items():
            with np.load(path) as npz:
                self.anchors[eid] = plan_anchors(len(npz["action"]), self.params)

    @classmethod
    def layout_dir(cls, data_params, root):
        return storage.join(data_params.streaming.output_dir, storage.basename(root.rstrip("/")))

    @classmethod
    def prepare(cls, data_params, root):
        folder = cls.layout_dir(data_params, root)
        source = cls(data_params, root)
        stats = WindowStats()
        for eid, path in source.files.items():
            episode = read_episode(path, eid)
            for anchor in source.anchors[eid]:
                lowdim, past, future = cut_window_lowdim(episode, anchor, source.params)
                stats.add_sample(lowdim, past | future)
        config = preprocessing_config(source.params, ["front"])
        storage.write_text(storage.join(folder, "preprocessing_config.yaml"), config)
        storage.write_text(storage.join(folder, "stats.json"), json.dumps(stats.to_json()))
        return folder

    def manifest(self):
        shards = tuple(ShardInfo(eid, len(a)) for eid, a in self.anchors.items())
        return Manifest(self.root, self.root, shards)

    def open_stream(self, dataset, dataset_index, rank, world_size, seed, buffer_size, stats, part=(0, 1, 1)):
        share = interval_share(self.anchors, dataset, rank, world_size, part)
        return ToyStream(self, share, seed, buffer_size, stats)


class ToyStream(EndlessStream):
    def __init__(self, source, samples, seed, buffer_size, stats):
        self.source, self.samples = source, samples
        super().__init__(seed, buffer_size, stats)

    def read_pass(self, pass_index, rng):
        runs = []  # consecutive anchors of one episode, increasing
        for eid, anchor in self.samples:
            if not runs or runs[-1][0] != eid or anchor <= runs[-1][1][-1]:
                runs.append((eid, []))
            runs[-1][1].append(anchor)
        for eid, anchors in runs:
            episode = read_episode(self.source.files[eid], eid)
            for sample in cut_samples(episode, self.source.params, anchors, encode_frame=np.ascontiguousarray):
                yield {**sample.members, "__key__": sample.key, "__url__": self.source.root}

    def empty_share(self):
        return f"{self.source.root}: no readable sample in this rank's share"
'''


def write_episodes(root: Path, lengths: tuple[int, ...]) -> None:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for e, n in enumerate(lengths):
        t = np.arange(n, dtype=np.float32)
        np.savez(
            root / f"episode_{e}.npz",
            state=np.stack([t, np.full(n, e, np.float32)], axis=1),
            action=np.stack([t + 1, -t], axis=1),
            front=rng.integers(0, 255, (n, 16, 16, 3), dtype=np.uint8),
        )


@pytest.mark.slow
def test_a_plugin_stream_source_trains_a_vla_from_its_own_files(tmp_path: Path):
    package = tmp_path / "user_pkg" / "toy_sources"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "npz_stream.py").write_text(textwrap.dedent(PLUGIN))
    root = tmp_path / "episodes"
    write_episodes(root, (9, 7, 8, 10))
    args = [
        "--plugins", "toy_sources.npz_stream",
        "--model", f"include {PRESETS / 'models' / 'vla_diffusion_tiny.yaml'}",
        "--hparams", f"include {PRESETS / 'hparams' / 'cpu_tiny.yaml'}",
        "--data", f"include {PRESETS / 'data' / 'tiny_robotics_lerobot.yaml'}",
        "--data.dataset_manifest", f"[{root}]",
        "--data.dataset_modality", "[toy_npz]",
        "--data.proprioception_fields", "[state]",
        "--data.language_instruction_types", "[original]",
        "--data.streaming", f"include {PRESETS / 'preprocessing' / 'lerobot_1past_14future.yaml'}",
        "--data.streaming.future_lowdim_steps", "4",
        "--data.streaming.max_future_padding", "4",
        "--data.streaming.image_size", "[32, 32]",
        "--hparams.per_gpu_batch_size", "4",
        "--hparams.global_batch_size", "4",
        "--total_train_samples", "16",
        "--num_checkpoints", "2",
        "--log_every_n_steps", "1",
        "--wandb", "False",
        "--save_path", str(tmp_path / "runs"),
        "--name", "plugin_stream",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "user_pkg"), str(REPO_ROOT)])}
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "vla_foundry" / "main.py"), *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run = tmp_path / "runs" / "plugin_stream"
    records = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    # 2 windows of 8 samples, batch 4: 2 steps each, every sample read from the plugin's stream.
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert all(np.isfinite(r["loss"]) for r in records if "loss" in r)
    assert [r["interval_samples_read"] for r in records if "interval_samples_read" in r] == [8, 8]
    # The layout the plugin wrote is the one the run was configured from: a 2-wide state, camera front.
    assert (tmp_path / "runs" / "stream_cache" / "episodes" / "stats.json").exists()
    config = (run / "config.yaml").read_text()
    assert "toy_sources.npz_stream" in config and "proprioception_dim: 2" in config
