"""Lay files out in a Hugging Face Hub cache exactly as `huggingface_hub` documents its cache layout, so the real
client reads them with `HF_HUB_OFFLINE=1` (no network):

    <cache>/models--org--name/            (datasets--org--name/ for a dataset repo)
        blobs/<sha256 of the file>        the bytes
        refs/<revision>                   the commit hash the revision points to
        snapshots/<commit>/<path>         a relative symlink to ../../blobs/<sha256>
"""

from __future__ import annotations

import hashlib
import os
import shutil


def cache_repo(
    cache_dir: str,
    repo_id: str,
    files: dict[str, str],
    repo_type: str = "model",
    revision: str = "main",
    commit: str | None = None,
) -> str:
    """Put `files` ({path in repo: local file}) into the cache as one commit of the repo; returns the commit hash."""
    folder = os.path.join(cache_dir, f"{repo_type}s--{repo_id.replace('/', '--')}")
    digest = hashlib.sha1(repr(sorted(files)).encode() + revision.encode())
    for path in sorted(files):
        with open(files[path], "rb") as f:
            digest.update(f.read())
    commit = commit or digest.hexdigest()  # 40 hex digits, like a git commit hash
    for path, local in files.items():
        with open(local, "rb") as f:
            blob = hashlib.sha256(f.read()).hexdigest()
        blob_path = os.path.join(folder, "blobs", blob)
        os.makedirs(os.path.dirname(blob_path), exist_ok=True)
        if not os.path.exists(blob_path):
            shutil.copyfile(local, blob_path)
        link = os.path.join(folder, "snapshots", commit, *path.split("/"))
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(os.path.relpath(blob_path, os.path.dirname(link)), link)
    os.makedirs(os.path.join(folder, "refs"), exist_ok=True)
    with open(os.path.join(folder, "refs", revision), "w") as f:
        f.write(commit)
    return commit
