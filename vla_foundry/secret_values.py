"""Secret values (API keys, tokens, cloud credentials) kept out of everything printed or stored.

Secrets reach a job through its environment (for SageMaker, the launcher forwards `FORWARDED_SECRETS` from the
launching shell into the job's environment). Whatever is printed or written -- the launcher's dry run, the resolved
config -- passes through `mask_secrets`, which shows `***` for the value of every secret-named variable and for
any secret value of the environment found inside other text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
# Variables a job may need: forwarded by the SageMaker launcher when set in the launching shell.
FORWARDED_SECRETS = ("WANDB_API_KEY", "HF_TOKEN")
# Cloud credentials: never forwarded (jobs use their IAM role), never printed.
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# A secret-named variable ends in one of these words as an underscore-separated part, in a name of several parts
# (WANDB_API_KEY, github_token) or all in upper case (TOKEN): "Key" (an AWS tag's field name), "tokenizer" and
# "pad_token_id" are not secret.
_SECRET_WORDS = {"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"}
# Short values ("1", "true") are not masked inside other text: they would blank out ordinary words and numbers.
_MIN_MASKED_LENGTH = 6


def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name holds a secret (WANDB_API_KEY, HF_TOKEN, AWS_*_KEY...)."""
    if name in FORWARDED_SECRETS or name in CREDENTIAL_VARIABLES:
        return True
    parts = [p for p in re.split(r"[_\-.]", name) if p]
    return bool(parts) and parts[-1].upper() in _SECRET_WORDS and (len(parts) > 1 or name.isupper())


def secret_values(*environments: Mapping[str, str]) -> list[str]:
    """The values of secret-named variables in `environments` (default: this process's), longest first."""
    envs = environments or (os.environ,)
    values = {v for env in envs for k, v in env.items() if is_secret_name(k) and len(v) >= _MIN_MASKED_LENGTH}
    return sorted(values, key=len, reverse=True)


def mask_secrets(value: Any, extra_values: list[str] | tuple[str, ...] = ()) -> Any:
    """`value` (nested dicts / lists / strings) with secrets replaced by `***`: the value of every secret-named
    key, and any secret value of this process's environment (or `extra_values`) occurring inside a string."""
    known = sorted(
        {*secret_values(), *(v for v in extra_values if len(v) >= _MIN_MASKED_LENGTH)}, key=len, reverse=True
    )

    def walk(x: Any, key: str | None = None) -> Any:
        if key is not None and is_secret_name(key) and isinstance(x, str) and x:
            return MASK
        if isinstance(x, Mapping):
            return {k: walk(v, str(k)) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(walk(v) for v in x)
        if isinstance(x, str):
            for secret in known:
                x = x.replace(secret, MASK)
        return x

    return walk(value)
