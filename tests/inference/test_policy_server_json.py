"""The policy server's JSON wire format, spoken by a client that is not ours: curl against the real server on
127.0.0.1. The binary format stays what `PolicyClient` speaks; a reply follows Accept, else the request's format."""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.inference.conftest import observation
from vla_foundry.inference import Policy, PolicyServer
from vla_foundry.inference.policy_server import encode_message

CURL = shutil.which("curl")
pytestmark = pytest.mark.skipif(CURL is None, reason="these tests speak to the server with the curl program")


@pytest.fixture(scope="module")
def policy(policy_run) -> Policy:
    return Policy.from_run(policy_run)


@pytest.fixture(scope="module")
def url(policy) -> Iterator[str]:
    with PolicyServer(policy, port=0) as server:
        yield server.url


def curl(url: str, *args: str, body: bytes | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one curl call; `body` is sent as is (`--data-binary @-`)."""
    marker = b"\n--curl-status--"
    cmd = [CURL, "-sS", "--max-time", "60", "-w", marker.decode() + "%{http_code} %{content_type}", *args]
    if body is not None:
        cmd += ["--data-binary", "@-"]
    out = subprocess.run([*cmd, url], input=body, capture_output=True, check=True, timeout=90).stdout
    payload, _, trailer = out.rpartition(marker)
    status, _, content_type = trailer.decode().partition(" ")
    return int(status), content_type, payload


def png_base64(frame: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def jpeg_bytes(frame: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(frame).save(out, format="JPEG", quality=90)
    return out.getvalue()


def test_curl_health_gets_json_without_naming_a_format(url):
    status, content_type, body = curl(url + "/health")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"status": "ok"}


def test_curl_metadata_with_accept_json_is_the_policy_metadata(url, policy):
    status, content_type, body = curl(url + "/metadata", "-H", "Accept: application/json")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == json.loads(json.dumps(policy.metadata()))


def test_curl_predict_with_a_json_body_gives_the_in_process_actions(url, policy):
    obs = observation(np.random.default_rng(0))
    front, wrist = obs["images"]["front"], obs["images"]["wrist"]
    jpeg = jpeg_bytes(wrist[1])
    # What the server must decode the JPEG to: the frame as an image library reads it back (JPEG is lossy).
    obs["images"]["wrist"][1] = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    request = {
        "observation": {
            "images": {
                "front": [front[0].tolist(), front[1].tolist()],  # nested lists of 0..255
                "wrist": [png_base64(wrist[0]), "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()],
            },
            "proprioception": {"observation.state": obs["proprioception"]["observation.state"].tolist()},
            "instruction": obs["instruction"],
        },
        "seed": 3,
    }
    status, content_type, body = curl(
        url + "/predict",
        "-H",
        "Content-Type: application/json",
        "-H",
        "Accept: application/json",
        body=json.dumps(request).encode(),
    )
    assert (status, content_type) == (200, "application/json"), body[:300]
    reply = json.loads(body)
    np.testing.assert_array_equal(np.array(reply["actions"]), policy.predict(obs, seed=3))
    assert reply["inference_ms"] > 0


def test_a_binary_request_with_accept_json_gets_a_json_reply(url, policy):
    obs = observation(np.random.default_rng(1))
    status, content_type, body = curl(
        url + "/predict",
        "-H",
        "Content-Type: application/x-vla-foundry",
        "-H",
        "Accept: application/json",
        body=bytes(encode_message({"observation": obs, "seed": 5})),
    )
    assert (status, content_type) == (200, "application/json"), body[:300]
    np.testing.assert_array_equal(np.array(json.loads(body)["actions"]), policy.predict(obs, seed=5))


def test_a_bad_json_observation_gets_a_json_400_naming_the_field(url):
    obs = observation(np.random.default_rng(0))
    request = {
        "observation": {
            "images": {cam: [f.tolist() for f in frames] for cam, frames in obs["images"].items()},
            "proprioception": {"observation.state": np.zeros((2, 9)).tolist()},
        }
    }
    status, content_type, body = curl(
        url + "/predict", "-H", "Content-Type: application/json", body=json.dumps(request).encode()
    )
    assert (status, content_type) == (400, "application/json")
    assert "['proprioception']['observation.state'] has shape (2, 9); expected (2, 4)" in json.loads(body)["error"]


def test_a_json_frame_outside_0_to_255_gets_400_naming_the_frame(url):
    frame = np.full((4, 4, 3), 256).tolist()
    request = {"observation": {"images": {"front": [frame, frame]}, "proprioception": {}}}
    status, _, body = curl(url + "/predict", "-H", "Content-Type: application/json", body=json.dumps(request).encode())
    assert status == 400
    assert "observation['images']['front'][0] must hold integers 0..255" in json.loads(body)["error"]


def test_a_json_body_of_millions_of_lists_gets_400_before_parsing(url):
    body = b'{"observation": [' + b"[]," * 2_100_000 + b"0]}"  # 6.3 MB, under --max_request_mb
    status, _, reply = curl(url + "/predict", "-H", "Content-Type: application/json", body=body)
    assert status == 400
    assert "holds more than 2,000,000 JSON values" in json.loads(reply)["error"]


def test_a_body_in_neither_format_gets_415_naming_both(url):
    status, _, body = curl(url + "/predict", "-d", "observation=1")  # curl's default: a form body
    assert status == 415
    assert "send application/x-vla-foundry (binary) or application/json" in json.loads(body)["error"]
