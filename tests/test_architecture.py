"""The house rules that the layering depends on, checked on the source itself."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = sorted([*ROOT.glob("core/**/*.py"), *ROOT.glob("ui/*.py"), *ROOT.glob("pages/*.py"), ROOT / "app.py"])


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at any depth (lazy imports inside functions count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", [p for p in PRODUCT if p.parts[-2] == "core" or "train" in p.parts[-2:-1]],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_core_never_imports_streamlit(path):
    assert not any(n == "streamlit" or n.startswith("streamlit.") for n in _imported(path))


@pytest.mark.parametrize("path", [p for p in PRODUCT if "train" not in p.relative_to(ROOT).parts[:2]
                                  and p.name != "__main__.py"], ids=lambda p: str(p.relative_to(ROOT)))
def test_only_the_command_line_imports_the_trainer(path):
    """Analysis code loads finished runs through core.runmodel, never through the training loop."""
    assert not any(n == "core.train" or n.startswith("core.train.") for n in _imported(path))
