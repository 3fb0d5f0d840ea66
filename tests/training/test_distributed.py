"""Single-process parts of the wrapping: context from the environment, activation checkpointing, block compilation."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import VOCAB, tiny_lm_params
from vla_foundry.distributed import (
    apply_activation_checkpointing,
    compile_blocks,
    gradient_sync,
    init_distributed,
    parallelize_model,
    unwrap_model,
)
from vla_foundry.models.registry import create_model, fsdp_block_types
from vla_foundry.params import DistributedParams, HyperParams


def _loss_and_grads(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(input_ids=ids[:, :-1]).float().logsumexp(-1).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.fixture
def model_and_ids():
    torch.manual_seed(0)
    return create_model(tiny_lm_params()), torch.randint(0, VOCAB, (2, 17))


def test_single_process_gets_no_process_group_and_plain_wrapping(cpu_ctx):
    ctx = init_distributed(DistributedParams())
    assert (ctx.world_size, ctx.rank, ctx.wrapping, ctx.backend) == (1, 0, "none", None)
    assert not torch.distributed.is_initialized()
    model = create_model(tiny_lm_params())
    assert parallelize_model(model, ctx, DistributedParams(), HyperParams(precision="fp32")) is model
    assert unwrap_model(model) is model
    with gradient_sync(model, enabled=False):
        pass


def test_activation_checkpointing_keeps_parameter_names_and_gradients(model_and_ids):
    model, ids = model_and_ids
    loss, grads = _loss_and_grads(model, ids)
    names = [n for n, _ in model.named_parameters()]
    assert apply_activation_checkpointing(model, fsdp_block_types(model)) == 2
    loss_ckpt, grads_ckpt = _loss_and_grads(model, ids)
    assert [n for n, _ in model.named_parameters()] == names
    assert torch.equal(loss, loss_ckpt)
    assert all(torch.equal(grads[n], grads_ckpt[n]) for n in names)


def test_block_compilation_keeps_parameter_names_and_outputs(model_and_ids):
    model, ids = model_and_ids
    loss, grads = _loss_and_grads(model, ids)
    names = [n for n, _ in model.named_parameters()]
    # The eager backend traces with dynamo like inductor does, without minutes of C++ compilation on a CPU.
    compile_blocks(model, fsdp_block_types(model), backend="aot_eager")
    loss_compiled, grads_compiled = _loss_and_grads(model, ids)
    assert [n for n, _ in model.named_parameters()] == names
    assert torch.allclose(loss, loss_compiled, atol=1e-6)
    assert all(torch.allclose(grads[n], grads_compiled[n], atol=1e-5) for n in names)
    assert set(model.state_dict()) == set(create_model(tiny_lm_params()).state_dict())


def test_pure_bf16_casts_the_weights(cpu_ctx):
    model = parallelize_model(
        create_model(tiny_lm_params()), cpu_ctx, DistributedParams(), HyperParams(precision="pure_bf16")
    )
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_cpu_offload_without_gpus_is_a_config_error():
    import dataclasses

    from vla_foundry.distributed import DistributedContext
    from vla_foundry.params import ConfigError

    ctx = DistributedContext(0, 2, 0, torch.device("cpu"), "gloo", "fsdp")
    with pytest.raises(ConfigError, match="distributed.cpu_offload=True needs GPUs"):
        parallelize_model(
            create_model(tiny_lm_params()),
            ctx,
            dataclasses.replace(DistributedParams(), cpu_offload=True),
            HyperParams(),
        )
