"""Tokenizers: a built-in byte-level tokenizer that needs no files, and transformers tokenizers by name or path.

Both expose the same small interface (`Tokenizer`), including the ids of the special tokens the models use:
`<pad>`, `<bos>`, `<eos>`, `<image>` (an image placeholder) and `<action>` (the VLA query token).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<image>", "<action>")
BYTE_TOKENIZER_NAME = "byte"


class Tokenizer(ABC):
    """Common interface: `encode`, `decode`, `vocab_size` and the special-token ids."""

    vocab_size: int
    pad_token_id: int
    bos_token_id: int
    eos_token_id: int
    image_token_id: int
    action_token_id: int

    @abstractmethod
    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str: ...


class ByteTokenizer(Tokenizer):
    """UTF-8 bytes are ids 0-255; the special tokens follow (256 `<pad>` ... 260 `<action>`); vocab size 261."""

    def __init__(self) -> None:
        self.special_ids = {tok: 256 + i for i, tok in enumerate(SPECIAL_TOKENS)}
        self.vocab_size = 256 + len(SPECIAL_TOKENS)
        self.pad_token_id = self.special_ids["<pad>"]
        self.bos_token_id = self.special_ids["<bos>"]
        self.eos_token_id = self.special_ids["<eos>"]
        self.image_token_id = self.special_ids["<image>"]
        self.action_token_id = self.special_ids["<action>"]

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = list(text.encode("utf-8"))
        return ([self.bos_token_id] if add_bos else []) + ids + ([self.eos_token_id] if add_eos else [])

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        names = {v: k for k, v in self.special_ids.items()}
        out = bytearray()
        text = ""
        for i in ids:
            if i < 256:
                out.append(i)
                continue
            text += out.decode("utf-8", errors="replace")
            out = bytearray()
            if not skip_special_tokens:
                text += names.get(i, "")
        return text + out.decode("utf-8", errors="replace")


class HFTokenizer(Tokenizer):
    """A transformers tokenizer; missing special tokens (`<image>`, `<action>`, pad) are added to it."""

    def __init__(self, name_or_path: str) -> None:
        self.hf = load_hf_tokenizer(name_or_path)
        added = [tok for tok in ("<image>", "<action>") if tok not in self.hf.get_vocab()]
        if added:
            self.hf.add_special_tokens({"additional_special_tokens": added})
        if self.hf.pad_token is None:
            self.hf.add_special_tokens({"pad_token": "<pad>"})
        self.vocab_size = len(self.hf)
        self.pad_token_id = self.hf.pad_token_id
        self.bos_token_id = self.hf.bos_token_id if self.hf.bos_token_id is not None else self.hf.eos_token_id
        self.eos_token_id = self.hf.eos_token_id if self.hf.eos_token_id is not None else self.pad_token_id
        self.image_token_id = self.hf.convert_tokens_to_ids("<image>")
        self.action_token_id = self.hf.convert_tokens_to_ids("<action>")

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        ids = self.hf.encode(text, add_special_tokens=False)
        return ([self.bos_token_id] if add_bos else []) + ids + ([self.eos_token_id] if add_eos else [])

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.hf.decode(ids, skip_special_tokens=skip_special_tokens)


def load_hf_tokenizer(name_or_path: str) -> Any:
    """`AutoTokenizer` from a local directory, or by hub name (cache first; the hub only when not offline), failing
    at once with one message when unreachable (see `vla_foundry.models.hf_loading.load_from_hf`)."""
    from transformers import AutoTokenizer

    from vla_foundry.models.hf_loading import load_from_hf

    return load_from_hf(
        name_or_path,
        "tokenizer",
        lambda n, local_files_only: AutoTokenizer.from_pretrained(n, local_files_only=local_files_only),
    )


def load_hf_processor(name_or_path: str) -> Any:
    """`AutoProcessor` (tokenizer + image processor of a VLM), loaded like `load_hf_tokenizer`."""
    from vla_foundry.models.hf_loading import load_processor

    return load_processor(name_or_path)


def get_tokenizer(name_or_path: str = BYTE_TOKENIZER_NAME) -> Tokenizer:
    """`"byte"` for the built-in tokenizer, otherwise a transformers tokenizer name or local path."""
    if name_or_path == BYTE_TOKENIZER_NAME:
        return ByteTokenizer()
    return HFTokenizer(name_or_path)
