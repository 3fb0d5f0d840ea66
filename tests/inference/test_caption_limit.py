"""A caption that reaches max_new_tokens ends at a whole word and says so; a finished caption is untouched."""

from __future__ import annotations

import torch

from vla_foundry.data.processors.tokenizers import get_tokenizer
from vla_foundry.inference.generation import _decode, _hit_limit, whole_word_captions


def _generated(tok, texts: list[str], eos: list[bool], width: int) -> torch.Tensor:
    """Generated ids (B, width) as a model returns them: each text's tokens, EOS when it finished, padding after."""
    rows = []
    for text, finished in zip(texts, eos):
        ids = tok.encode(text, add_bos=False) + ([tok.eos_token_id] if finished else [])
        rows.append(ids + [tok.pad_token_id] * (width - len(ids)))
    return torch.tensor(rows, dtype=torch.long)


def _captions(tok, new: torch.Tensor, limit: int) -> list[str]:
    return whole_word_captions(_decode(tok, new), _hit_limit(new, tok.eos_token_id), limit)


def test_a_caption_cut_by_the_token_limit_ends_at_its_last_whole_word_with_a_warning(capsys):
    tok = get_tokenizer("byte")
    cut = "a blue square on a grey backgrou"  # exactly the limit: the model never produced its EOS
    new = _generated(tok, [cut], [False], len(tok.encode(cut, add_bos=False)))
    assert _captions(tok, new, new.shape[1]) == ["a blue square on a grey"]
    assert capsys.readouterr().err.strip() == (
        f"warning: caption 0 reached max_new_tokens={new.shape[1]} before its end: cut at the last whole word "
        "(give a larger max_new_tokens for the whole caption)"
    )


def test_a_finished_caption_is_kept_whole_without_a_warning(capsys):
    tok = get_tokenizer("byte")
    texts = ["a red circle", "a blue square on a grey backgrou"]
    new = _generated(tok, texts, [True, False], 40)
    assert _captions(tok, new, 40) == ["a red circle", "a blue square on a grey"]
    assert "caption 1 reached max_new_tokens=40" in capsys.readouterr().err


def test_a_caption_cut_right_after_a_word_keeps_that_word():
    tok = get_tokenizer("byte")
    text = "a blue square, "
    new = _generated(tok, [text], [False], len(tok.encode(text, add_bos=False)))
    assert _captions(tok, new, new.shape[1]) == ["a blue square,"]
