"""Text and image-caption sources as read tasks: one task per input file (or per folder of images).

Text: .jsonl / .jsonl.gz (a `text_key` field per line), .parquet (a `text_key` column), .txt (one document per
file) -> `KEY.json` `{"text": ...}` (text_untokenized) or `KEY.json.gz` token-id lists (text).
Captions: .parquet / .jsonl tables (image path or bytes + caption) or folders of images with same-named .txt
captions -> `KEY.jpg|png|webp`, `KEY.txt`, `KEY.json`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterator
from typing import Any

from vla_foundry import storage
from vla_foundry.data.preprocessing.encoding import decode_image, encode_jpeg, encode_json
from vla_foundry.data.preprocessing.job import JobOutcome, JobPaths, TaskResult, TaskSpool, run_job
from vla_foundry.data.processors.images import resize_image
from vla_foundry.params.base_params import ConfigError
from vla_foundry.params.preprocessing_params import CaptionPreprocessingParams, TextPreprocessingParams

TEXT_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet", ".txt")
TABLE_SUFFIXES = (".jsonl", ".parquet")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def list_inputs(sources: list[str], suffixes: tuple[str, ...], what: str) -> list[str]:
    """Files with one of `suffixes`, from files and directories (local or s3), sorted per source."""
    out: list[str] = []
    for source in sources:
        if source.endswith(suffixes) and storage.exists(source) and not _is_dir(source):
            out.append(source)
            continue
        found = [f for f in storage.list_files(source) if f.endswith(suffixes)]
        if not found:
            raise ConfigError(f"{what} source {source} holds no {', '.join(suffixes)} files")
        out.extend(found)
    return out


def _is_dir(path: str) -> bool:
    return not storage.is_s3(path) and os.path.isdir(path)


def task_id_of(index: int, path: str) -> str:
    digest = hashlib.sha1(path.encode()).hexdigest()[:8]
    return f"f{index:06d}_{digest}"


# ---------------------------------------------------------------------------------------------------------------
# Text


def iter_documents(path: str, text_key: str) -> Iterator[str]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(storage.read_bytes(path)), columns=None)
        if text_key not in table.column_names:
            raise ValueError(f"{path} has no column {text_key!r}; columns: {table.column_names}")
        yield from (x for x in table.column(text_key).to_pylist())
        return
    if path.endswith(".txt"):
        yield storage.read_text(path)
        return
    data = storage.read_bytes(path)
    if path.endswith(".gz"):
        data = gzip.decompress(data)
    for n, line in enumerate(data.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        if text_key not in record:
            raise ValueError(f"{path} line {n} has no field {text_key!r}; fields: {sorted(record)}")
        yield record[text_key]


def gzip_bytes(data: bytes) -> bytes:
    # mtime=0 keeps the bytes reproducible.
    return gzip.compress(data, mtime=0)


def read_text_task(params: TextPreprocessingParams, task_id: str, path: str, output_dir: str) -> dict:
    """One input file -> samples in the task's spool (runs on a Ray worker)."""
    from vla_foundry.data.processors.tokenizers import get_tokenizer

    spool = TaskSpool(JobPaths(output_dir.rstrip("/")), task_id)
    result = TaskResult(task_id=task_id, inputs=1, samples=0, potential=0)
    tokenizer = get_tokenizer(params.tokenizer) if params.tokenizer is not None else None
    stem = task_id
    try:
        try:
            documents = list(iter_documents(path, params.text_key))
        except Exception as e:
            result.failures.append({"id": path, "reason": str(e), "kind": "read_error", "potential": 0})
            spool.commit(result)
            return result.to_json()
        result.potential = len(documents)
        buffer: list[int] = []
        n = 0
        for doc in documents:
            if not isinstance(doc, str) or len(doc) < params.min_chars:
                result.dropped["too_short_or_not_text"] = result.dropped.get("too_short_or_not_text", 0) + 1
                continue
            if tokenizer is None:
                spool.writer.add(f"{stem}_{n:08d}", {"json": encode_json({"text": doc})})
                n += 1
                continue
            ids = tokenizer.encode(doc, add_eos=True)
            if params.seq_len is None:
                spool.writer.add(f"{stem}_{n:08d}", {"json.gz": gzip_bytes(json.dumps(ids).encode())})
                n += 1
                continue
            buffer.extend(ids)
            while len(buffer) >= params.seq_len + 1:
                chunk, buffer = buffer[: params.seq_len + 1], buffer[params.seq_len + 1 :]
                spool.writer.add(f"{stem}_{n:08d}", {"json.gz": gzip_bytes(json.dumps(chunk).encode())})
                n += 1
        if buffer:
            # The tail shorter than seq_len + 1 tokens is counted, not padded into a sample.
            result.counters["tail_tokens_dropped"] = len(buffer)
        result.samples = n
        spool.commit(result)
    except BaseException:
        spool.discard()
        raise
    return result.to_json()


def run_text_preprocessing(params: TextPreprocessingParams) -> JobOutcome:
    params.validate()
    files = list_inputs(params.source, TEXT_SUFFIXES, "text")
    ids = [task_id_of(i, f) for i, f in enumerate(files)]
    return run_job(
        "text" if params.tokenizer else "text_untokenized",
        params,
        ids,
        [(params, t, f) for t, f in zip(ids, files)],
        read_text_task,
        [1] * len(files),
        lambda paths, results: {"modality": "text" if params.tokenizer else "text_untokenized"},
        list(params.source),
    )


# ---------------------------------------------------------------------------------------------------------------
# Image captions


def caption_records(path: str, params: CaptionPreprocessingParams) -> Iterator[tuple[str, Any, str]]:
    """(record id, image path or bytes, caption) of a table or a folder."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(io.BytesIO(storage.read_bytes(path)))
        missing = [k for k in (params.image_key, params.caption_key) if k not in table.column_names]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}; columns: {table.column_names}")
        rows = zip(table.column(params.image_key).to_pylist(), table.column(params.caption_key).to_pylist())
        for n, (image, caption) in enumerate(rows):
            yield f"{path}:{n}", _resolve(path, image), caption
    elif path.endswith(".jsonl"):
        for n, line in enumerate(storage.read_text(path).splitlines()):
            if line.strip():
                record = json.loads(line)
                yield f"{path}:{n + 1}", _resolve(path, record.get(params.image_key)), record.get(params.caption_key)
    else:  # a folder: image files with a same-named .txt caption
        files = storage.list_files(path)
        captions = {f.rsplit(".", 1)[0]: f for f in files if f.endswith(".txt")}
        for f in files:
            if f.lower().endswith(IMAGE_SUFFIXES):
                caption_path = captions.get(f.rsplit(".", 1)[0])
                caption = storage.read_text(caption_path).strip() if caption_path else None
                yield f, f, caption


def _resolve(table_path: str, image: Any) -> Any:
    if isinstance(image, dict) and "bytes" in image:  # HF-style {"bytes", "path"} image cells
        return image["bytes"]
    if isinstance(image, str) and not storage.is_s3(image) and not os.path.isabs(image):
        return storage.join(storage.dirname(table_path), image)
    return image


def read_caption_task(params: CaptionPreprocessingParams, task_id: str, path: str, output_dir: str) -> dict:
    """One table or folder -> image_caption samples in the task's spool (runs on a Ray worker)."""
    spool = TaskSpool(JobPaths(output_dir.rstrip("/")), task_id)
    result = TaskResult(task_id=task_id, inputs=0, samples=0, potential=0)
    try:
        try:
            records = list(caption_records(path, params))
        except Exception as e:
            result.inputs = 1
            result.failures.append({"id": path, "reason": str(e), "kind": "read_error", "potential": 0})
            spool.commit(result)
            return result.to_json()
        result.inputs = result.potential = len(records)
        for n, (record_id, image, caption) in enumerate(records):
            try:
                members = _caption_members(record_id, image, caption, params)
            except Exception as e:
                kind = "missing_image" if isinstance(e, FileNotFoundError) else "bad_record"
                result.failures.append({"id": record_id, "reason": str(e), "kind": kind, "potential": 1})
                result.dropped[kind] = result.dropped.get(kind, 0) + 1
                continue
            spool.writer.add(f"{task_id}_{n:08d}", members)
            result.samples += 1
        spool.commit(result)
    except BaseException:
        spool.discard()
        raise
    return result.to_json()


def _caption_members(record_id: str, image: Any, caption: Any, params: CaptionPreprocessingParams) -> dict[str, bytes]:
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"{record_id}: caption missing or empty")
    if isinstance(image, bytes):
        data, name = image, "image"
    elif isinstance(image, str):
        if not storage.exists(image):
            raise FileNotFoundError(f"{record_id}: image {image} not found")
        data, name = storage.read_bytes(image), image
    else:
        raise ValueError(f"{record_id}: no image (got {type(image).__name__})")
    pixels = decode_image(data)  # also proves the image decodes
    if params.image_size is not None:
        data, ext = encode_jpeg(resize_image(pixels, params.image_size, "center_crop"), params.jpeg_quality), "jpg"
    else:
        ext = _image_ext(data)
    meta = {"source": record_id, "width": int(pixels.shape[1]), "height": int(pixels.shape[0])}
    if isinstance(image, str):
        meta["image_path"] = name
    return {ext: data, "txt": caption.strip().encode("utf-8"), "json": encode_json(meta)}


def _image_ext(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    # Other formats are re-encoded so the loader meets one of the three it reads.
    raise ValueError("image is not JPEG, PNG or WebP; pass --image_size to re-encode it as JPEG")


def run_caption_preprocessing(params: CaptionPreprocessingParams) -> JobOutcome:
    params.validate()
    inputs: list[str] = []
    for source in params.source:
        if source.endswith(TABLE_SUFFIXES):
            inputs.append(source)
        elif storage.exists(source):
            tables = [f for f in storage.list_files(source) if f.endswith(TABLE_SUFFIXES)]
            inputs.extend(tables or [source])  # a folder of tables, else a folder of images + captions
        else:
            raise ConfigError(f"caption source {source} not found")
    ids = [task_id_of(i, f) for i, f in enumerate(inputs)]
    return run_job(
        "image_caption",
        params,
        ids,
        [(params, t, f) for t, f in zip(ids, inputs)],
        read_caption_task,
        [1] * len(inputs),
        lambda paths, results: {"modality": "image_caption"},
        list(params.source),
    )
