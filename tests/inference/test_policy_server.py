"""The policy server: wire format, same actions as in-process, errors as replies, latency report, CLI start/stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.inference.conftest import observation
from vla_foundry.inference import Policy, PolicyClient, PolicyServer
from vla_foundry.inference.policy_server import (
    PolicyServerError,
    WireFormatError,
    decode_message,
    encode_message,
)


@pytest.fixture(scope="module")
def served(policy_run):
    policy = Policy.from_run(policy_run)
    with PolicyServer(policy, port=0) as server:
        yield policy, PolicyClient(server.url)


def test_messages_round_trip_arrays_of_every_dtype_and_nested_values():
    message = {
        "images": {"front": [np.arange(12, dtype=np.uint8).reshape(2, 2, 3)]},
        "state": np.linspace(0, 1, 6).reshape(3, 2),
        "flags": np.array([True, False]),
        "ids": np.arange(3, dtype=np.int64),
        "instruction": "pick",
        "seed": None,
        "n": 3,
    }
    out = decode_message(encode_message(message))
    assert out["instruction"] == "pick" and out["seed"] is None and out["n"] == 3
    for key in ("state", "flags", "ids"):
        assert out[key].dtype == message[key].dtype
        np.testing.assert_array_equal(out[key], message[key])
    np.testing.assert_array_equal(out["images"]["front"][0], message["images"]["front"][0])


def test_a_message_in_another_format_is_rejected():
    with pytest.raises(WireFormatError, match="not a policy-server message"):
        decode_message(b'{"observation": 1}')


def test_server_answers_with_the_same_actions_as_the_in_process_policy(served):
    policy, client = served
    obs = observation(np.random.default_rng(0))
    expected = policy.predict(obs, seed=42)
    np.testing.assert_array_equal(client.predict(obs, seed=42), expected)
    batch = [obs, observation(np.random.default_rng(1))]
    np.testing.assert_array_equal(client.predict(batch, seed=7), policy.predict(batch, seed=7))


def test_health_and_metadata_describe_the_served_policy(served):
    _, client = served
    assert client.health() == {"status": "ok"}
    meta = client.metadata()
    assert meta["camera_names"] == ["front", "wrist"]
    assert meta["proprioception_fields"] == {"observation.state": 4}
    assert meta["action_fields"] == {"action": 4}
    assert meta["chunk_length"] == 5 and meta["proprioception_rows"] == 2


def test_a_bad_observation_gets_an_error_reply_naming_the_field(served):
    _, client = served
    obs = observation(np.random.default_rng(0))
    obs["proprioception"]["observation.state"] = np.zeros((2, 9))
    with pytest.raises(PolicyServerError, match=r"answered 400: .*has shape \(2, 9\); expected \(2, 4\)"):
        client.predict(obs)
    assert client.health() == {"status": "ok"}  # still serving


def test_latency_report_counts_every_timed_request(served):
    _, client = served
    report = client.latency_report(n=3, warmup=1)
    assert report["round_trip"]["count"] == 3 and report["inference"]["count"] == 3
    assert report["round_trip"]["p50_ms"] >= report["inference"]["p50_ms"] > 0
    assert client.server_latency()["count"] >= 4


def test_cli_serves_until_sigterm(policy_run):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "vla_foundry.inference.policy_server", "serve", "--run_dir", policy_run]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    try:
        client = PolicyClient(f"http://127.0.0.1:{port}", timeout_s=5)
        for _ in range(300):
            try:
                if client.health() == {"status": "ok"}:
                    break
            except OSError:
                time.sleep(0.2)
        assert client.predict(observation(np.random.default_rng(0)), seed=0).shape == (5, 4)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "policy server stopped" in out


def test_cli_serve_of_a_missing_run_is_one_error_line(tmp_path, capsys):
    from vla_foundry.inference.policy_server import main

    missing = str(tmp_path / "no_run")
    assert main(["serve", "--run_dir", missing, "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing} is not a run directory") and err.count("\n") == 1


def test_cli_latency_measures_the_server_named_by_policy_url(served, capsys):
    from vla_foundry.inference.policy_server import main

    _, client = served  # on a free port, not the default 8765: only the flag can lead there
    assert main(["latency", "--policy_url", client.url, "--n", "2"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("round_trip: n=2 ") and "\n inference: n=2 " in out.out
    assert out.err == ""


def test_cli_latency_still_takes_url_with_a_deprecation_warning(served, capsys):
    from vla_foundry.inference.policy_server import main

    _, client = served
    assert main(["latency", "--url", client.url, "--n", "2"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("round_trip: n=2 ")
    assert out.err == "warning: --url is now --policy_url; the old name will be removed\n"
