"""The diffusion policy: loss and sampling shapes for every backbone kind, masking, known rows, repeats,
freezing and learning-rate groups, and clear errors for bad batches and mismatched backbones."""

from __future__ import annotations

import pytest
import torch

from tests.models.diffusion_policy.conftest import (
    ACTION_DIM,
    FUTURE,
    IMG,
    N_IMAGES,
    PAST,
    TINY_LM,
    TINY_VIT,
    TINY_VLM,
    WINDOW,
    hf_backbones,
    policy_params,
    replace,
    robotics_batch,
)
from vla_foundry.models import create_model, get_batch_handler
from vla_foundry.params import ConfigError

SUPERVISED_ROWS = WINDOW - PAST  # the anchor and the future rows


@pytest.fixture(scope="module")
def backbones(tiny_paligemma_dir, tiny_clip_dir, tiny_timm_dir, tiny_idefics3_dir) -> dict:
    hf = hf_backbones(tiny_paligemma_dir, tiny_clip_dir, tiny_timm_dir, tiny_idefics3_dir)
    return {"vlm": TINY_VLM, "vit": TINY_VIT, **hf}


# vlm_hf: PaliGemma-class (image tokens prepended by the processor); vlm_hf_idefics3: SmolVLM-class (chat template,
# per-sample image stacks).
@pytest.mark.parametrize("kind", ["vlm", "vit", "vlm_hf", "vlm_hf_idefics3", "clip", "vit_hf"])
def test_loss_and_sampled_chunk_shapes_for_every_backbone_kind(backbones, kind):
    params = policy_params(backbones[kind])
    model = create_model(params)
    # The output layer starts at zero (no gradient upstream on step 0); give it weights as after one step.
    torch.nn.init.normal_(model.head.action_out.weight, std=0.1)
    batch = robotics_batch(batch_size=3)
    out = get_batch_handler(params).compute_loss(model, batch)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.num_tokens == 3 * SUPERVISED_ROWS * ACTION_DIM
    out.loss.backward()
    assert model.head.action_in.weight.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    chunk = model.generate_actions(batch, generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (3, WINDOW, ACTION_DIM)


@pytest.mark.parametrize("kind", ["vlm", "clip"])
def test_all_tokens_conditioning_reads_every_valid_token(backbones, kind):
    params = policy_params(backbones[kind], conditioning="all_tokens")
    model = create_model(params)
    batch = robotics_batch(batch_size=2, instruction_len=5)
    cond, mask = model.encode(batch)
    assert cond.shape[:3] == (2, 1, mask.shape[1]) and mask.shape[1] > 2
    loss = get_batch_handler(params).compute_loss(model, batch).loss
    assert torch.isfinite(loss)


def test_action_and_image_tokens_conditioning_is_the_image_tokens_then_the_action_token():
    torch.manual_seed(0)
    reader = create_model(policy_params(TINY_VLM, conditioning="action_and_image_tokens", backbone_num_layers_used=2))
    query = create_model(policy_params(TINY_VLM, backbone_num_layers_used=2))
    query.load_state_dict(reader.state_dict())
    batch = robotics_batch(batch_size=2, instruction_len=5)
    cond, mask = reader.encode(batch)
    vlm = reader.backbone.model
    n_img_tok = N_IMAGES * vlm.img_num_tokens
    assert cond.shape == (2, 2, n_img_tok + 1, TINY_LM.hidden_dim) and mask.shape == (2, n_img_tok + 1)
    assert bool(mask.all())
    # The last token is what the `<action>` read-out gives; the others are the image positions of the last two
    # layers' hidden states over [images | instruction | <action>].
    torch.testing.assert_close(cond[:, :, -1:], query.encode(batch)[0])
    images = (batch["images"] - 0.5) / 0.5
    ids = torch.full((2, n_img_tok), TINY_VLM.image_token_id)
    hidden = vlm.language_model.hidden_states(inputs_embeds=vlm.merge_embeddings(ids, images), num_layers=2)
    torch.testing.assert_close(cond[:, :, :-1], torch.stack(hidden, dim=1))


def test_action_and_image_tokens_hides_the_tokens_of_a_missing_camera():
    model = create_model(policy_params(TINY_VLM, conditioning="action_and_image_tokens"))
    batch = robotics_batch(batch_size=2)
    batch["image_mask"][1, 0] = False
    _, mask = model.encode(batch)
    per_image = model.backbone.model.img_num_tokens
    assert bool(mask[0].all())
    assert not bool(mask[1, :per_image].any()) and bool(mask[1, per_image:].all())


@pytest.mark.parametrize("backbone", [TINY_VIT, TINY_LM])
def test_action_and_image_tokens_needs_a_native_vlm_backbone(backbone):
    with pytest.raises(ConfigError, match="action_and_image_tokens needs a native `vlm`"):
        policy_params(backbone, conditioning="action_and_image_tokens").validate()


@pytest.mark.parametrize("objective", ["flow_matching", "ddpm"])
def test_sampling_with_a_fixed_seed_is_deterministic(objective):
    model = create_model(policy_params(TINY_VIT, objective=objective)).eval()
    batch = robotics_batch()
    torch.nn.init.normal_(model.head.action_out.weight, std=0.1)  # a non-trivial network output
    first = model.generate_actions(batch, generator=torch.Generator().manual_seed(7))
    again = model.generate_actions(batch, generator=torch.Generator().manual_seed(7))
    other = model.generate_actions(batch, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_ddim_chunks_stay_within_the_clip_range():
    model = create_model(policy_params(TINY_VIT, objective="ddpm", prediction_type="sample", clip_sample=0.5)).eval()
    torch.nn.init.normal_(model.head.action_out.weight, std=3.0)
    chunk = model.generate_actions(robotics_batch(), generator=torch.Generator().manual_seed(0))
    assert chunk.shape == (3, WINDOW, ACTION_DIM)
    assert float(chunk.abs().max()) <= 0.5 + 1e-6


def test_masked_loss_ignores_padded_steps():
    params = policy_params(TINY_VIT)
    model = create_model(params)
    torch.nn.init.normal_(model.head.action_out.weight, std=0.1)
    batch = robotics_batch()
    batch["future_mask"][:, -2:] = False  # the episode ended two rows early
    padded = dict(batch, actions=batch["actions"].clone())
    padded["actions"][:, -2:] = 1e3  # garbage in the padded rows
    loss = model(batch, generator=torch.Generator().manual_seed(0))
    loss_padded = model(padded, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(loss["loss"], loss_padded["loss"])
    assert int(loss["num_elements"]) == 3 * (SUPERVISED_ROWS - 2) * ACTION_DIM


def test_known_past_actions_are_kept_fixed_when_sampling():
    model = create_model(policy_params(TINY_VIT)).eval()
    torch.nn.init.normal_(model.head.action_out.weight, std=0.1)
    batch = robotics_batch()
    known = torch.full((3, WINDOW, ACTION_DIM), 0.3)
    chunk = model.generate_actions(batch, known_actions=known, generator=torch.Generator().manual_seed(0))
    assert torch.equal(chunk[:, :PAST], known[:, :PAST])
    assert not torch.allclose(chunk[:, PAST:], known[:, PAST:])


def test_past_actions_feed_the_head_clean_in_training():
    params = policy_params(TINY_VIT)
    model = create_model(params)
    torch.nn.init.normal_(model.head.action_out.weight, std=0.1)
    batch = robotics_batch()
    shifted = dict(batch, actions=batch["actions"].clone())
    shifted["actions"][:, :PAST] += 1.0  # only the (unsupervised) past rows change
    a = model(batch, generator=torch.Generator().manual_seed(0))["loss"]
    b = model(shifted, generator=torch.Generator().manual_seed(0))["loss"]
    assert not torch.allclose(a, b)  # the head saw them (clean), although they carry no loss
    off = create_model(replace(params, condition_on_past_actions=False))
    off.load_state_dict(model.state_dict())
    a = off(batch, generator=torch.Generator().manual_seed(0))["loss"]
    b = off(shifted, generator=torch.Generator().manual_seed(0))["loss"]
    assert not torch.allclose(a, b)  # without conditioning they are noised inputs: the loss still moves


def test_action_head_repeats_reuse_one_backbone_pass():
    params = policy_params(TINY_VLM, num_action_head_repeats=4)
    model = create_model(params)
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    out = get_batch_handler(params).compute_loss(model, robotics_batch(batch_size=2))
    assert len(calls) == 1
    assert out.num_tokens == 2 * SUPERVISED_ROWS * ACTION_DIM


def test_native_vlm_appends_the_action_query_token_after_the_instruction():
    model = create_model(policy_params(TINY_VLM, backbone_num_layers_used=2))
    batch = robotics_batch(batch_size=2, instruction_len=5)
    batch["attention_mask"][1, 3:] = False
    seq, attn, pos = model.backbone.build_sequence(batch["input_ids"], batch["attention_mask"], n_images=2)
    image_tokens = 2 * TINY_VLM.img_num_tokens
    assert pos.tolist() == [image_tokens + 5, image_tokens + 3]
    assert int(seq[0, pos[0]]) == 260 and int(seq[1, pos[1]]) == 260
    assert bool((seq[:, :image_tokens] == 259).all())
    assert attn.sum(dim=1).tolist() == [image_tokens + 6, image_tokens + 4]
    cond, _ = model.encode(batch)
    assert cond.shape == (2, 2, 1, TINY_VLM.transformer.hidden_dim)  # last 2 layers at the query position


def test_freeze_options():
    frozen = create_model(policy_params(TINY_VLM, freeze_backbone=True))
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    assert all(p.requires_grad for p in frozen.head.parameters())

    vision = create_model(policy_params(TINY_VLM, freeze_backbone_vision=True))
    assert not any(p.requires_grad for p in vision.backbone.model.vision.parameters())
    assert all(p.requires_grad for p in vision.backbone.model.language_model.parameters())

    partial = create_model(policy_params(TINY_VLM, backbone_trainable_layers=1))
    layers = partial.backbone.model.language_model.layers
    assert all(p.requires_grad for p in layers[-1].parameters())
    assert not any(p.requires_grad for p in layers[0].parameters())
    assert not any(p.requires_grad for p in partial.backbone.model.vision.parameters())


def test_the_training_optimizer_gives_the_backbone_its_learning_rate_multiplier():
    """The optimizer exactly as training builds it: every backbone parameter at lr x 0.1, every other at lr."""
    from vla_foundry.optim import build_optimizer
    from vla_foundry.params import HyperParams
    from vla_foundry.training_run import lr_multipliers

    slow = create_model(policy_params(TINY_VLM, backbone_lr_multiplier=0.1))
    optimizer = build_optimizer(slow, HyperParams(lr=1e-3), lr_multipliers(slow))
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    backbone = {id(p) for p in slow.backbone.parameters()}
    assert set(lr_of) == {id(p) for p in slow.parameters()}
    assert all(lr_of[i] == pytest.approx(1e-4) for i in backbone)
    assert all(lr_of[i] == pytest.approx(1e-3) for i in set(lr_of) - backbone)


def test_fsdp_units_cover_head_and_backbone_blocks():
    from vla_foundry.models.diffusion_policy.model import HeadBlock
    from vla_foundry.models.registry import fsdp_block_types
    from vla_foundry.models.transformer import TransformerBlock
    from vla_foundry.models.vit import ViTBlock

    types = fsdp_block_types(create_model(policy_params(TINY_VLM)))
    assert {HeadBlock, TransformerBlock, ViTBlock} <= set(types)


def test_bad_batches_name_the_field_and_expected_shape():
    model = create_model(policy_params(TINY_VIT))
    batch = robotics_batch()
    with pytest.raises(
        ValueError, match=rf"actions has shape \(3, {WINDOW}, 5\); expected \(3, {WINDOW}, {ACTION_DIM}\)"
    ):
        model(dict(batch, actions=torch.zeros(3, WINDOW, 5)))
    with pytest.raises(ValueError, match=r"proprioception has shape \(3, 2, 7\); expected \(3, 2, 2\)"):
        model(dict(batch, proprioception=torch.zeros(3, 2, 7)))
    missing = {k: v for k, v in batch.items() if k != "images"}
    with pytest.raises(KeyError, match="missing 'images'"):
        model(missing)
    with pytest.raises(ValueError, match=rf"images are 16x16 but the backbone reads {IMG}x{IMG}: set data.image_size"):
        model(dict(batch, images=torch.zeros(3, 2, 3, 16, 16)))


def test_missing_dimensions_say_where_they_come_from():
    with pytest.raises(ConfigError, match="model.action_dim is unset"):
        create_model(policy_params(TINY_VIT, action_dim=None))


def test_clip_image_size_mismatch_is_detected_at_build_time(tiny_clip_dir):
    from vla_foundry.models.diffusion_policy.params import CLIPBackboneParams

    with pytest.raises(ConfigError, match=rf"img_size=64 does not match .* input size {IMG}"):
        create_model(policy_params(CLIPBackboneParams(clip_pretrained=tiny_clip_dir, img_size=64)))


def test_data_tokenizer_must_match_an_hf_backbone(tiny_paligemma_dir):
    from vla_foundry.params.data_params import RoboticsDataParams
    from vla_foundry.params.model_params import VLMHFParams

    params = policy_params(VLMHFParams(hf_pretrained=tiny_paligemma_dir))
    with pytest.raises(ConfigError, match="data.tokenizer='byte' does not match the backbone's processor"):
        params.check_data(RoboticsDataParams(action_fields=["a"], tokenizer="byte"))


def test_native_vocabulary_must_hold_the_tokenizer_ids():
    from vla_foundry.params.data_params import RoboticsDataParams

    small = replace(TINY_VLM, transformer=replace(TINY_VLM.transformer, vocab_size=200))
    with pytest.raises(ConfigError, match=r"vocab_size=200 is smaller than data.tokenizer 'byte''s 261 ids"):
        policy_params(small).check_data(RoboticsDataParams(action_fields=["a"]))


def test_future_window_flows_into_the_chunk_length():
    params = policy_params(TINY_VIT, past_lowdim_steps=0, future_lowdim_steps=FUTURE + 3)
    assert params.num_action_steps == FUTURE + 4


def test_bf16_weights_train_and_sample_with_an_fp32_chunk():
    params = policy_params(TINY_VLM)
    model = create_model(params).to(torch.bfloat16)
    batch = robotics_batch()
    loss = get_batch_handler(params).compute_loss(model, batch).loss
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    chunk = model.generate_actions(batch, generator=torch.Generator().manual_seed(0))
    assert chunk.dtype == torch.float32 and chunk.shape == (3, WINDOW, ACTION_DIM)


def test_uint8_images_from_the_loader_give_the_same_loss_and_chunk_as_their_float_values():
    model = create_model(policy_params(TINY_VIT))
    torch.nn.init.normal_(model.head.action_out.weight, std=0.1)
    batch = robotics_batch()
    pixels = torch.randint(0, 256, batch["images"].shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    as_uint8 = dict(batch, images=pixels)
    as_float = dict(batch, images=pixels.float() / 255)
    assert torch.equal(
        model(as_uint8, generator=torch.Generator().manual_seed(0))["loss"],
        model(as_float, generator=torch.Generator().manual_seed(0))["loss"],
    )
    model.eval()
    assert torch.equal(
        model.generate_actions(as_uint8, generator=torch.Generator().manual_seed(0)),
        model.generate_actions(as_float, generator=torch.Generator().manual_seed(0)),
    )


def test_batch_handler_turns_uint8_images_into_unit_floats_on_the_device():
    handler = get_batch_handler(policy_params(TINY_VIT))
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 16, 16).expand(2, 1, 3, 16, 16)
    moved = handler.to_device(dict(robotics_batch(), images=pixels), torch.device("cpu"))
    assert moved["images"].dtype == torch.float32
    assert torch.equal(moved["images"][0, 0, 0].flatten(), torch.arange(256, dtype=torch.float32) / 255)
    floats = torch.rand(2, 1, 3, 16, 16)
    assert torch.equal(handler.to_device(dict(robotics_batch(), images=floats), torch.device("cpu"))["images"], floats)
