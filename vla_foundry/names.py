"""The one "did you mean" rule: the valid names closest to a name a user typed, for error messages."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest_names(name: str, valid: Iterable[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    """Up to `n` names of `valid` closest to `name`, best first (none when nothing is at least `cutoff` similar,
    by difflib's ratio)."""
    return difflib.get_close_matches(str(name), [str(v) for v in valid], n=n, cutoff=cutoff)
