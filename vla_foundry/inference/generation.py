"""Text generation with a language-model run and image captioning with a VLM run.

    run = load_run("experiments/my_llm")
    generate_text(run, ["Once upon a time"], max_new_tokens=40, temperature=0.8, top_k=50, seed=0)
    caption_image(load_run("experiments/my_vlm"), [image_uint8_hwc])

The tokenizer and the image normalisation are the ones the run was trained with (read from its config.yaml;
`tokenizer=` overrides). A caption that reaches `max_new_tokens` before its end-of-sequence token ends at its last
whole word, with a warning.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from vla_foundry.data.processors.tokenizers import Tokenizer, get_tokenizer
from vla_foundry.inference.run_loading import LoadedRun
from vla_foundry.params.base_params import ConfigError

LANGUAGE_MODEL_TYPES = ("transformer", "transformer_hf")
VISION_LANGUAGE_MODEL_TYPES = ("vlm", "vlm_hf")


def run_tokenizer(run: LoadedRun, tokenizer: str | None = None) -> Tokenizer:
    """The tokenizer named by the run's data config (`data.tokenizer`), the byte tokenizer when none is named."""
    if tokenizer is None:
        data = run.experiment_config().get("data") or {}
        tokenizer = data.get("tokenizer") or "byte"
    return get_tokenizer(tokenizer)


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[torch.Generator | None]:
    """A generator seeded with `seed` (native models sample from it); the global RNG is seeded too, inside a fork
    that is restored afterwards (transformers models sample from the global RNG)."""
    if seed is None:
        yield None
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield torch.Generator(device).manual_seed(seed)


def _left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids (B, L) and attention mask: prompts end at the same position, so decoding continues all
    rows together."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = True
    return ids, mask


def _decode(tok: Tokenizer, new_tokens: torch.Tensor) -> list[str]:
    out = []
    for row in new_tokens.tolist():
        if tok.eos_token_id in row:
            row = row[: row.index(tok.eos_token_id)]
        out.append(tok.decode(row))
    return out


def _hit_limit(new_tokens: torch.Tensor, eos_token_id: int | None) -> list[bool]:
    """Per row of generated ids (B, T): True when no end-of-sequence token came (the row stopped at the limit)."""
    return [eos_token_id is None or eos_token_id not in row for row in new_tokens.tolist()]


def whole_word_captions(captions: list[str], hit_limit: list[bool], max_new_tokens: int) -> list[str]:
    """Captions that ran into `max_new_tokens` end at their last whole word ("a blue square on a grey backgrou" ->
    "a blue square on a grey"), and one warning says which ones were cut; finished captions are unchanged."""
    out = []
    cut = []
    for i, (text, limited) in enumerate(zip(captions, hit_limit)):
        if limited:
            cut.append(i)
            stripped = text.rstrip()
            # A caption ending in whitespace or punctuation ended a word; else its last word may be partial.
            if stripped == text and stripped and stripped[-1].isalnum() and any(c.isspace() for c in stripped):
                text = stripped[: max(j for j, c in enumerate(stripped) if c.isspace())].rstrip()
            else:
                text = stripped
        out.append(text)
    if cut:
        shown = ", ".join(str(i) for i in cut[:10]) + (f" and {len(cut) - 10} more" if len(cut) > 10 else "")
        print(
            f"warning: caption {shown} reached max_new_tokens={max_new_tokens} before its end: cut at the last "
            "whole word (give a larger max_new_tokens for the whole caption)",
            file=sys.stderr,
            flush=True,
        )
    return out


@torch.no_grad()
def generate_text(
    run: LoadedRun,
    prompts: str | list[str],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    tokenizer: str | None = None,
) -> list[str]:
    """Continue each prompt; greedy at temperature 0. Returns the generated text (prompt excluded) per prompt."""
    if run.model_params.type not in LANGUAGE_MODEL_TYPES:
        raise ConfigError(
            f"generate_text needs a language-model run ({', '.join(LANGUAGE_MODEL_TYPES)}); {run.run_dir} holds a "
            f"{run.model_params.type!r} model"
        )
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    tok = run_tokenizer(run, tokenizer)
    ids, mask = _left_pad([tok.encode(p, add_bos=True) for p in prompts], tok.pad_token_id)
    with seeded(seed, run.device) as generator:
        new = run.model.generate(
            input_ids=ids.to(run.device),
            attention_mask=mask.to(run.device),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            eos_token_id=tok.eos_token_id,
            generator=generator,
        )
    return _decode(tok, new)


def _caption_image_tensor(image: np.ndarray, size: int, mean: tuple, std: tuple) -> torch.Tensor:
    """uint8 (H, W, 3) -> (3, size, size) float, resized / centre-cropped and normalised as the caption pipeline does."""
    from vla_foundry.data.processors.images import normalize_image, resize_shorter_and_center_crop, to_float_tensor

    return normalize_image(to_float_tensor(resize_shorter_and_center_crop(image.astype(np.uint8), size)), mean, std)


@torch.no_grad()
def caption_image(
    run: LoadedRun,
    images: np.ndarray | list[np.ndarray],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    seed: int | None = None,
    tokenizer: str | None = None,
    prompt: str = "",
) -> list[str]:
    """Caption raw images (uint8 (H, W, 3), any size: resized/cropped and normalised as in training).

    A native `vlm` is prompted as it was trained (image placeholders, then BOS). A `vlm_hf` model goes through its
    own processor with `prompt` as the text (e.g. "caption en" for PaliGemma; its chat template when it has one).
    """
    if run.model_params.type not in VISION_LANGUAGE_MODEL_TYPES:
        raise ConfigError(
            f"caption_image needs a vision-language run ({', '.join(VISION_LANGUAGE_MODEL_TYPES)}); {run.run_dir} "
            f"holds a {run.model_params.type!r} model"
        )
    images = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    images = [np.asarray(im) for im in images]
    for im in images:
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"images must be uint8 (H, W, 3); got shape {im.shape}")
    if run.model_params.type == "vlm_hf":
        return _caption_with_hf_processor(run, images, prompt, max_new_tokens, temperature, seed)
    params = run.model_params
    mean, std = training_image_stats(run)
    pixels = torch.stack([_caption_image_tensor(im, params.vit.img_size, mean, std) for im in images])  # (B, 3, H, W)
    tok = run_tokenizer(run, tokenizer)
    # As in training: one image's placeholders, then BOS; the caption follows.
    prompt_ids = [tok.image_token_id] * params.img_num_tokens + [tok.bos_token_id]
    ids = torch.tensor([prompt_ids] * len(images), dtype=torch.long)  # (B, img_num_tokens + 1)
    with seeded(seed, run.device) as generator:
        new = run.model.generate(
            input_ids=ids.to(run.device),
            images=pixels[:, None].to(run.device),  # (B, 1, 3, H, W): one image per prompt
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            eos_token_id=tok.eos_token_id,
            generator=generator,
        )
    return whole_word_captions(_decode(tok, new), _hit_limit(new, tok.eos_token_id), max_new_tokens)


def training_image_stats(run: LoadedRun) -> tuple[tuple, tuple]:
    """The image mean / std a native VLM run was trained with: recorded in its model params, else in the `data` block
    of its config.yaml. A run recording neither is a ConfigError (captions of wrongly normalised images would
    look plausible and be wrong)."""
    params = run.model_params
    if getattr(params, "image_mean", None) is not None and getattr(params, "image_std", None) is not None:
        return tuple(params.image_mean), tuple(params.image_std)
    data: dict[str, Any] = run.experiment_config().get("data") or {}
    if data.get("image_mean") and data.get("image_std"):
        return tuple(data["image_mean"]), tuple(data["image_std"])
    raise ConfigError(
        f"{run.run_dir} records no image mean / std (neither model.image_mean in its config_model.yaml nor "
        "data.image_mean in its config.yaml): the images cannot be normalised as in training"
    )


def _caption_with_hf_processor(
    run: LoadedRun, images: list[np.ndarray], prompt: str, max_new_tokens: int, temperature: float, seed: int | None
) -> list[str]:
    from vla_foundry.models.hf_loading import load_processor

    processor = load_processor(run.model_params.hf_pretrained)
    if getattr(processor, "chat_template", None):
        content = [{"type": "image"}, {"type": "text", "text": prompt}]
        text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    else:
        text = (getattr(processor, "image_token", None) or "<image>") + prompt
    inputs = processor(
        text=[text] * len(images),
        images=[[np.asarray(im, dtype=np.uint8)] for im in images],
        return_tensors="pt",
        padding=True,
    )
    pixels = inputs["pixel_values"]
    pixels = pixels.view(len(images), -1, *pixels.shape[-3:]) if pixels.dim() == 4 else pixels  # (B, n, 3, H, W)
    tok = processor.tokenizer
    with seeded(seed, run.device):
        new = run.model.generate(
            input_ids=inputs["input_ids"].to(run.device),
            images=pixels.to(run.device),
            attention_mask=inputs["attention_mask"].to(run.device),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            eos_token_id=tok.eos_token_id,
        )
    captions = tok.batch_decode(new, skip_special_tokens=True)
    return [t.strip() for t in whole_word_captions(captions, _hit_limit(new, tok.eos_token_id), max_new_tokens)]
