"""The model contract, checked the same way for every registered model type (built-in and the plugin policy of
tests/models/plugin_policy): a tiny one builds; its loss is finite and reaches its trainable parameters; its FSDP
block types are wrapped by `parallelize_model`; its params and weights round-trip through a run directory; and an
acting policy predicts through `Policy` and the policy server.

A new model type adds its tiny case to `CASES` (the first test fails until it does)."""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import REPO_ROOT
from tests.hf_models import HF_IMAGE_TOKEN, HF_VOCAB
from tests.inference.conftest import observation
from tests.models.conftest import tiny_lm_params, tiny_vlm_params
from tests.models.diffusion_policy.conftest import (
    ACTION_DIM,
    FUTURE,
    PAST,
    PROPRIO_DIM,
    policy_params,
    robotics_batch,
)
from vla_foundry.models.registry import create_model, fsdp_block_types, list_registered_models
from vla_foundry.params import PolicyParams, TransformerHFParams, ViTHFParams, VLMHFParams

sys.path.insert(0, str(REPO_ROOT / "tests" / "models" / "plugin_policy"))
import toy_policies.act  # noqa: F401
from toy_policies.act.params import ToyACTParams


@dataclass
class Case:
    params: Any
    # A training batch for the type's batch handler; None for types trained only inside another model (vision
    # towers have no batch handler).
    batch: dict[str, Any] | None
    # Calls the built model on the case's inputs (for the round trip).
    forward: Callable[[torch.nn.Module], torch.Tensor]


def _lm_batch(vocab: int) -> dict[str, Any]:
    return {"input_ids": torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(0))}


def _vlm_batch(image_token: int, n_tokens: int, img: int, vocab: int) -> dict[str, Any]:
    ids = _lm_batch(vocab)["input_ids"][:, :1].repeat(1, n_tokens + 7)
    ids[:, 1 : 1 + n_tokens] = image_token
    return {"input_ids": ids, "images": torch.rand(2, 1, 3, img, img, generator=torch.Generator().manual_seed(1))}


def _policy_forward(model: torch.nn.Module) -> torch.Tensor:
    return model.generate_actions(robotics_batch(2), generator=torch.Generator().manual_seed(0))


def case_transformer(request) -> Case:
    batch = _lm_batch(64)
    return Case(tiny_lm_params(), batch, lambda m: m(input_ids=batch["input_ids"]))


def case_transformer_hf(request) -> Case:
    batch = _lm_batch(HF_VOCAB)
    params = TransformerHFParams(hf_pretrained=str(request.getfixturevalue("hf_llama_dir")))
    return Case(params, batch, lambda m: m(input_ids=batch["input_ids"]))


def case_vit(request) -> Case:
    params = tiny_vlm_params().vit
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    return Case(params, None, lambda m: m(images))


def case_vit_hf(request) -> Case:
    params = ViTHFParams(hf_pretrained=str(request.getfixturevalue("timm_vit_dir")), img_size=32, patch_size=8)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    return Case(params, None, lambda m: m(images))


def case_vlm(request) -> Case:
    batch = _vlm_batch(63, 4, 16, 60)
    return Case(tiny_vlm_params(), batch, lambda m: m(input_ids=batch["input_ids"], images=batch["images"]))


def case_vlm_hf(request) -> Case:
    batch = _vlm_batch(HF_IMAGE_TOKEN, 16, 32, 200)
    params = VLMHFParams(hf_pretrained=str(request.getfixturevalue("hf_paligemma_dir")))
    return Case(params, batch, lambda m: m(input_ids=batch["input_ids"], images=batch["images"]))


def case_diffusion_policy(request) -> Case:
    return Case(policy_params(), robotics_batch(3), _policy_forward)


def case_toy_act(request) -> Case:
    dims = dict(
        action_dim=ACTION_DIM, proprioception_dim=PROPRIO_DIM, past_lowdim_steps=PAST, future_lowdim_steps=FUTURE
    )
    return Case(ToyACTParams(hidden_dim=16, **dims), robotics_batch(3), _policy_forward)


CASES: dict[str, Callable[[Any], Case]] = {
    "transformer": case_transformer,
    "transformer_hf": case_transformer_hf,
    "vit": case_vit,
    "vit_hf": case_vit_hf,
    "vlm": case_vlm,
    "vlm_hf": case_vlm_hf,
    "diffusion_policy": case_diffusion_policy,
    "toy_act": case_toy_act,
}
TRAINED = [name for name in CASES if name not in ("vit", "vit_hf")]
POLICIES = ["diffusion_policy", "toy_act"]


def test_every_registered_model_type_has_a_contract_case():
    assert set(list_registered_models()) <= set(CASES), "add a tiny case for the new model type to CASES"


def test_the_policies_here_are_the_registered_acting_policies():
    from vla_foundry.models.registry import list_registered_policies

    assert list_registered_policies() == sorted(POLICIES)


@pytest.fixture(params=sorted(CASES))
def case(request) -> tuple[str, Case]:
    return request.param, CASES[request.param](request)


@pytest.fixture(params=TRAINED)
def trained_case(request) -> tuple[str, Case]:
    return request.param, CASES[request.param](request)


def test_a_tiny_model_builds_as_its_registered_type(case):
    name, c = case
    assert c.params.type == name
    model = create_model(c.params)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert torch.isfinite(c.forward(model.eval()).float()).all()


def test_the_loss_is_finite_and_reaches_the_trainable_parameters(trained_case):
    from vla_foundry.models.registry import get_batch_handler

    _, c = trained_case
    model = create_model(c.params).train()
    handler = get_batch_handler(c.params)
    out = handler.compute_loss(model, handler.to_device(c.batch, torch.device("cpu")))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.num_tokens > 0
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


@pytest.fixture(scope="module")
def process_group():
    """A one-process gloo group on loopback, as torchrun would start with --nproc_per_node 1."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_fsdp_wraps_every_declared_block(case, process_group):
    from torch.distributed.fsdp import FSDPModule

    from vla_foundry.distributed import DistributedContext, parallelize_model
    from vla_foundry.params import DistributedParams, HyperParams

    _, c = case
    model = create_model(c.params)
    block_types = fsdp_block_types(model)
    blocks = [m for m in model.modules() if isinstance(m, block_types)]
    assert block_types and blocks, "the model declares no FSDP block found in it"
    ctx = DistributedContext(0, 1, 0, torch.device("cpu"), "gloo", "fsdp")
    wrapped = parallelize_model(model, ctx, DistributedParams(), HyperParams(precision="fp32"))
    assert isinstance(wrapped, FSDPModule)
    assert all(isinstance(block, FSDPModule) for block in blocks)


def save_weights(model: torch.nn.Module, run_dir: str) -> None:
    """`model`'s weights as checkpoint 1 of `run_dir` (a single-file checkpoint and its trainer state)."""
    from vla_foundry.checkpoint import checkpoint_file, save_file

    save_file(model.state_dict(), checkpoint_file(run_dir, 1))
    save_file({"step": 1}, checkpoint_file(run_dir, 1, "trainer_state"))


def test_params_and_weights_round_trip_through_a_run_directory(case, tmp_path):
    from vla_foundry.inference import load_run
    from vla_foundry.params.parsing import save_params

    _, c = case
    torch.manual_seed(3)
    model = create_model(c.params).eval()
    save_params(c.params, tmp_path / "config_model.yaml")
    save_weights(model, str(tmp_path))
    loaded = load_run(str(tmp_path)).model
    assert loaded.state_dict().keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    torch.testing.assert_close(c.forward(loaded), c.forward(model))


def write_policy_run(run_dir: str, model_params: PolicyParams, dataset_dir: str) -> None:
    """A run directory of `model_params` for the tiny robotics dataset: configs, saved processor, fresh weights."""
    from vla_foundry.data.robotics.processor import RoboticsProcessor, derive_robotics_data
    from vla_foundry.params import RoboticsDataParams, TrainExperimentParams, derive_params
    from vla_foundry.params.parsing import save_params

    data = RoboticsDataParams(
        dataset_manifest=[dataset_dir],
        dataset_weighting=[1.0],
        dataset_modality=["robotics"],
        action_fields=["action"],
        proprioception_fields=["observation.state"],
    )
    params = derive_params(TrainExperimentParams(model=model_params, data=derive_robotics_data(data)))
    os.makedirs(run_dir, exist_ok=True)
    save_params(params, os.path.join(run_dir, "config.yaml"))
    save_params(params.model, os.path.join(run_dir, "config_model.yaml"))
    RoboticsProcessor.from_data_params(params.data).save(run_dir)
    save_weights(create_model(params.model), run_dir)


UNFILLED = {
    "diffusion_policy": lambda: dataclasses.replace(
        policy_params(), action_dim=None, proprioception_dim=None, past_lowdim_steps=None, future_lowdim_steps=None
    ),
    "toy_act": lambda: ToyACTParams(hidden_dim=16),
}


@pytest.fixture(scope="module")
def tiny_robotics_dir(tmp_path_factory) -> str:
    from vla_foundry.data.scripts.make_tiny_datasets import make_robotics

    return make_robotics(str(tmp_path_factory.mktemp("robotics") / "robotics_lerobot"), "lerobot", seed=0)


@pytest.mark.parametrize("name", POLICIES)
def test_a_policy_predicts_through_policy_and_the_server(name, tmp_path, tiny_robotics_dir):
    from vla_foundry.inference import Policy, PolicyClient, PolicyServer

    write_policy_run(str(tmp_path / name), UNFILLED[name](), tiny_robotics_dir)
    policy = Policy.from_run(str(tmp_path / name))
    obs = observation(np.random.default_rng(0))
    chunk = policy.predict(obs, seed=5)
    assert chunk.shape == (policy.chunk_length, 4) == (5, 4)  # anchor + 4 future rows of the 4-dim action
    assert np.isfinite(chunk).all()
    with PolicyServer(policy, host="127.0.0.1", port=0) as server:
        np.testing.assert_array_equal(PolicyClient(server.url).predict(obs, seed=5), chunk)
