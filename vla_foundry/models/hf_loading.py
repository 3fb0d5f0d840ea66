"""Loading `transformers` / `timm` models and processors by hub name or local directory, failing fast when
unreachable; and the FSDP units of `transformers` models.

A name that is not a local directory is looked up in the local hub cache first; the hub is contacted only when
`HF_HUB_OFFLINE` is not set, and any failure becomes one `OSError` saying what was tried (no retry loop).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def looks_like_path(name: str) -> bool:
    """Hub names are `name` or `org/name`; anything else (absolute, relative, deeper) is meant as a local path."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1


def load_from_hf(name_or_path: str, what: str, load: Callable[..., T]) -> T:
    """Call `load(name_or_path, local_files_only=...)`: a local directory as is; a hub name from the cache, then
    (unless offline) from the hub once. Raises one `OSError` naming `what` and the name when nothing works."""
    if os.path.isdir(name_or_path):
        try:
            return load(name_or_path, local_files_only=True)
        except Exception as e:
            raise OSError(f"could not load {what} from local directory {name_or_path!r}: {_short(e)}") from None
    if looks_like_path(name_or_path):
        raise OSError(f"{what}: local directory {name_or_path!r} does not exist")
    try:
        return load(name_or_path, local_files_only=True)
    except Exception as cached_error:
        if hub_offline():
            raise OSError(
                f"{what} {name_or_path!r} is not a local directory and is not in the local Hugging Face cache, "
                "and the hub is offline (HF_HUB_OFFLINE is set): give a local path holding the model, or "
                f"unset HF_HUB_OFFLINE with network access ({_short(cached_error)})"
            ) from None
    try:
        return load(name_or_path, local_files_only=False)
    except Exception as e:
        raise OSError(
            f"{what} {name_or_path!r} is not a local directory, not in the local Hugging Face cache, and could not "
            f"be fetched from the hub: {_short(e)}. Give a local path, or check the name and network access."
        ) from None


def load_hf_model(auto_class: Any, name_or_path: str, what: str, load_pretrained: bool, **options: Any) -> Any:
    """A transformers model through `auto_class` (`AutoModel`, `AutoModelForCausalLM`, ...): its pretrained
    weights in fp32, or with `load_pretrained=False` its architecture from its config with fresh weights.
    `options` (trust_remote_code, attn_implementation, ...) go to both."""
    import torch
    from transformers import AutoConfig

    if load_pretrained:
        return load_from_hf(
            name_or_path,
            what,
            lambda n, local_files_only: auto_class.from_pretrained(
                n, local_files_only=local_files_only, dtype=torch.float32, **options
            ),
        )
    trust_remote_code = options.get("trust_remote_code", False)
    config = load_from_hf(
        name_or_path,
        f"{what} config",
        lambda n, local_files_only: AutoConfig.from_pretrained(
            n, local_files_only=local_files_only, trust_remote_code=trust_remote_code
        ),
    )
    return auto_class.from_config(config, dtype=torch.float32, **options)


def load_processor(name_or_path: str) -> Any:
    """A transformers processor (tokenizer + image processor of a VLM), by hub name or local directory."""
    from transformers import AutoProcessor

    return load_from_hf(
        name_or_path,
        "VLM processor",
        lambda n, local_files_only: AutoProcessor.from_pretrained(n, local_files_only=local_files_only),
    )


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{error.__class__.__name__}: {text[0] if text else ''}"[:300]


def block_types_by_name(model: Any, names: list[str] | set[str] | None) -> tuple[type, ...]:
    """Classes of `model`'s sub-modules whose class name is in `names` (e.g. a transformers `_no_split_modules`):
    the units FSDP wraps one by one."""
    wanted = set(names or ())
    found = {type(m) for m in model.modules() if type(m).__name__ in wanted}
    return tuple(sorted(found, key=lambda t: t.__name__))


def no_split_block_types(model: Any) -> tuple[type, ...]:
    """The classes a transformers model lists in `_no_split_modules` (its decoder / encoder layers): its FSDP units."""
    return block_types_by_name(model, getattr(model, "_no_split_modules", None))
