"""The layers of docs/architecture.md only look downwards; the simulator is built apart."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "healthcard_apdu"

HOST_FEATURES = {"card", "perso", "batch", "conformance"}
#: Top-level modules below every layer (layer 0): any package may import them, they import
#: nothing of the project.
LEAVES = {"fileio"}
# package -> the project packages it may import (besides itself and the leaves)
ALLOWED: dict[str, set[str]] = {
    "apdu": set(),
    "crypto": {"apdu"},  # apdu.errors only: CryptoError is a HealthCardError
    "transport": {"apdu"},
    "security": {"apdu", "crypto", "transport"},
    "model": {"apdu"},
    **{
        feature: {"apdu", "crypto", "transport", "security", "model"} | HOST_FEATURES
        for feature in HOST_FEATURES
    },
    "sim": {"apdu", "crypto"},  # the card side: never the host's model, card or perso code
    # the electronic health card: above the card features, below the composition root
    "ehc": {"apdu", "crypto", "security", "model", "card"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "healthcard_apdu" and len(parts) > 1:
                found.add(parts[1])
    return found


def _modules() -> list[tuple[str, Path]]:
    return [
        (path.relative_to(PACKAGE).parts[0], path)
        for path in sorted(PACKAGE.rglob("*.py"))
        if len(path.relative_to(PACKAGE).parts) > 1
    ]


@pytest.mark.parametrize(("layer", "path"), _modules(), ids=lambda v: str(v))
def test_module_imports_only_lower_layers(layer: str, path: Path) -> None:
    if layer not in ALLOWED:  # cli and app are the composition root: they may import anything
        assert layer in {"cli", "app"}, f"{layer} is not a known layer"
        return
    wrong = _imports(path) - ALLOWED[layer] - {layer} - LEAVES
    assert not wrong, f"{path.relative_to(PACKAGE)} ({layer}) imports {sorted(wrong)}"


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_leaf_modules_import_nothing_of_the_project(leaf: str) -> None:
    path = PACKAGE / f"{leaf}.py"
    assert path.is_file(), f"leaf module {leaf} is missing"
    assert _imports(path) == set(), f"{leaf}.py must stay at the bottom: {_imports(path)}"


def test_crypto_takes_only_the_error_base_from_apdu() -> None:
    for path in sorted((PACKAGE / "crypto").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "healthcard_apdu.apdu"
            ):
                assert node.module == "healthcard_apdu.apdu.errors", path
                assert [a.name for a in node.names] == ["HealthCardError"], path


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("from healthcard_apdu.card import HealthCard\nimport healthcard_apdu.model\n")
    assert _imports(bad) == {"card", "model"}


def test_nothing_below_the_composition_root_imports_ehc() -> None:
    users = sorted(
        str(path.relative_to(PACKAGE))
        for layer, path in _modules()
        if layer not in {"ehc", "cli", "app"} and "ehc" in _imports(path)
    )
    assert users == []
