"""KV-cache generation on the device: the cache gives what recomputing the whole sequence gives."""

from __future__ import annotations

import pytest
import torch

from tests.gpu.conftest import VOCAB, tiny_lm_params

pytestmark = pytest.mark.gpu


def model_on(device: torch.device, dtype: torch.dtype = torch.float32):
    from vla_foundry.models.registry import create_model

    torch.manual_seed(0)
    return create_model(tiny_lm_params()).to(device=device, dtype=dtype).eval()


def test_greedy_generation_with_the_cache_equals_recomputation(device):
    model = model_on(device)
    prompt = torch.randint(0, VOCAB, (3, 7), device=device)
    cached = model.generate(prompt, max_new_tokens=20)
    uncached = model.generate(prompt, max_new_tokens=20, use_cache=False)
    assert cached.shape == (3, 20) and cached.device.type == device.type
    assert torch.equal(cached, uncached)


def test_sampling_with_the_cache_and_a_device_generator_is_reproducible(device):
    model = model_on(device)
    prompt = torch.randint(0, VOCAB, (2, 5), device=device)
    kwargs = dict(max_new_tokens=16, temperature=0.9, top_k=20, top_p=0.9)
    a = model.generate(prompt, generator=torch.Generator(device).manual_seed(3), **kwargs)
    b = model.generate(prompt, generator=torch.Generator(device).manual_seed(3), **kwargs)
    c = model.generate(prompt, use_cache=False, generator=torch.Generator(device).manual_seed(3), **kwargs)
    assert torch.equal(a, b)
    assert torch.equal(a, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_cached_decoding_logits_match_a_full_forward_pass(device, dtype):
    """Logits of each decoded position from the cache equal those of one forward pass over the whole sequence."""
    model = model_on(device, dtype)
    ids = torch.randint(0, VOCAB, (2, 12), device=device)
    full = model(input_ids=ids).float()  # (B, 12, V)
    cache = model.new_cache(2, 12, dtype, device)
    steps = [model(input_ids=ids[:, :8], cache=cache)[:, -1]]
    for t in range(8, 12):
        steps.append(model(input_ids=ids[:, t : t + 1], cache=cache)[:, -1])
    decoded = torch.stack(steps, dim=1).float()  # (B, 5, V): positions 7 .. 11
    tol = {"rtol": 1e-4, "atol": 1e-4} if dtype == torch.float32 else {"rtol": 5e-2, "atol": 5e-2}
    torch.testing.assert_close(decoded, full[:, 7:], **tol)
    assert cache.k.dtype == dtype and cache.k.device.type == device.type
