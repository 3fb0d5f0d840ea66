"""Meta-World v3 as sim envs: registration and suites, the observation layout, seeds, the experts, demonstrations
written per task, and a state policy and a pixel policy trained on them through the normal path (Ray
preprocessing -> main.py -> eval.sim)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.conftest import PRESETS
from vla_foundry.eval.envs import expand_sim_envs, get_sim_env, register_sim_suite, sim_env_names, sim_suite_names
from vla_foundry.eval.make_sim_demos import SimDemosParams, make_sim_demos
from vla_foundry.eval.sim import evaluate, make_env
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.eval_params import SimEvalParams

os.environ.setdefault("MUJOCO_GL", "egl")

PAIR = "test_drawer_pair"
if PAIR not in sim_suite_names():
    register_sim_suite(PAIR, ["metaworld/drawer-open-v3", "metaworld/drawer-close-v3"])


def test_every_v3_task_is_an_env_with_its_own_instruction():
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS

    names = [n for n in sim_env_names() if n.startswith("metaworld/")]
    assert sorted(names) == sorted(f"metaworld/{t}" for t in ALL_V3_ENVIRONMENTS)
    instructions = [get_sim_env(n).instruction for n in names]
    assert len(set(instructions)) == len(names) == 50


def test_suites_hold_metaworld_benchmarks_and_difficulty_groups():
    from metaworld.env_dict import MT10_V3

    assert expand_sim_envs("metaworld_mt10") == [f"metaworld/{t}" for t in MT10_V3]
    assert len(expand_sim_envs("metaworld_mt50")) == 50
    groups = [expand_sim_envs(f"metaworld_{g}") for g in ("easy", "medium", "hard", "very_hard")]
    assert [len(g) for g in groups] == [28, 11, 6, 5]
    assert sorted(t for g in groups for t in g) == sorted(expand_sim_envs("metaworld_mt50"))  # a partition of MT50


def test_a_misspelt_task_or_suite_names_the_closest():
    with pytest.raises(ConfigError, match="did you mean metaworld/drawer-open-v3"):
        expand_sim_envs("metaworld/drawer-opne-v3")
    with pytest.raises(ConfigError, match="did you mean metaworld_mt10,"):
        expand_sim_envs("metaworld_mt1O")
    with pytest.raises(ConfigError, match="is a suite of 10 environments"):
        get_sim_env("metaworld_mt10")


def test_observation_layout_follows_lerobot():
    env = make_env("metaworld/reach-v3", ("corner2",), (40, 48), 20, expert=False)
    obs, info = env.reset(seed=3)
    assert obs["pixels"]["corner2"].shape == (40, 48, 3) and obs["pixels"]["corner2"].dtype == np.uint8
    assert obs["environment_state"].shape == (39,)
    np.testing.assert_array_equal(obs["agent_pos"], obs["environment_state"][:4])  # hand xyz + gripper
    assert env.action_space.shape == (4,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    assert info["is_success"] is False
    env.close()


def test_the_episode_seed_fixes_the_object_and_goal_positions():
    env = make_env("metaworld/push-v3", (), (8, 8), 20, expert=False)
    first = env.reset(seed=5)[0]["environment_state"]
    other = env.reset(seed=6)[0]["environment_state"]
    again = env.reset(seed=5)[0]["environment_state"]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first[4:7], other[4:7])  # the puck moved
    env.close()


def test_scripted_expert_succeeds_and_the_episode_ends_at_its_first_success():
    env = make_env("metaworld/drawer-close-v3", (), (8, 8), 500, expert=True)
    _, info = env.reset(seed=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated):
        _, _, terminated, truncated, info = env.step(info["expert_action"])
        steps += 1
    assert terminated and info["is_success"] and info["success"] == 1.0 and steps < 200
    env.close()


def test_an_env_stepped_past_its_last_episode_keeps_stepping():
    # A vector env steps every env, also one whose last episode has ended; Meta-World's own limit (500) raised.
    env = make_env("metaworld/reach-v3", (), (8, 8), 3, expert=False)
    env.reset(seed=0)
    truncated = [env.step(np.zeros(4))[3] for _ in range(510)]
    assert truncated[2] and all(truncated[2:]) and not any(truncated[:2])
    env.close()


# ---------------------------------------------------------------------------------------------------------------
# Demonstrations -> shards -> a state policy and a pixel policy


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    root = tmp_path_factory.mktemp("mw") / "demos"
    params = SimDemosParams(
        env=PAIR, episodes=2, output_dir=str(root), image_size=(32, 32), cameras=("corner2",), no_progress=True
    )
    out = make_sim_demos(params)
    return root, out


def test_demos_hold_each_task_with_its_instruction_and_environment_state(demos):
    root, out = demos
    assert out["tasks"] == {"metaworld/drawer-open-v3": 2, "metaworld/drawer-close-v3": 2}
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_tasks"] == 2 and info["total_episodes"] == 4
    assert info["features"]["observation.environment_state"]["shape"] == [39]
    episodes = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [e["tasks"] for e in episodes] == [["open the drawer"]] * 2 + [["close the drawer"]] * 2
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    env_state = np.asarray(data["observation.environment_state"])
    np.testing.assert_allclose(np.asarray(data["observation.state"]), env_state[:, :4], atol=1e-6)


def test_demos_replayed_from_their_seed_succeed(demos):
    # The recorded actions are what the env executed: replayed from the episode's seed, the drawer opens.
    root, _ = demos
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet").to_pydict()
    rows = [t for t, e in enumerate(data["episode_index"]) if e == 0]
    env = make_env("metaworld/drawer-open-v3", (), (8, 8), 500, expert=False)
    env.reset(seed=1_000_000)  # make_sim_demos' first seed
    for t in rows:
        _, _, terminated, _, info = env.step(np.asarray(data["action"][t]))
    assert terminated and info["is_success"]
    env.close()


def test_steps_after_success_record_the_expert_that_far_past_the_first_success():
    from vla_foundry.eval.make_sim_demos import record_episode

    plain = record_episode("metaworld/reach-v3", 1_000_000, (), (8, 8), 500)
    longer = record_episode("metaworld/reach-v3", 1_000_000, (), (8, 8), 500, steps_after_success=7)
    assert plain["success"] and longer["success"]
    assert longer["steps"] == plain["steps"] + 7
    # The same episode up to the first success, then the expert's further steps.
    np.testing.assert_array_equal(longer["action"][: plain["steps"]], plain["action"])
    # Replayed from the seed, the env succeeds at the plain episode's last action, not before.
    env = make_env("metaworld/reach-v3", (), (8, 8), 500, expert=False)
    env.reset(seed=1_000_000)
    successes = [env.step(a)[4]["is_success"] for a in longer["action"]]
    env.close()
    assert successes.index(True) == plain["steps"] - 1


def test_demos_without_camera_record_no_video(tmp_path):
    params = SimDemosParams(
        env="metaworld/reach-v3", episodes=1, output_dir=str(tmp_path / "d"), cameras=("none",), no_progress=True
    )
    out = make_sim_demos(params)
    assert out["episodes"] == 1 and not (tmp_path / "d" / "videos").exists()
    features = json.loads((tmp_path / "d" / "meta" / "info.json").read_text())["features"]
    assert not [k for k, f in features.items() if f["dtype"] == "video"]


@pytest.fixture(scope="module")
def shards(demos, tmp_path_factory):
    from vla_foundry.data.preprocessing.preprocess_robotics_to_tar import main as preprocess

    root, _ = demos
    out = tmp_path_factory.mktemp("mw_shards")
    args = ["--config_path", "config_presets/preprocessing/metaworld_pixels.yaml", "--source_episodes", f"[{root}]"]
    args += ["--output_dir", str(out), "--num_cpus", "1", "--show_progress", "False", "--samples_per_shard", "64"]
    assert preprocess(args) == 0
    return out / "shards"


def _train(shards, tmp_path_factory, kind: str, extra: list[str]) -> str:
    from vla_foundry.main import main as train

    work = tmp_path_factory.mktemp(f"mw_{kind}")
    args = ["--config_path", f"{PRESETS}/training_jobs/metaworld_mt10_{kind}.yaml"]
    args += ["--data.dataset_manifest", f"[{shards}]", "--data.shuffle_buffer_size", "64", "--data.num_workers", "0"]
    args += ["--hparams.per_gpu_batch_size", "8", "--hparams.global_batch_size", "8", "--log_every_n_steps", "2"]
    args += ["--total_train_samples", "32", "--num_checkpoints", "1", "--save_path", str(work), "--name", kind]
    assert train(args + extra) == 0
    return str(work / kind)


@pytest.fixture(scope="module")
def state_run(shards, tmp_path_factory):
    # MT10 evaluated during training (in a process of its own): one episode per task, a few steps.
    extra = ["--eval.sim_env", "metaworld_mt10", "--eval.episodes", "1", "--eval.max_steps", "3"]
    return _train(shards, tmp_path_factory, "state", extra)


def test_state_policy_reads_no_camera_and_the_whole_environment_state(state_run):
    from vla_foundry.inference.policy import Policy

    meta = Policy.from_run(state_run).metadata()
    assert meta["camera_names"] == []
    assert meta["proprioception_fields"] == {"observation.state": 4, "observation.environment_state": 39}


def test_suite_evaluated_during_training_logs_each_task(state_run):
    records = [json.loads(line) for line in Path(state_run, "metrics.jsonl").read_text().splitlines()]
    sim = [r for r in records if "sim/success_rate" in r]
    assert len(sim) == 1
    tasks = expand_sim_envs("metaworld_mt10")
    rates = [sim[0][f"sim/{t.split('/')[1]}/success_rate"] for t in tasks]
    assert sim[0]["sim/success_rate"] == pytest.approx(np.mean(rates)) and sim[0]["sim/episodes"] == 10
    results = json.loads(Path(state_run, "sim_eval", "checkpoint_1", "results.json").read_text())
    assert list(results["tasks"]) == tasks


def test_suite_evaluation_writes_a_table_per_task(state_run, tmp_path):
    params = SimEvalParams(
        env=PAIR, episodes=2, output_dir=str(tmp_path), run_dir=state_run, max_steps=5, n_action_steps=4, videos=0,
        no_progress=True,
    )  # fmt: skip
    out = evaluate(params)
    assert [r["steps"] for r in out["episodes"]] == [5, 5, 5, 5]
    assert [r["env"] for r in out["episodes"]] == ["metaworld/drawer-open-v3"] * 2 + ["metaworld/drawer-close-v3"] * 2
    table = (tmp_path / "results.md").read_text().splitlines()
    assert table[2].startswith("| metaworld/drawer-open-v3 |") and "mean of 2 tasks" in table[-1]
    assert (tmp_path / "metaworld_drawer-close-v3" / "results.json").exists()


class RecordingPolicy:
    """A policy that records the instructions it is given and acts with zeros (the evaluator is under test)."""

    def __init__(self, metadata):
        self.meta, self.instructions = metadata, []

    def metadata(self):
        return self.meta

    def predict(self, observations, seed=None):
        self.instructions += [o["instruction"] for o in observations]
        return np.zeros((len(observations), self.meta["chunk_length"], 4))


def test_instruction_from_tells_the_policy_another_tasks_instruction_or_nothing(state_run):
    from vla_foundry.inference.policy import Policy

    policy = RecordingPolicy(Policy.from_run(state_run).metadata())
    params = SimEvalParams(env="metaworld/drawer-open-v3", episodes=1, max_steps=3, n_action_steps=1, no_progress=True)
    evaluate(params, policy=policy)
    evaluate(dataclasses.replace(params, instruction_from="metaworld/drawer-close-v3"), policy=policy)
    evaluate(dataclasses.replace(params, instruction_from=""), policy=policy)
    assert policy.instructions == ["open the drawer"] * 3 + ["close the drawer"] * 3 + [""] * 3


def test_a_state_policy_in_an_env_of_other_sizes_is_refused_naming_both(state_run):
    with pytest.raises(ConfigError, match=r"gives \{'observation.state': 2\}"):
        evaluate(SimEvalParams(env="pusht", episodes=1, run_dir=state_run, no_progress=True))


def test_pixel_policy_trains_on_corner2_and_acts_in_closed_loop(shards, tmp_path_factory, tmp_path):
    # The preset's backbone at the 32 px the test demos were recorded at (8 px patches: 32 is no multiple of 12).
    extra = ["--model.backbone.vit.img_size", "32", "--model.backbone.vit.patch_size", "8"]
    run = _train(shards, tmp_path_factory, "pixels", extra)
    # No --image_size: the env renders at the 32 px its demonstrations were stored at (the env's default is 96).
    params = SimEvalParams(
        env="metaworld/drawer-open-v3", episodes=1, output_dir=str(tmp_path), run_dir=run, max_steps=4, videos=1,
        no_progress=True,
    )  # fmt: skip
    out = evaluate(params)
    assert get_sim_env("metaworld/drawer-open-v3").image_size != (32, 32)
    assert (out["settings"]["image_size"], out["settings"]["image_size_from"]) == (
        [32, 32],
        "the policy's training images",
    )
    assert out["episodes"][0]["steps"] == 4
    assert (tmp_path / "videos" / "episode_000.mp4").stat().st_size > 0


def test_bench_refuses_a_work_dir_whose_demonstrations_are_another_count(tmp_path):
    """bench_metaworld.py reuses the stage outputs it finds; 50 demos per task recorded earlier must not be trained on
    as the 150 per task that `--obs pixels` records by default."""
    info = tmp_path / "mt10_pixels" / "demos" / "meta" / "info.json"
    info.parent.mkdir(parents=True)
    info.write_text(json.dumps({"total_episodes": 500}))
    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_metaworld.py"
    cmd = [sys.executable, str(bench), "--suite", "mt10", "--obs", "pixels", "--workdir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "holds 500 demonstrations, not the 1500 asked for (150 per task)" in proc.stderr
    assert not (tmp_path / "mt10_pixels" / "shards").exists()
