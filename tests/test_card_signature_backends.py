"""Record signatures read the same whichever SM2 backend checks them.

With libcrypto the reader decodes an EE/ED record in a worker thread while libcrypto checks its
signature (``card.signing.check_beside``); with the pure-Python backend it checks first and
decodes after. Every scenario below is read both ways and must give the same value, exception,
notices (in order, and as heard by ``on_notice``), signature statuses and APDUs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from healthcard_apdu import model
from healthcard_apdu.card import HealthCard, SignatureInvalid, SignatureMissing
from healthcard_apdu.card.notices import CardNotice, SignatureStatus
from healthcard_apdu.card.signing import check_beside
from healthcard_apdu.crypto import Sm2Check, sm2_openssl
from healthcard_apdu.security import sign_record
from healthcard_apdu.sim import SimCard
from test_card_fixtures import ee_data, health_card, sample

INPATIENT_DATA = model.InpatientRecord.data_length()
OUTPATIENT_DATA = model.OutpatientRecord.data_length()


def _records(card: HealthCard) -> None:
    inpatient, outpatient = sample().inpatient[0], sample().outpatient[0]
    assert inpatient is not None and outpatient is not None
    card.write_inpatient(1, inpatient)
    card.write_outpatient(1, outpatient)


def _out_of_spec(card: HealthCard, sim: SimCard, *, sign: bool) -> None:
    """EE01 with bytes the lenient reader warns about; signed anew over them when ``sign``."""
    _records(card)
    data = ee_data(sim, 0xEE01)
    data[0:4] = b"\xff\xfe\xfd\xfc"
    if sign:
        signature = sign_record(card.security, bytes(data[:INPATIENT_DATA]))
        data[INPATIENT_DATA : INPATIENT_DATA + 64] = signature


def _bad_certificate(card: HealthCard, sim: SimCard) -> None:
    _records(card)
    ee_data(sim, 0xED01)[OUTPATIENT_DATA + 64 : OUTPATIENT_DATA + 68] = b"XXXX"


def _unsigned(card: HealthCard, sim: SimCard) -> None:
    _records(card)
    inpatient = sample().inpatient[0]
    assert inpatient is not None
    card.write_inpatient(2, inpatient, sign=False)


Scenario = tuple[Callable[[HealthCard, SimCard], None], Callable[[HealthCard], Any], dict[str, Any]]
SCENARIOS: dict[str, Scenario] = {
    "signed, with notices": (
        lambda card, sim: _out_of_spec(card, sim, sign=True), HealthCard.read_card, {}
    ),
    "tampered, with notices": (
        lambda card, sim: _out_of_spec(card, sim, sign=False), HealthCard.read_card, {}
    ),
    "unusable certificate": (_bad_certificate, HealthCard.read_card, {}),
    "unsigned, signatures required": (
        _unsigned, HealthCard.read_card, {"require_signatures": True}
    ),
    "tampered, not verified": (
        lambda card, sim: _out_of_spec(card, sim, sign=False),
        lambda card: card.read_card(verify=False),
        {},
    ),
    "one record": (
        lambda card, sim: _out_of_spec(card, sim, sign=True),
        lambda card: card.read_inpatient(1),
        {},
    ),
}


def _outcome(backend: str, name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    if backend == "python":
        monkeypatch.setattr(sm2_openssl, "available", lambda: False)
    elif not sm2_openssl.available():
        pytest.skip(f"libcrypto SM2 not usable here: {sm2_openssl.problem()}")
    prepare, read, options = SCENARIOS[name]
    heard: list[CardNotice] = []
    with health_card(on_notice=heard.append, **options) as (card, sim, recorder):
        prepare(card, sim)
        card.warnings.clear()
        heard.clear()
        card.signatures.clear()
        recorder.sent.clear()
        error: tuple[Any, ...] | None = None
        value: Any = None
        try:
            value = read(card)
        except Exception as exc:
            error = (type(exc), str(exc), getattr(exc, "path", None),
                     getattr(exc, "record", None), getattr(exc, "record_value", None))
        outcome = {
            "value": value,
            "error": error,
            "warnings": list(card.warnings),
            "heard": heard,
            "signatures": dict(card.signatures),
            "apdus": recorder.headers(),
        }
    monkeypatch.undo()
    return outcome


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_both_backends_read_the_same(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = _outcome("openssl", name, monkeypatch)
    python = _outcome("python", name, monkeypatch)
    assert compiled == python
    # and what each scenario must show
    error, statuses = python["error"], python["signatures"]
    decode_notices = [n for n in python["warnings"] if n.kind == "decode" and n.path == "DF03/EE01"]
    assert python["heard"] == python["warnings"]
    if name in ("signed, with notices", "one record"):
        assert error is None and decode_notices
        assert statuses["DF03/EE01"] is SignatureStatus.SIGNED_VALID
    elif name == "tampered, with notices":
        assert error is not None and error[0] is SignatureInvalid and error[2] == "DF03/EE01"
        assert "does not verify" in error[1] and not decode_notices
        assert statuses == {"DF03/EE01": SignatureStatus.SIGNATURE_INVALID}
        assert isinstance(error[4], model.InpatientRecord)
    elif name == "unusable certificate":
        assert error is not None and error[0] is SignatureInvalid and "unusable" in error[1]
        assert statuses["DF03/EE01"] is SignatureStatus.SIGNED_VALID
        assert statuses["DF03/ED01"] is SignatureStatus.SIGNATURE_INVALID
    elif name == "unsigned, signatures required":
        assert error is not None and error[0] is SignatureMissing and error[2] == "DF03/EE02"
        assert statuses["DF03/EE02"] is SignatureStatus.UNSIGNED
    else:
        assert error is None and decode_notices
        assert set(statuses.values()) == {SignatureStatus.NOT_CHECKED}


class _Check(Sm2Check):
    def __init__(self, answer: bool, releases_gil: bool) -> None:
        super().__init__(lambda: answer, releases_gil)


def test_check_beside_runs_the_work_in_the_worker_only_beside_a_gil_free_check() -> None:
    here = threading.get_ident()
    threads: list[int] = []

    def work() -> str:
        threads.append(threading.get_ident())
        return "decoded"

    answer, result = check_beside(_Check(True, releases_gil=True), work)
    assert answer is True and result() == "decoded" and threads[-1] != here
    answer, result = check_beside(_Check(False, releases_gil=False), work)
    assert answer is False and len(threads) == 1  # not run: the caller raises first
    assert result() == "decoded" and threads[-1] == here


def test_check_beside_hands_the_work_exception_to_the_caller() -> None:
    def work() -> str:
        raise model.LayoutError("bad bytes")

    for releases_gil in (True, False):
        answer, result = check_beside(_Check(True, releases_gil), work)
        assert answer is True
        with pytest.raises(model.LayoutError, match="bad bytes"):
            result()
