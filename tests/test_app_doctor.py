"""``healthcard doctor``: pcscd, readers, the card factor of a card in a reader, vpcd."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import ServeOnVpcd
from healthcard_apdu.app import doctor
from healthcard_apdu.cli import main
from healthcard_apdu.sim import SimCard
from healthcard_apdu.transport.base import ServiceUnavailableError

SERIAL = bytes.fromhex("0081866B00001015")


@pytest.mark.pcsc
def test_doctor_reports_the_card_factor_of_a_card_in_a_reader(vpcd_slot: ServeOnVpcd) -> None:
    reader = vpcd_slot(SimCard.blank(SERIAL), 0)
    result = CliRunner().invoke(main, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    checks = {c["name"]: c for c in json.loads(result.output)}
    assert checks["pcscd"]["status"] == "ok"
    card = next(c for c in checks.values() if reader in c["detail"])
    assert card["status"] == "ok"
    assert "first-8 0081866B00001015 (the rule)" in card["detail"] and "T=1" in card["detail"]
    assert "last-8 0010154843019000" in card["detail"]  # the other known rule, as a candidate
    assert checks["vpcd"]["status"] == "ok"


def test_doctor_fails_with_a_hint_when_pcscd_does_not_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_service() -> list[object]:
        raise ServiceUnavailableError("SCardEstablishContext: Service not available")

    monkeypatch.setattr(doctor, "reader_statuses", no_service)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 3
    line = next(row for row in result.output.splitlines() if row.startswith("pcscd"))
    assert "fail" in line and "start it with `pcscd`" in line


def test_optional_parts_point_to_their_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)
    check = doctor._optional("postgresql", "psycopg", "PostgreSQL batch journal", "postgresql")
    assert check.status == "warn" and "healthcard-apdu[postgresql]" in check.detail
