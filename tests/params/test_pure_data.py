"""The params package is pure data: no module of it imports the data, models or inference packages, at any level
(function-level imports included), so that parsing a config can never read a dataset, load a tokenizer or build a
model. The reads live in the resolve step's hooks (`vla_foundry/params/resolve.py`)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PARAMS_DIR = REPO_ROOT / "vla_foundry" / "params"
FORBIDDEN = ("vla_foundry.data", "vla_foundry.models", "vla_foundry.inference")


def _is_forbidden(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in FORBIDDEN)


def forbidden_imports(source: str, package: str = "vla_foundry.params") -> list[tuple[int, str]]:
    """(line, module) of every import of a forbidden package anywhere in `source`: `import x`, `from x import y`,
    `from vla_foundry import data` and `importlib.import_module("x")` / `__import__("x")` with a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            if _is_forbidden(base):
                found.append((node.lineno, base))
            else:
                found += [(node.lineno, f"{base}.{a.name}") for a in node.names if _is_forbidden(f"{base}.{a.name}")]
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
            first = node.args[0] if node.args else None
            literal = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
            if name in ("import_module", "__import__") and literal is not None and _is_forbidden(literal):
                found.append((node.lineno, literal))
    return found


@pytest.mark.parametrize("path", sorted(PARAMS_DIR.rglob("*.py")), ids=lambda p: p.name)
def test_params_module_imports_no_data_models_or_inference(path: Path) -> None:
    found = forbidden_imports(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(REPO_ROOT)} imports " + ", ".join(f"{m} (line {n})" for n, m in found)


@pytest.mark.parametrize(
    "source",
    [
        "import vla_foundry.data.manifest",
        "def f():\n    from vla_foundry.models.registry import create_model\n",
        "class A:\n    def m(self):\n        from vla_foundry import inference\n",
        "from ..data import planner",
        "import importlib\nimportlib.import_module('vla_foundry.data.planner')",
    ],
    ids=["module-level", "function-level", "from-package", "relative", "import_module"],
)
def test_the_checker_finds_every_form_of_import(source: str) -> None:
    assert len(forbidden_imports(source)) == 1


def test_the_checker_allows_the_params_own_modules() -> None:
    assert forbidden_imports("from vla_foundry.params.base_params import ConfigError\nimport vla_foundry.storage") == []
