"""Every file the docs, the README and the package's messages and docstrings point a user to exists in the repo."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import REPO_ROOT

# A cited file: an optional folder path, a name, and one of the extensions users are sent to.
CITED_FILE = re.compile(r"(?<![\w/.<{-])((?:[\w.-]+/)*[\w-]+\.(?:md|py|yaml|yml|sh|ipynb|toml))(?![\w/])")
# Markdown link targets that are repository files (not URLs, not same-page anchors).
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# Written by commands or training, not stored in the repository (e.g. a run's config.yaml); matched on the name.
PRODUCED = {
    "config.yaml",
    "config_model.yaml",
    "config_processor.yaml",
    "config_normalizer.yaml",
    "preprocessing_config.yaml",
    "job.yaml",
    "cams.yaml",
    "preset.yaml",
    "rel.yaml",
}


def _resolves(cited: str, base: Path) -> bool:
    cited = cited.removeprefix("./")
    return (REPO_ROOT / cited).exists() or (base / cited).exists()


def _checked(cited: str) -> bool:
    """A path with a folder, or any Markdown file; a bare `main.py` in a table under its folder reads in context, and
    `../x.yaml` is relative to the preset shown beside it."""
    if cited.startswith(".") or Path(cited).name in PRODUCED:
        return False
    return "/" in cited or cited.endswith(".md")


def _missing(text: str, base: Path) -> list[str]:
    cited = set(CITED_FILE.findall(text)) | {t for t in LINK.findall(text) if "://" not in t}
    return sorted(c for c in cited if _checked(c) and not _resolves(c, base))


def _string_constants(path: Path) -> str:
    """Every string literal of a module (docstrings, messages, f-string parts), one per line."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return "\n".join(n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str))


def test_files_cited_in_the_docs_and_readme_exist():
    docs = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    missing = {str(d.relative_to(REPO_ROOT)): _missing(d.read_text(encoding="utf-8"), d.parent) for d in docs}
    assert {k: v for k, v in missing.items() if v} == {}


def test_files_cited_in_package_messages_and_docstrings_exist():
    modules = sorted((REPO_ROOT / "vla_foundry").rglob("*.py"))
    missing = {str(m.relative_to(REPO_ROOT)): _missing(_string_constants(m), m.parent) for m in modules}
    assert {k: v for k, v in missing.items() if v} == {}


def test_a_citation_of_a_file_outside_the_repository_is_caught():
    assert _missing("see FORMATS.md §3 and [the guide](docs/nowhere.md)", REPO_ROOT / "docs") == [
        "FORMATS.md",
        "docs/nowhere.md",
    ]
