"""Sharing runs through the Hugging Face Hub without a network: a push is planned (commit operations and card),
its files are laid into a Hub cache in the library's documented layout, and the real `huggingface_hub` client
reads them back with HF_HUB_OFFLINE=1 through `hf://` paths."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import REPO_ROOT
from tests.hub_cache import cache_repo
from tests.inference.conftest import observation, write_policy_run
from vla_foundry import storage
from vla_foundry.checkpoint import DCPCheckpointer, export_weights
from vla_foundry.distributed import DistributedContext
from vla_foundry.hub import PushParams, plan_run_push, pull, upload
from vla_foundry.hub import main as hub_main
from vla_foundry.inference.policy import Policy

RESULTS = {
    "env": "metaworld_mt10",
    "summary": {"episodes": 20, "successes": 15, "success_rate": 0.75, "success_rate_ci95": [0.53, 0.89]},
    "tasks": {
        "reach-v3": {"episodes": 10, "successes": 9, "success_rate": 0.9},
        "push-v3": {"summary": {"episodes": 10, "successes": 6, "success_rate": 0.6}},
    },
    "settings": {"seed": 0},
    "episodes": [],
}


@pytest.fixture
def hf_home(tmp_path, monkeypatch) -> str:
    """An empty Hub cache (HF_HOME) used offline; yields the cache directory (HF_HOME/hub)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return str(tmp_path / "hf_home" / "hub")


@pytest.fixture(scope="module")
def robotics_dir(tmp_path_factory) -> str:
    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics

    return make_robotics(str(tmp_path_factory.mktemp("robotics") / "robotics_lerobot"), "lerobot", seed=0)


@pytest.fixture(scope="module")
def dcp_run(tmp_path_factory, robotics_dir) -> str:
    """A robotics run as training writes it: configs, processor, stats, metrics.jsonl, a sharded (DCP) checkpoint
    with optimizer and EMA state, and a sim evaluation of that checkpoint."""
    from vla_foundry.models import create_model
    from vla_foundry.models.ema import EMA
    from vla_foundry.optim import build_optimizer, build_scheduler
    from vla_foundry.params import EMAParams, HyperParams
    from vla_foundry.params.model_params import ModelParams
    from vla_foundry.params.parsing import load_params_from_yaml

    run_dir = str(tmp_path_factory.mktemp("runs") / "vla_dcp")
    write_policy_run(run_dir, robotics_dir, checkpoints=())
    torch.manual_seed(0)
    model = create_model(load_params_from_yaml(ModelParams, os.path.join(run_dir, "config_model.yaml")))
    torch.nn.init.normal_(model.head.action_out.weight, std=0.2)
    hp = HyperParams(lr=1e-2, precision="fp32")
    opt = build_optimizer(model, hp)
    ema = EMA(model, EMAParams(enabled=True, decay=0.5))
    for shadow in ema.shadow:  # EMA values that differ from the weights, so that the choice shows
        shadow.add_(0.05 * torch.randn_like(shadow))
    ctx = DistributedContext(
        rank=0, world_size=1, local_rank=0, device=torch.device("cpu"), backend=None, wrapping="none"
    )
    sched = build_scheduler(opt, hp, total_steps=10)
    checkpointer = DCPCheckpointer(run_dir, ctx, model, opt, sched, ema, async_save=False)
    checkpointer.save(1, {"step": 1})
    checkpointer.close()
    with open(os.path.join(run_dir, "metrics.jsonl"), "w") as f:
        for step, loss in ((1, 1.5), (2, 1.1), (3, 0.9)):
            f.write(json.dumps({"step": step, "loss": loss, "lr": 0.01}) + "\n")
    os.makedirs(os.path.join(run_dir, "sim_eval", "checkpoint_1"))
    with open(os.path.join(run_dir, "sim_eval", "checkpoint_1", "results.json"), "w") as f:
        json.dump(RESULTS, f)
    return run_dir


def _cache_plan(cache_dir: str, plan) -> str:
    """The plan's files as one commit of its repo in the cache (what a successful push then a download leaves)."""
    files = {op.path_in_repo: op.path_or_fileobj for op in plan.operations()}
    return cache_repo(cache_dir, plan.repo_id, files, repo_type=plan.repo_type)


def _card_metadata(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_push_plan_holds_the_export_byte_for_byte_and_no_optimizer_state(tmp_path, dcp_run):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla", ema=True), str(tmp_path / "staging"))
    ops = {op.path_in_repo: op for op in plan.operations()}
    export = export_weights(dcp_run, str(tmp_path / "export" / "model.safetensors"))
    export_ema = export_weights(dcp_run, str(tmp_path / "export" / "ema.safetensors"), use_ema=True)
    with open(ops["model.safetensors"].path_or_fileobj, "rb") as a, open(export, "rb") as b:
        assert a.read() == b.read()
    with open(ops["ema.safetensors"].path_or_fileobj, "rb") as a, open(export_ema, "rb") as b:
        assert a.read() == b.read()
    expected = {
        "README.md",
        "config.yaml",
        "config_model.yaml",
        "config_processor.yaml",
        "config_normalizer.yaml",
        "stats.json",
        "metrics.jsonl",
        "metrics.png",
        "eval/results.json",
        "model.safetensors",
        "ema.safetensors",
    }
    assert set(ops) == expected
    for name in ("config_model.yaml", "stats.json", "metrics.jsonl"):
        with open(ops[name].path_or_fileobj, "rb") as a, open(os.path.join(dcp_run, name), "rb") as b:
            assert a.read() == b.read()


def test_with_optimizer_adds_the_whole_checkpoint_directory(tmp_path, dcp_run):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla", with_optimizer=True), str(tmp_path / "staging"))
    pushed = {p for p in plan.files if p.startswith("checkpoints/")}
    on_disk = {
        f"checkpoints/checkpoint_1/{os.path.relpath(p, os.path.join(dcp_run, 'checkpoints', 'checkpoint_1'))}"
        for p in storage.list_files(os.path.join(dcp_run, "checkpoints", "checkpoint_1"))
    }
    assert pushed == on_disk and "checkpoints/checkpoint_1/index.json" in pushed


def test_card_metadata_is_valid_yaml_with_the_sim_results(tmp_path, dcp_run, robotics_dir):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla"), str(tmp_path / "staging"))
    with open(plan.files["README.md"]) as f:
        card = f.read()
    assert card == plan.card
    meta = _card_metadata(card)
    assert meta["library_name"] == "vla_foundry"
    assert {"vla_foundry", "diffusion_policy", "robotics"} <= set(meta["tags"])
    results = meta["model-index"][0]["results"]
    rates = {r["dataset"]["name"]: r["metrics"][0]["value"] for r in results}
    assert rates == {"metaworld_mt10": 0.75, "reach-v3": 0.9, "push-v3": 0.6}
    assert all(r["metrics"][0]["type"] == "success_rate" for r in results)
    with open(os.path.join(robotics_dir, "manifest.jsonl"), "rb") as f:
        digest = __import__("hashlib").sha256(f.read()).hexdigest()
    assert meta["vla_foundry"]["datasets"][0]["manifest_sha256"] == digest
    assert meta["vla_foundry"]["checkpoint"] == 1
    assert "| push-v3 | 10 | 6 | 60.0% |" in card
    assert "python vla_foundry/main.py --config_path config.yaml" in card


def test_pushed_then_cached_run_predicts_exactly_as_the_local_run(tmp_path, hf_home, dcp_run):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla", ema=True), str(tmp_path / "staging"))
    _cache_plan(hf_home, plan)
    obs = observation(np.random.default_rng(0))
    local = Policy.from_run(dcp_run)
    hub = Policy.from_run("hf://org/vla")
    assert local.run.used_ema and hub.run.used_ema
    np.testing.assert_array_equal(hub.predict(obs, seed=3), local.predict(obs, seed=3))
    raw_local = Policy.from_run(dcp_run, use_ema=False).predict(obs, seed=3)
    raw_hub = Policy.from_run("hf://org/vla", use_ema=False)
    assert not raw_hub.run.used_ema
    np.testing.assert_array_equal(raw_hub.predict(obs, seed=3), raw_local)


def test_a_revision_pins_a_commit(tmp_path, hf_home, dcp_run):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla"), str(tmp_path / "staging"))
    commit = _cache_plan(hf_home, plan)
    assert storage.exists(f"hf://org/vla@{commit}/config_model.yaml")
    assert storage.read_text(f"hf://org/vla@{commit}/stats.json") == storage.read_text(f"{dcp_run}/stats.json")
    with pytest.raises(OSError, match="org/vla@v9"):
        storage.read_text("hf://org/vla@v9/stats.json")


def test_pull_mirrors_the_repo_into_a_run_dir_every_command_accepts(tmp_path, hf_home, dcp_run):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla"), str(tmp_path / "staging"))
    _cache_plan(hf_home, plan)
    dest = str(tmp_path / "pulled")
    written = pull("org/vla", dest)
    assert sorted(os.path.relpath(p, dest) for p in written) == sorted(plan.files)
    obs = observation(np.random.default_rng(1))
    np.testing.assert_array_equal(
        Policy.from_run(dest, use_ema=False).predict(obs, seed=0),
        Policy.from_run(dcp_run, use_ema=False).predict(obs, seed=0),
    )


def test_dry_run_prints_the_files_and_the_card_without_uploading(tmp_path, hf_home, dcp_run, capsys):
    assert hub_main(["push", dcp_run, "org/vla", "--ema", "--dry_run"]) == 0
    out = capsys.readouterr().out
    assert "model.safetensors" in out and "ema.safetensors" in out and "library_name: vla_foundry" in out
    assert "checkpoints/" not in out


def test_upload_refuses_offline_before_any_request(tmp_path, hf_home, dcp_run):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla"), str(tmp_path / "staging"))
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE"):
        upload(plan)


def test_missing_file_and_uncached_repo_are_one_line_errors(hf_home, tmp_path, dcp_run):
    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla"), str(tmp_path / "staging"))
    _cache_plan(hf_home, plan)
    # Offline, the cache cannot tell a file the Hub lacks from one not downloaded yet: the error says so.
    with pytest.raises(FileNotFoundError, match=r"hf://org/vla/nothing\.json is not in the Hub cache .*HF_HUB_OFFLINE"):
        storage.read_text("hf://org/vla/nothing.json")
    assert not storage.exists("hf://org/vla/nothing.json")
    with pytest.raises(storage.StorageError, match=r"hf://org/other: HF_HUB_OFFLINE is set .*not in the Hub cache"):
        Policy.from_run("hf://org/other")


def test_cli_error_for_an_uncached_repo_offline_is_one_line(tmp_path, hf_home):
    env = {**os.environ, "HF_HOME": os.path.dirname(hf_home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "vla_foundry.hub", "pull", "org/absent", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "hf://org/absent" in lines[0] and "HF_HUB_OFFLINE" in lines[0]


# Scenario per repo name: (HTTP status, headers) as the Hub answers them (huggingface_hub maps X-Error-Code).
HUB_ERRORS = {
    "org/missing": (404, {"X-Error-Code": "RepoNotFound"}),
    "org/gated": (403, {"X-Error-Code": "GatedRepo"}),
    "org/badtoken": (401, {"X-Error-Message": "Invalid credentials in Authorization header"}),
    "org/run": (404, {"X-Error-Code": "RevisionNotFound"}),
    "org/files": (404, {"X-Error-Code": "EntryNotFound"}),
}

PROBE = """
import json, sys
from vla_foundry import storage
for url in sys.argv[1:]:
    try:
        storage.read_text(url)
        print(json.dumps([url, "ok", ""]))
    except Exception as e:
        print(json.dumps([url, type(e).__name__, str(e)]))
"""


@pytest.fixture
def error_hub():
    """A real HTTP server on loopback answering every request the way the Hub answers the failure of its repo."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            repo = next((r for r in HUB_ERRORS if f"/{r}/" in self.path or self.path.endswith(f"/{r}")), None)
            status, headers = HUB_ERRORS.get(repo, (500, {}))
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = _answer

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _probe(urls: list[str], env: dict[str, str]) -> dict[str, tuple[str, str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *urls], capture_output=True, text=True, env={**os.environ, **env}, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {url: (kind, message) for url, kind, message in map(json.loads, proc.stdout.splitlines())}


@pytest.mark.slow  # two interpreters start, and the client retries the closed port before giving up
def test_hub_failures_are_one_line_each_naming_the_repo_revision_or_file(tmp_path, error_hub):
    online = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": error_hub, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_x"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket is closed
    unreachable = _probe(["hf://org/any/config.yaml"], {**online, "HF_ENDPOINT": closed})
    out = _probe(
        [
            "hf://org/missing/config.yaml",
            "hf://org/gated/config.yaml",
            "hf://org/badtoken/config.yaml",
            "hf://org/run@v9/config.yaml",
            "hf://org/files/absent.yaml",
        ],
        online,
    )
    for kind, message in [*out.values(), *unreachable.values()]:
        assert kind in ("StorageError", "FileNotFoundError") and "\n" not in message
    kind, message = unreachable["hf://org/any/config.yaml"]
    assert "hf://org/any" in message and "HF_HUB_OFFLINE" in message and "cannot be reached" in message
    assert "no such model repo" in out["hf://org/missing/config.yaml"][1]
    assert "gated or private" in out["hf://org/gated/config.yaml"][1]
    assert "refused HF_TOKEN" in out["hf://org/badtoken/config.yaml"][1]
    assert "revision 'v9' does not exist in org/run" in out["hf://org/run@v9/config.yaml"][1]
    assert out["hf://org/files/absent.yaml"] == (
        "FileNotFoundError",
        "hf://org/files/absent.yaml does not exist: org/files has no file 'absent.yaml'",
    )
    assert "hf_x" not in json.dumps(out)


def test_backbone_and_fine_tuning_read_a_hub_run_s_exported_weights(tmp_path, hf_home, dcp_run):
    from safetensors.torch import load_file

    from vla_foundry.checkpoint import read_model_weights, resolve_checkpoint
    from vla_foundry.training_run import check_nested_weight_paths

    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla", ema=True), str(tmp_path / "staging"))
    _cache_plan(hf_home, plan)
    expected = load_file(plan.files["model.safetensors"])
    state = read_model_weights("hf://org/vla")  # what --model.backbone_run hf://org/vla loads
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in expected)
    ref = resolve_checkpoint("hf://org/vla")  # what --model.resume_weights_only True loads
    assert ref.number == -1 and not ref.sharded and ref.path.endswith("model.safetensors")
    assert "checkpoints" not in os.listdir(os.path.dirname(ref.path))  # no optimizer state was fetched

    from vla_foundry.models.diffusion_policy.params import DiffusionPolicyParams

    check_nested_weight_paths(DiffusionPolicyParams(backbone_run="hf://org/vla"))
    with pytest.raises(Exception, match="backbone_run=hf://org/vla_absent"):
        check_nested_weight_paths(DiffusionPolicyParams(backbone_run="hf://org/vla_absent"))


def test_checkpoint_export_of_a_hub_run_writes_its_weights(tmp_path, hf_home, dcp_run):
    from vla_foundry.checkpoint.cli import main as checkpoint_main

    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla"), str(tmp_path / "staging"))
    _cache_plan(hf_home, plan)
    out = str(tmp_path / "exported.safetensors")
    assert checkpoint_main(["export", "hf://org/vla", "--output", out]) == 0
    # Re-exported from the pushed file (safetensors' own writer): the same tensors, not necessarily the same header.
    from safetensors.torch import load_file

    got, pushed = load_file(out), load_file(plan.files["model.safetensors"])
    assert got.keys() == pushed.keys() and all(torch.equal(got[k], pushed[k]) for k in pushed)


def test_a_pulled_run_pushes_again_with_the_same_weights(tmp_path, hf_home, dcp_run):
    first = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla", ema=True), str(tmp_path / "staging"))
    _cache_plan(hf_home, first)
    pull("hf://org/vla", str(tmp_path / "pulled"))
    again = plan_run_push(
        PushParams(run_dir=str(tmp_path / "pulled"), repo="org/vla2", ema=True), str(tmp_path / "staging2")
    )
    for name in ("model.safetensors", "ema.safetensors", "config_model.yaml", "stats.json"):
        with open(again.files[name], "rb") as a, open(first.files[name], "rb") as b:
            assert a.read() == b.read(), name
    assert _card_metadata(again.card)["vla_foundry"]["checkpoint"] == "exported"


def test_writing_to_a_hub_path_names_the_push_command(hf_home):
    with pytest.raises(storage.StorageError, match="read-only.*vla_foundry.hub push"):
        storage.write_text("hf://org/vla/notes.txt", "x")


def test_full_resume_from_a_hub_run_is_refused_with_the_pull_command(hf_home):
    from vla_foundry.checkpoint import CheckpointError
    from vla_foundry.training_run import resolve_resume

    class Model:
        resume_from_checkpoint = "hf://org/vla"
        resume_weights_only = False

    class Params:
        model = Model()

    with pytest.raises(CheckpointError, match="vla_foundry.hub pull"):
        resolve_resume(Params(), None)


class _FileHub:
    """A real HTTP server on loopback serving one file the way the Hub's resolve endpoint does (HEAD metadata, GET
    with Range). The first GET without Range is cut: the connection closes after `cut_after` bytes of the body."""

    def __init__(self, data: bytes, cut_after: int) -> None:
        import hashlib
        import http.server
        import threading

        self.data, self.cut_after, self.requests = data, cut_after, []
        etag = hashlib.sha256(data).hexdigest()
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _head(self, status: int, length: int, extra: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("X-Repo-Commit", "c" * 40)
                self.send_header("ETag", f'"{etag}"')
                self.send_header("Content-Length", str(length))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()

            def do_HEAD(self) -> None:
                hub.requests.append(("HEAD", self.path, None))
                self._head(200, len(hub.data), {})

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                if "/resolve/" not in self.path:  # only the file itself is served
                    hub.requests.append(("GET", self.path, rng))
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                first = not any(r[0] == "GET" and "/resolve/" in r[1] for r in hub.requests)
                hub.requests.append(("GET", self.path, rng))
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = hub.data[start:]
                extra = {"Content-Range": f"bytes {start}-{len(hub.data) - 1}/{len(hub.data)}"} if rng else {}
                self._head(206 if rng else 200, len(body), extra)
                if first:
                    self.wfile.write(body[: hub.cut_after])
                    self.wfile.flush()
                    self.close_connection = True  # the transfer breaks: fewer bytes than Content-Length
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()


def test_a_broken_download_resumes_where_it_stopped(tmp_path):
    from huggingface_hub import constants

    chunk = constants.DOWNLOAD_CHUNK_SIZE  # the client writes whole chunks: the resume point is a chunk boundary
    data = (bytes(range(256)) * (chunk // 256 * 2 + 300))[: 2 * chunk + 12345]
    hub = _FileHub(data, cut_after=chunk + chunk // 2)
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_TOKEN", None)
    read = "from vla_foundry import storage; import sys; sys.stdout.write(storage.hf_file('hf://org/big/weights.bin'))"
    try:
        proc = subprocess.run([sys.executable, "-c", read], env=env, capture_output=True, text=True, timeout=180)
    finally:
        hub.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(proc.stdout, "rb") as f:
        assert f.read() == data
    downloads = [rng for method, path, rng in hub.requests if method == "GET" and "/resolve/" in path]
    assert downloads == [None, f"bytes={chunk}-"]


class _CommitHub:
    """A real HTTP server on loopback answering the Hub's repo-creation, pre-upload and commit endpoints the way the
    Hub does for small files ("regular" uploads inside the commit); records every commit it receives."""

    def __init__(self) -> None:
        import gzip
        import http.server
        import threading

        self.commits: list[list[dict]] = []
        self.validated: list[dict] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status: int, payload: dict | None = None) -> None:
                body = json.dumps(payload or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._reply(404)

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if data[:2] == b"\x1f\x8b":
                    data = gzip.decompress(data)
                if self.path.startswith("/api/repos/create"):
                    self._reply(200, {"url": f"{hub.url}/org/vla"})
                elif self.path.startswith("/api/validate-yaml"):  # the client has the card's metadata checked
                    hub.validated.append(json.loads(data))
                    self._reply(200, {"errors": [], "warnings": []})
                elif "/preupload/" in self.path:
                    files = json.loads(data)["files"]
                    modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
                    self._reply(200, {"files": modes})
                elif "/commit/" in self.path:
                    hub.commits.append([json.loads(line) for line in data.splitlines() if line.strip()])
                    self._reply(200, {"commitUrl": f"{hub.url}/org/vla/commit/{'a' * 40}", "commitOid": "a" * 40})
                else:
                    self._reply(404)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def test_a_push_is_one_commit_holding_every_file_and_the_card(tmp_path, dcp_run):
    import base64

    plan = plan_run_push(PushParams(run_dir=dcp_run, repo="org/vla"), str(tmp_path / "staging"))
    hub = _CommitHub()
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.url, "HF_TOKEN": "hf_test_token"}
    script = "import json, sys; from vla_foundry.hub import PushPlan, upload; print(upload(PushPlan(**json.loads(sys.argv[1]))))"
    fields = {"repo_id": plan.repo_id, "repo_type": plan.repo_type, "files": plan.files, "card": plan.card}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script, json.dumps(fields)], capture_output=True, text=True, env=env, timeout=120
        )
    finally:
        hub.server.shutdown()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(hub.commits) == 1
    assert [v["content"] for v in hub.validated] == [plan.card]  # the card's metadata was checked by the Hub
    sent = {e["value"]["path"]: base64.b64decode(e["value"]["content"]) for e in hub.commits[0] if e["key"] == "file"}
    assert set(sent) == set(plan.files)
    for path, content in sent.items():
        with open(plan.files[path], "rb") as f:
            assert content == f.read(), path


def test_the_card_of_a_plugin_policy_run_is_tagged_as_robotics(monkeypatch):
    from vla_foundry.hub import model_card

    monkeypatch.syspath_prepend(str(REPO_ROOT / "tests" / "models" / "plugin_policy"))
    weights = {"checkpoint": "checkpoints/checkpoint_1", "ema": False}
    card = model_card("org/act", {"plugins": ["toy_policies.act"]}, {"type": "toy_act"}, weights, None, False)
    meta = _card_metadata(card)
    assert {"vla_foundry", "toy_act", "robotics"} <= set(meta["tags"]) and meta["pipeline_tag"] == "robotics"
    lm_card = model_card("org/lm", {}, {"type": "transformer"}, weights, None, False)
    assert "robotics" not in _card_metadata(lm_card)["tags"]
