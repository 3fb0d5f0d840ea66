"""The native VLM: pixel shuffle, image tokens at placeholder positions, locality of image influence, errors."""

from __future__ import annotations

import pytest
import torch

from tests.models.conftest import load_model_preset, tiny_vlm_params
from vla_foundry.models import create_model
from vla_foundry.models.vlm import pixel_shuffle

IMG = 63  # tiny_vlm_params' image token id
T_IMG = 4  # image tokens per image in tiny_vlm_params


def caption_ids(batch: int, n_images: int, prefix: int = 1, text: int = 6) -> torch.Tensor:
    """[prefix text][T_IMG placeholders per image][text], random text ids below the image token."""
    ids = torch.randint(0, IMG, (batch, prefix + n_images * T_IMG + text))
    ids[:, prefix : prefix + n_images * T_IMG] = IMG
    return ids


def test_img_num_tokens_is_derived_from_image_patch_and_shuffle_sizes() -> None:
    assert tiny_vlm_params().img_num_tokens == (16 // 4) ** 2 // 2**2
    assert load_model_preset("vlm_1b").img_num_tokens == 49
    assert load_model_preset("vlm_tiny").img_num_tokens == 4


def test_pixel_shuffle_folds_neighbourhoods_in_row_major_order() -> None:
    grid = torch.arange(16).float().view(1, 16, 1)  # token value = its patch index on a 4x4 grid
    out = pixel_shuffle(grid, grid_size=4, factor=2)
    assert out.shape == (1, 4, 4)
    assert out[0].tolist() == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]


def test_forward_logits_shape() -> None:
    model = create_model(tiny_vlm_params())
    ids = caption_ids(2, 1)
    logits = model(input_ids=ids, images=torch.randn(2, 1, 3, 16, 16))
    assert logits.shape == (2, ids.shape[1], 64)
    assert logits.dtype == torch.float32


def test_image_embeddings_land_exactly_at_placeholders() -> None:
    model = create_model(tiny_vlm_params()).eval()
    ids = caption_ids(2, 2, prefix=3)
    images = torch.randn(2, 2, 3, 16, 16)
    merged = model.merge_embeddings(ids, images)
    image_embeds = model.image_embeddings(images)  # (2, 8, D)
    is_image = ids == IMG
    torch.testing.assert_close(merged[is_image], image_embeds.reshape(-1, image_embeds.shape[-1]))
    text_embeds = model.language_model.embed(ids)
    torch.testing.assert_close(merged[~is_image], text_embeds[~is_image])
    # The second image's embeddings follow the first's, in placeholder order.
    torch.testing.assert_close(merged[0, 3 + T_IMG : 3 + 2 * T_IMG], image_embeds[0, T_IMG:])


def test_changing_an_image_changes_only_logits_after_its_placeholders() -> None:
    model = create_model(tiny_vlm_params()).eval()
    ids = caption_ids(1, 2, prefix=2)
    images = torch.randn(1, 2, 3, 16, 16)
    changed = images.clone()
    changed[:, 1] = torch.randn(3, 16, 16)  # the second image
    a, b = model(input_ids=ids, images=images), model(input_ids=ids, images=changed)
    first_of_second = 2 + T_IMG
    torch.testing.assert_close(a[:, :first_of_second], b[:, :first_of_second])
    assert not torch.allclose(a[:, first_of_second:], b[:, first_of_second:])


def test_placeholder_count_mismatch_names_both_counts() -> None:
    model = create_model(tiny_vlm_params())
    ids = caption_ids(2, 1)
    ids[1, 1] = 5  # sample 1 now has 3 placeholders for 1 image of 4 tokens
    with pytest.raises(ValueError, match=r"sample 1 .* 3 <image> placeholder tokens .* 1 images x img_num_tokens 4"):
        model(input_ids=ids, images=torch.randn(2, 1, 3, 16, 16))


def test_placeholders_without_images_are_an_error() -> None:
    model = create_model(tiny_vlm_params())
    with pytest.raises(ValueError, match="4 <image> placeholder tokens .* 0 images"):
        model(input_ids=caption_ids(1, 1))


def test_text_only_batch_needs_no_images() -> None:
    model = create_model(tiny_vlm_params()).eval()
    ids = torch.randint(0, IMG, (2, 7))
    torch.testing.assert_close(model(input_ids=ids), model.language_model(input_ids=ids))


def test_single_image_per_sample_may_be_given_as_4d() -> None:
    model = create_model(tiny_vlm_params()).eval()
    ids, images = caption_ids(2, 1), torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model(input_ids=ids, images=images), model(input_ids=ids, images=images[:, None]))


def test_hidden_states_for_the_vla_backbone() -> None:
    model = create_model(tiny_vlm_params()).eval()
    ids = caption_ids(2, 1)
    states = model.hidden_states(ids, torch.randn(2, 1, 3, 16, 16), num_layers=2)
    assert [s.shape for s in states] == [(2, ids.shape[1], 32)] * 2


def test_generate_captions_from_images() -> None:
    model = create_model(tiny_vlm_params()).eval()
    out = model.generate(caption_ids(2, 1, text=0), torch.randn(2, 1, 3, 16, 16), max_new_tokens=5)
    assert out.shape == (2, 5)


def test_freeze_flags_stop_gradients_of_their_parts() -> None:
    model = create_model(tiny_vlm_params(freeze_vit=True))
    assert not any(p.requires_grad for p in model.vision.parameters())
    assert all(p.requires_grad for p in model.language_model.parameters())
    assert all(p.requires_grad for p in model.projector.parameters())
    model = create_model(tiny_vlm_params(freeze_transformer=True))
    assert not any(p.requires_grad for p in model.language_model.parameters())
    assert all(p.requires_grad for p in model.vision.parameters())


def test_model_freeze_freezes_everything() -> None:
    model = create_model(tiny_vlm_params(freeze=True))
    assert not any(p.requires_grad for p in model.parameters())


def test_shuffle_factor_must_divide_patch_grid() -> None:
    from vla_foundry.params import ConfigError

    with pytest.raises(ConfigError, match="pixel_shuffle_factor=3"):
        create_model(tiny_vlm_params(pixel_shuffle_factor=3))
