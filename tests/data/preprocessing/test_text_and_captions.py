"""Text and image-caption preprocessing: members per modality, tokenization and packing, failures, S3."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from tests.data.preprocessing.conftest import decode_jpeg, read_dataset
from vla_foundry.data.preprocessing.job import JobError
from vla_foundry.data.preprocessing.text_sources import run_caption_preprocessing, run_text_preprocessing
from vla_foundry.data.processors.tokenizers import get_tokenizer
from vla_foundry.data.scripts.make_synthetic_lerobot import make_frame
from vla_foundry.params.preprocessing_params import (
    CaptionPreprocessingParams,
    TextPreprocessingParams,
    parse_preprocessing_params,
)

pytestmark = pytest.mark.usefixtures("ray_cluster")

DOCS = ["the robot picks the cube", "a second document", "x", "fourth one here"]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / "corpus"
    d.mkdir()
    (d / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in DOCS[:2]) + "\n")
    pq.write_table(pa.table({"text": DOCS[2:]}), str(d / "b.parquet"))
    (d / "c.txt").write_text("a whole file is one document")
    (d / "d.jsonl.gz").write_bytes(gzip.compress(json.dumps({"text": "compressed lines too"}).encode()))
    return d


def text_params(*argv: str) -> TextPreprocessingParams:
    return parse_preprocessing_params(TextPreprocessingParams, ["--show_progress", "False", *argv])


def test_untokenized_text_keeps_every_document_as_json(corpus: Path, tmp_path: Path):
    run_text_preprocessing(text_params("--source", f"[{corpus}]", "--output_dir", str(tmp_path / "out")))
    samples = read_dataset(tmp_path / "out" / "shards")
    texts = sorted(json.loads(s["json"])["text"] for s in samples.values())
    assert texts == sorted([*DOCS, "a whole file is one document", "compressed lines too"])


def test_tokenized_text_packs_documents_into_seq_len_plus_one_tokens(corpus: Path, tmp_path: Path):
    params = text_params(
        *("--source", f"[{corpus / 'a.jsonl'}]", "--output_dir", str(tmp_path / "out")),
        *("--tokenizer", "byte", "--seq_len", "7", "--samples_per_shard", "2"),
    )
    outcome = run_text_preprocessing(params)
    samples = read_dataset(tmp_path / "out" / "shards")
    chunks = {k: json.loads(gzip.decompress(s["json.gz"])) for k, s in samples.items()}
    assert {len(c) for c in chunks.values()} == {8}
    tok = get_tokenizer("byte")
    stream = tok.encode(DOCS[0], add_eos=True) + tok.encode(DOCS[1], add_eos=True)
    assert [t for k in sorted(chunks) for t in chunks[k]] == stream[: len(chunks) * 8]
    assert outcome.metadata["counters"]["tail_tokens_dropped"] == len(stream) - len(chunks) * 8
    assert outcome.metadata["kind"] == "text"


def test_short_documents_are_dropped_and_counted(corpus: Path, tmp_path: Path):
    outcome = run_text_preprocessing(
        text_params("--source", f"[{corpus / 'b.parquet'}]", "--output_dir", str(tmp_path / "o"), "--min_chars", "2")
    )
    assert outcome.metadata["samples"] == {"potential": 2, "written": 1, "dropped": {"too_short_or_not_text": 1}}


def test_a_text_file_without_the_text_field_fails_naming_file_and_field(tmp_path: Path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(JobError, match=r"bad.jsonl line 1 has no field 'text'"):
        run_text_preprocessing(
            text_params("--source", f"[{tmp_path / 'bad.jsonl'}]", "--output_dir", str(tmp_path / "o"))
        )


def caption_params(*argv: str) -> CaptionPreprocessingParams:
    return parse_preprocessing_params(CaptionPreprocessingParams, ["--show_progress", "False", *argv])


@pytest.fixture
def captions(tmp_path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    d = tmp_path / "captions"
    (d / "images").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(make_frame(i, 0, 0)).save(d / "images" / f"{i}.png")
    pq.write_table(
        pa.table({"image_path": ["images/0.png", "images/1.png", "images/9.png"], "caption": ["zero", "one", "nine"]}),
        str(d / "table.parquet"),
    )
    (d / "folder").mkdir()
    Image.fromarray(make_frame(2, 1, 1)).save(d / "folder" / "cat.jpg")
    (d / "folder" / "cat.txt").write_text("a cat\n")
    return d


def test_captions_from_a_table_and_a_folder_become_image_caption_samples(captions: Path, tmp_path: Path):
    params = caption_params(
        *("--source", json.dumps([str(captions / "table.parquet"), str(captions / "folder")])),
        *("--output_dir", str(tmp_path / "o"), "--max_failure_fraction", "0.5"),
    )
    outcome = run_caption_preprocessing(params)
    samples = read_dataset(tmp_path / "o" / "shards")
    by_caption = {s["txt"].decode(): s for s in samples.values()}
    assert sorted(by_caption) == ["a cat", "one", "zero"]
    assert "png" in by_caption["one"] and decode_jpeg(by_caption["one"]["png"])[0, 0].tolist() == [60, 4, 50]
    assert "jpg" in by_caption["a cat"]
    assert json.loads(by_caption["zero"]["json"])["width"] == 32
    # The row naming images/9.png is reported, not silently dropped.
    assert [f["kind"] for f in outcome.metadata["failures"]] == ["missing_image"]
    assert "9.png not found" in outcome.metadata["failures"][0]["reason"]


def test_caption_images_are_reencoded_at_the_requested_size(captions: Path, tmp_path: Path):
    params = caption_params(
        *("--source", json.dumps([str(captions / "folder")]), "--output_dir", str(tmp_path / "o")),
        *("--image_size", "[16, 8]"),
    )
    run_caption_preprocessing(params)
    (sample,) = read_dataset(tmp_path / "o" / "shards").values()
    assert decode_jpeg(sample["jpg"]).shape == (16, 8, 3)


def test_captions_from_jsonl_paths_and_parquet_image_bytes(tmp_path: Path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    image = tmp_path / "a.png"
    Image.fromarray(make_frame(1, 0, 0)).save(image)
    (tmp_path / "t.jsonl").write_text(json.dumps({"file": str(image), "text": "from jsonl"}) + "\n")
    buf = io.BytesIO()
    Image.fromarray(make_frame(2, 0, 0)).save(buf, format="PNG")
    pq.write_table(
        pa.table({"file": [{"bytes": buf.getvalue(), "path": None}], "text": ["from bytes"]}),
        str(tmp_path / "t.parquet"),
    )
    params = caption_params(
        *("--source", json.dumps([str(tmp_path / "t.jsonl"), str(tmp_path / "t.parquet")])),
        *("--output_dir", str(tmp_path / "o"), "--image_key", "file", "--caption_key", "text"),
    )
    run_caption_preprocessing(params)
    by_caption = {s["txt"].decode(): s for s in read_dataset(tmp_path / "o" / "shards").values()}
    assert decode_jpeg(by_caption["from jsonl"]["png"])[0, 0].tolist() == [60, 4, 50]
    assert decode_jpeg(by_caption["from bytes"]["png"])[0, 0].tolist() == [100, 4, 50]


def test_text_from_s3_to_s3(s3_bucket: str, tmp_path: Path):
    import os

    import boto3

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket = s3_bucket.removeprefix("s3://")
    client.put_object(Bucket=bucket, Key="in/docs.jsonl", Body="\n".join(json.dumps({"text": t}) for t in DOCS))
    run_text_preprocessing(text_params("--source", f"[{s3_bucket}/in]", "--output_dir", f"{s3_bucket}/out"))
    manifest = client.get_object(Bucket=bucket, Key="out/shards/manifest.jsonl")["Body"].read().decode()
    assert sum(json.loads(line)["num_sequences"] for line in manifest.splitlines()) == len(DOCS)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]]
    assert all(k.startswith("out/shards/") for k in keys)
