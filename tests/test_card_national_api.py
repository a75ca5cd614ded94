"""docs/national-api.md names only calls the card layer really has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from healthcard_apdu import card
from healthcard_apdu.app import connect
from healthcard_apdu.app.connect import CardConnection
from healthcard_apdu.card import HealthCard, Sam

DOC = Path(__file__).resolve().parents[1] / "docs" / "national-api.md"
OWNERS: dict[str, object] = {"HealthCard": HealthCard, "Sam": Sam, "CardConnection": CardConnection}


def _calls() -> set[tuple[str, str]]:
    text = DOC.read_text(encoding="utf-8")
    return set(re.findall(r"\b(HealthCard|Sam|CardConnection)\.(\w+)\(", text))


def test_the_document_names_card_layer_calls() -> None:
    calls = _calls()
    assert len(calls) >= 45
    assert ("HealthCard", "read_inpatient_items") in calls


@pytest.mark.parametrize(("owner", "method"), sorted(_calls()))
def test_documented_method_exists(owner: str, method: str) -> None:
    assert callable(getattr(OWNERS[owner], method, None)), f"{owner}.{method}"


def test_documented_card_package_names_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in set(re.findall(r"healthcard_apdu\.card\.(\w+)", text)):
        assert hasattr(card, name), name
    for name in set(re.findall(r"healthcard_apdu\.app\.connect\.(\w+)", text)):
        assert hasattr(connect, name), name
