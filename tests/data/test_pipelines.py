"""Per-modality pipelines: text crop/pad, untokenized pack/pad, image-caption placeholders and pixels, images."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from vla_foundry.data.dataloader import build_dataloader
from vla_foundry.data.pipelines.image_caption import ImageCaptionPipeline
from vla_foundry.data.pipelines.text import TextPipeline, UntokenizedTextPipeline
from vla_foundry.data.planner import plan_checkpoint
from vla_foundry.data.processors.images import decode_image, shift_hue
from vla_foundry.data.processors.tokenizers import ByteTokenizer
from vla_foundry.data.robotics.processor import SampleError
from vla_foundry.data.scripts.make_tiny_datasets import encode_jpeg
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.data_params import ImageCaptionDataParams, TextDataParams, TextUntokenizedDataParams

TOK = ByteTokenizer()


def test_text_longer_than_the_window_is_a_random_contiguous_crop():
    pipe = TextPipeline(TextDataParams(seq_len=4))
    ids = list(range(100))
    row = pipe.process({"json.gz": gzip.compress(json.dumps(ids).encode())}, 0, np.random.default_rng(3))[0]
    start = int(row["input_ids"][0])
    assert row["input_ids"].tolist() == list(range(start, start + 5)) and bool(row["loss_mask"].all())
    other = pipe.process({"json": json.dumps(ids).encode()}, 0, np.random.default_rng(4))[0]
    assert other["input_ids"][0] != start


def test_short_text_is_padded_and_masked():
    pipe = TextPipeline(TextDataParams(seq_len=5, pad_token_id=0))
    row = pipe.process({"json": b"[7, 8, 9]"}, 0, np.random.default_rng(0))[0]
    assert row["input_ids"].tolist() == [7, 8, 9, 0, 0, 0]
    assert row["loss_mask"].tolist() == [True, True, True, False, False, False]


def test_text_that_is_not_a_token_list_is_a_sample_error():
    with pytest.raises(SampleError, match="list of integer token ids"):
        TextPipeline(TextDataParams(seq_len=4)).process({"json": b'["a"]'}, 0, np.random.default_rng(0))


def test_packing_concatenates_documents_with_eos_into_full_rows():
    pipe = UntokenizedTextPipeline(TextUntokenizedDataParams(seq_len=5, pack=True))
    rng = np.random.default_rng(0)
    assert pipe.process({"json": json.dumps({"text": "abcd"}).encode()}, 0, rng) == []
    rows = pipe.process({"json": json.dumps("efghijk").encode()}, 0, rng)
    assert len(rows) == 2
    assert rows[0]["input_ids"].tolist() == [*b"abcd", TOK.eos_token_id, ord("e")]
    assert rows[1]["input_ids"].tolist() == [*b"fghijk"]
    assert all(bool(r["loss_mask"].all()) for r in rows)


def test_unpacked_documents_are_padded_with_the_pad_id():
    pipe = UntokenizedTextPipeline(TextUntokenizedDataParams(seq_len=5, pack=False))
    row = pipe.process({"json": b'{"text": "hi"}'}, 0, np.random.default_rng(0))[0]
    assert row["input_ids"].tolist() == [
        ord("h"),
        ord("i"),
        TOK.eos_token_id,
        TOK.pad_token_id,
        TOK.pad_token_id,
        TOK.pad_token_id,
    ]
    assert row["loss_mask"].tolist() == [True, True, True, False, False, False]


def caption_params(**kw) -> ImageCaptionDataParams:
    return ImageCaptionDataParams(seq_len=kw.pop("seq_len", 24), image_size=16, img_num_tokens=3, **kw)


def test_caption_follows_image_placeholders_that_are_not_targets():
    pipe = ImageCaptionPipeline(caption_params())
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    item = pipe.process({"jpg": encode_jpeg(image), "txt": b"a cat"}, 0, np.random.default_rng(0))[0]
    ids = item["input_ids"].tolist()
    assert ids[:3] == [TOK.image_token_id] * 3
    assert ids[3:10] == [TOK.bos_token_id, *b"a cat", TOK.eos_token_id]
    assert ids[10:] == [TOK.pad_token_id] * 15
    assert item["loss_mask"].tolist() == [False] * 3 + [True] * 7 + [False] * 15
    assert item["images"].shape == (1, 3, 16, 16)


def test_caption_image_is_resized_cropped_and_normalised():
    pipe = ImageCaptionPipeline(caption_params(image_mean=(0.5, 0.5, 0.5), image_std=(0.25, 0.25, 0.25)))
    image = np.full((32, 48, 3), 255, dtype=np.uint8)
    image[:, :, 2] = 0
    item = pipe.process({"png": _png(image), "txt": b"x"}, 0, np.random.default_rng(0))[0]
    pixels = item["images"][0]  # (3, 16, 16)
    assert torch.allclose(pixels[0], torch.full((16, 16), 2.0)) and torch.allclose(
        pixels[2], torch.full((16, 16), -2.0)
    )


def _png(image: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_image_caption_needs_the_shared_image_size():
    with pytest.raises(ConfigError, match="needs data.image_size and data.img_num_tokens"):
        ImageCaptionPipeline(ImageCaptionDataParams(seq_len=8))


def test_undecodable_caption_image_is_a_sample_error():
    with pytest.raises(SampleError, match="jpg: undecodable image"):
        ImageCaptionPipeline(caption_params()).process({"jpg": b"nope", "txt": b"x"}, 0, np.random.default_rng(0))


def test_image_caption_loader_batches(tiny_data):
    params = ImageCaptionDataParams(
        dataset_manifest=[tiny_data["image_caption"]], dataset_weighting=[1.0], dataset_modality=["image_caption"],
        seq_len=48, image_size=32, img_num_tokens=4, num_workers=0, seed=0,
    )  # fmt: skip
    batch = next(iter(build_dataloader(params, plan_checkpoint(params, 0, 8), batch_size=4)))
    assert set(batch) == {"input_ids", "loss_mask", "images", "sample_keys"}
    assert batch["images"].shape == (4, 1, 3, 32, 32) and batch["input_ids"].shape == (4, 49)
    text = TOK.decode(batch["input_ids"][0].tolist())
    assert text.startswith("a ") and text.endswith("on a grey background")


def test_untokenized_loader_packs_full_rows(tiny_data):
    params = TextUntokenizedDataParams(
        dataset_manifest=[tiny_data["text_untokenized"]], dataset_weighting=[1.0],
        dataset_modality=["text_untokenized"], seq_len=32, num_workers=0, seed=0,
    )  # fmt: skip
    batches = list(build_dataloader(params, plan_checkpoint(params, 0, 16), batch_size=4))
    assert len(batches) == 4
    ids = torch.cat([b["input_ids"] for b in batches])
    assert ids.shape == (16, 33) and TOK.pad_token_id not in ids.tolist()[0]
    assert (ids == TOK.eos_token_id).any()


def test_hue_shift_of_a_third_turns_red_into_green():
    red = torch.zeros(3, 2, 2)
    red[0] = 1.0
    green = shift_hue(red, 1 / 3)
    assert torch.allclose(green[1], torch.ones(2, 2), atol=1e-6) and float(green[0].abs().max()) < 1e-6
    assert torch.allclose(shift_hue(red, 1.0), red, atol=1e-6)


def test_decoded_images_are_writable_uint8_rgb():
    image = decode_image(encode_jpeg(np.zeros((5, 7, 3), dtype=np.uint8)))
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8 and image.flags.writeable


@pytest.fixture(scope="module")
def tiny_hf_processor(tmp_path_factory) -> str:
    """A PaliGemma-class processor (byte-fallback tokenizer, 32 px SigLIP image processor) in a local directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PaliGemmaProcessor, PreTrainedTokenizerFast, SiglipImageProcessor

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<image>": 4}
    vocab.update({f"<0x{i:02X}>": 5 + i for i in range(256)})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>", byte_fallback=True))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.ByteFallback()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip
    processor = PaliGemmaProcessor(
        image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}, image_seq_length=16), tokenizer=tokenizer
    )
    path = tmp_path_factory.mktemp("hf_processor")
    processor.save_pretrained(path)
    return str(path)


def test_hf_processor_writes_the_model_placeholders_and_pixels(tiny_data, tiny_hf_processor):
    params = ImageCaptionDataParams(
        dataset_manifest=[tiny_data["image_caption"]], dataset_weighting=[1.0], dataset_modality=["image_caption"],
        seq_len=127, processor=tiny_hf_processor, num_workers=0, seed=0,
    )  # fmt: skip
    batch = next(iter(build_dataloader(params, plan_checkpoint(params, 0, 4), batch_size=4)))
    assert batch["images"].shape == (4, 1, 3, 32, 32) and batch["input_ids"].shape == (4, 128)
    ids, mask = batch["input_ids"][0].tolist(), batch["loss_mask"][0].tolist()
    assert ids[:16] == [4] * 16 and ids[16] == 2  # 16 image placeholders, then BOS
    assert mask[:16] == [False] * 16 and mask[16] is True  # as in the built-in pipeline, BOS onwards are targets
    last = max(i for i, m in enumerate(mask) if m)
    assert ids[last] == 1 and all(t == 0 for t in ids[last + 1 :])  # EOS ends the caption, then padding


def test_hf_processor_needs_room_for_its_placeholders(tiny_data, tiny_hf_processor):
    params = ImageCaptionDataParams(
        dataset_manifest=[tiny_data["image_caption"]], dataset_weighting=[1.0], dataset_modality=["image_caption"],
        seq_len=8, processor=tiny_hf_processor, num_workers=0, seed=0, max_bad_sample_fraction=1.0,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="cannot hold the 16 image placeholder tokens"):
        list(build_dataloader(params, plan_checkpoint(params, 0, 4), batch_size=4))
