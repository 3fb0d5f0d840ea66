"""Text pipelines: pre-tokenized (`text`) and tokenized on the fly (`text_untokenized`).

Batch: input_ids LongTensor (B, seq_len + 1), loss_mask BoolTensor (B, seq_len + 1), True where the token is real
(a valid target); pad positions are False.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
import torch

from vla_foundry.data.pipelines import register_pipeline
from vla_foundry.data.processors.tokenizers import get_tokenizer
from vla_foundry.data.robotics.processor import SampleError


def _row(ids: list[int], length: int, pad_id: int) -> dict[str, torch.Tensor]:
    input_ids = torch.full((length,), pad_id, dtype=torch.long)
    mask = torch.zeros(length, dtype=torch.bool)
    n = min(len(ids), length)
    input_ids[:n] = torch.tensor(ids[:n], dtype=torch.long)
    mask[:n] = True
    return {"input_ids": input_ids, "loss_mask": mask}


def collate_rows(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


class TextPipeline:
    """`KEY.json.gz` / `KEY.json`: a JSON list of token ids; randomly cropped (or padded) to seq_len + 1."""

    def __init__(self, data_params: Any) -> None:
        self.length = data_params.seq_len + 1
        self.pad_id = data_params.pad_token_id

    def process(self, raw: dict[str, Any], dataset_index: int, rng: np.random.Generator) -> list[dict]:
        if "json.gz" in raw:
            try:
                payload = gzip.decompress(raw["json.gz"])
            except (OSError, EOFError) as e:
                raise SampleError(f"json.gz is not valid gzip: {e}") from None
        elif "json" in raw:
            payload = raw["json"]
        else:
            raise SampleError(f"no json.gz / json member (has {sorted(k for k in raw if not k.startswith('__'))})")
        try:
            ids = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SampleError(f"token list is not valid JSON: {e}") from None
        if isinstance(ids, dict):
            ids = ids.get("tokens", ids.get("input_ids"))
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise SampleError("expected a JSON list of integer token ids")
        if len(ids) > self.length:
            start = int(rng.integers(0, len(ids) - self.length + 1))
            ids = ids[start : start + self.length]
        return [_row(ids, self.length, self.pad_id)]

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return collate_rows(items)


class UntokenizedTextPipeline:
    """`KEY.json` `{"text": ...}` (or a bare JSON string, or `KEY.txt`) tokenized with the configured tokenizer.

    pack=True concatenates documents (each ended by EOS) into full rows of seq_len + 1 (no padding; a document may
    span rows, the remainder at the end of a checkpoint interval is dropped); pack=False truncates or pads each document.
    """

    def __init__(self, data_params: Any) -> None:
        self.length = data_params.seq_len + 1
        self.tokenizer = get_tokenizer(data_params.tokenizer)
        self.pack = data_params.pack
        self._buffer: list[int] = []

    def _text(self, raw: dict[str, Any]) -> str:
        if "json" in raw:
            try:
                value = json.loads(raw["json"])
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise SampleError(f"json is not valid JSON: {e}") from None
            text = value.get("text") if isinstance(value, dict) else value
        elif "txt" in raw:
            try:
                text = raw["txt"].decode("utf-8")
            except UnicodeDecodeError as e:
                raise SampleError(f"txt is not UTF-8: {e}") from None
        else:
            raise SampleError(f"no json / txt member (has {sorted(k for k in raw if not k.startswith('__'))})")
        if not isinstance(text, str):
            raise SampleError('expected {"text": "..."} or a JSON string')
        return text

    def process(self, raw: dict[str, Any], dataset_index: int, rng: np.random.Generator) -> list[dict]:
        ids = self.tokenizer.encode(self._text(raw), add_eos=True)
        if not self.pack:
            return [_row(ids, self.length, self.tokenizer.pad_token_id)]
        self._buffer.extend(ids)
        rows = []
        while len(self._buffer) >= self.length:
            rows.append(_row(self._buffer[: self.length], self.length, self.tokenizer.pad_token_id))
            del self._buffer[: self.length]
        return rows

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        return collate_rows(items)


@register_pipeline("text")
def build_text_pipeline(data_params: Any, plan: Any, training: bool, model_params: Any, batch_size: Any) -> Any:
    return TextPipeline(data_params)


@register_pipeline("text_untokenized")
def build_untokenized_text_pipeline(
    data_params: Any, plan: Any, training: bool, model_params: Any, batch_size: Any
) -> Any:
    return UntokenizedTextPipeline(data_params)
