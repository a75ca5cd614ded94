"""DF03: EE/ED records, signatures, tampering, index flags and partial (item) access."""

from __future__ import annotations

import pytest

from healthcard_apdu import model
from healthcard_apdu.card import RecordInvalid, SignatureInvalid
from healthcard_apdu.security import sign_record, verify_record
from test_card_fixtures import CERTIFICATE, edge_card, ee_data, health_card, sample

INPATIENT_DATA = model.InpatientRecord.data_length()  # 1639
OUTPATIENT_DATA = model.OutpatientRecord.data_length()  # 3013


def _inpatient() -> model.InpatientRecord:
    record = sample().inpatient[0]
    assert record is not None
    return record


def _outpatient() -> model.OutpatientRecord:
    record = sample().outpatient[0]
    assert record is not None
    return record


@pytest.mark.parametrize("kind", ["software", "psam"])
def test_written_record_is_signed_over_its_data_bytes(kind: str) -> None:
    with health_card(kind) as (card, sim, _rec):
        written = card.write_inpatient(1, _inpatient())
        raw = bytes(ee_data(sim, 0xEE01))
    assert raw == written.to_bytes()
    assert raw[INPATIENT_DATA + 64 :] == CERTIFICATE
    signature = raw[INPATIENT_DATA : INPATIENT_DATA + 64]
    assert verify_record(raw[:INPATIENT_DATA], signature, CERTIFICATE)
    assert written.inpatient_institution_name == _inpatient().inpatient_institution_name


@pytest.mark.parametrize(
    ("fid", "offset"),
    [
        (0xEE01, 5),  # a byte of the institution name
        (0xEE01, 69),  # padding after the name: invisible to the decoder, still signed
        (0xEE01, INPATIENT_DATA + 10),  # the signature itself
    ],
)
def test_tampered_inpatient_record_fails_verification_naming_file_and_record(
    fid: int, offset: int
) -> None:
    with health_card() as (card, sim, _rec):
        card.write_inpatient(1, _inpatient())
        ee_data(sim, fid)[offset] ^= 0x01
        with pytest.raises(SignatureInvalid) as info:
            card.read_inpatient(1)
        assert info.value.path == "DF03/EE01" and info.value.record == 1
        assert "DF03/EE01 (inpatient record 1)" in str(info.value)
        assert "does not verify" in str(info.value)
        # skipping verification returns the (untrusted) record
        assert card.read_inpatient(1, verify=False).medical_record_number == (
            _inpatient().medical_record_number
        )


def test_tampering_through_the_card_with_an_unsigned_item_write() -> None:
    with health_card() as (card, _sim, rec):
        card.write_outpatient(2, _outpatient())
        rec.sent.clear()
        card.write_outpatient_items(2, {"MZH": "X0000001"}, sign=False)
        assert [a[:2].hex() for a in rec.sent if a[1] == 0xD6] == ["00d6"]  # only the item
        with pytest.raises(SignatureInvalid, match=r"DF03/ED02 \(outpatient record 2\)"):
            card.read_outpatient(2)
        whole = card.read_card(verify=False)
    record = whole.outpatient[1]
    assert record is not None and record.outpatient_number == "X0000001"


def test_malformed_certificate_and_missing_certificate_are_reported() -> None:
    with health_card() as (card, sim, _rec):
        card.write_inpatient(3, _inpatient())
        data = ee_data(sim, 0xEE03)
        data[INPATIENT_DATA + 64 : INPATIENT_DATA + 68] = b"XXXX"
        with pytest.raises(SignatureInvalid, match="item 212 is unusable"):
            card.read_inpatient(3)
        data[INPATIENT_DATA + 64 :] = bytes(190)
        with pytest.raises(SignatureInvalid, match="no SAM certificate"):
            card.read_inpatient(3)


def test_unsigned_record_reads_without_verification_error() -> None:
    with health_card() as (card, sim, _rec):
        card.write_inpatient(2, _inpatient(), sign=False)
        raw = bytes(ee_data(sim, 0xEE02))
        assert raw[INPATIENT_DATA:] == bytes(1893 - INPATIENT_DATA)
        assert card.read_inpatient(2) == _inpatient()


def test_sign_modes_keep_a_valid_signature_and_replace_a_stale_one() -> None:
    with health_card() as (card, _sim, _rec):
        first = card.write_inpatient(1, _inpatient())
        kept = card.write_inpatient(2, first)  # auto: the carried signature still verifies
        assert kept == first
        resigned = card.write_inpatient(2, first, sign=True)
        assert resigned.inpatient_institution_name == first.inpatient_institution_name
        # the software SAM signs with RFC 6979 nonces: signing the same data again gives the
        # same signature (a PSAM's random nonce would give another valid one)
        assert resigned.inpatient_signature == first.inpatient_signature
        edited = first.replace(admission_count="7")
        stale_fixed = card.write_inpatient(3, edited)  # auto: stale signature -> signed anew
        assert stale_fixed.inpatient_signature != first.inpatient_signature
        assert card.read_inpatient(3) == stale_fixed
        as_given = card.write_inpatient(3, edited, sign=False)  # written as given: fails on read
        assert as_given == edited
        with pytest.raises(SignatureInvalid):
            card.read_inpatient(3)


def test_index_flags_set_and_erase_and_record_invalid() -> None:
    with health_card() as (card, _sim, rec):
        assert card.read_inpatient_index() == model.InpatientIndex()
        with pytest.raises(RecordInvalid, match=r"DF03/EE02 \(inpatient record 2\).*FF"):
            card.read_inpatient(2)
        card.write_inpatient(2, _inpatient())
        assert card.read_inpatient_index() == model.InpatientIndex(inpatient_record_valid_2=True)
        rec.sent.clear()
        card.erase_inpatient_flag(2)
        assert rec.headers()[-1] == "840C0204"
        with pytest.raises(RecordInvalid) as info:
            card.read_inpatient(2)
        assert info.value.record == 2 and info.value.path == "DF03/EE02"
        rec.sent.clear()
        card.set_inpatient_flag(2)
        assert rec.headers()[-1] == "84D20204"
        assert card.read_inpatient(2).data_bytes() == _inpatient().data_bytes()
        for n in (1, 3, 5):
            card.set_outpatient_flag(n)
        card.erase_outpatient_flag(3)
        assert card.read_outpatient_index() == model.OutpatientIndex(
            outpatient_record_valid_1=True, outpatient_record_valid_5=True
        )
        with pytest.raises(RecordInvalid):
            card.read_outpatient_items(3, 0, 70)
        with pytest.raises(model.LayoutError, match=r"1\.\.3"):
            card.set_inpatient_flag(4)


def test_flag_keys_follow_the_key_inventory() -> None:
    with health_card() as (card, _sim, rec):
        card.set_outpatient_flag(1)
        card.erase_outpatient_flag(1)
    auths = [a[:4].hex().upper() for a in rec.sent if a[1] == 0x82]
    assert auths == ["00820085", "00820086"]  # UK1_DF03 sets, UK2_DF03 erases


def test_partial_items_read_and_write_with_re_signing() -> None:
    data = edge_card(seed=5)
    record = data.outpatient[0]
    assert record is not None
    with health_card() as (card, sim, _rec):
        card.write_outpatient(1, record)
        item_217 = model.item(217)
        assert item_217.offset is not None
        values = card.read_outpatient_items(1, 80, 7 + 18)  # items 215 and 216
        assert values == {
            "visit_datetime": record.visit_datetime,
            "outpatient_number": record.outpatient_number,
        }
        card.write_outpatient_items(1, {"outpatient_number": "A123", 217: "急诊科"})
        back = card.read_outpatient(1)  # verifies: the record was signed anew
        raw = bytes(ee_data(sim, 0xED01))
    assert back.outpatient_number == "A123" and back.visit_department_name == "急诊科"
    assert back.visit_datetime == record.visit_datetime
    assert verify_record(
        raw[:OUTPATIENT_DATA], raw[OUTPATIENT_DATA : OUTPATIENT_DATA + 64], CERTIFICATE
    )


def test_partial_write_rejects_gaps_and_unknown_items_before_any_apdu() -> None:
    with health_card() as (card, _sim, rec):
        with pytest.raises(model.LayoutError, match="not adjacent"):
            card.write_inpatient_items(1, {"ZYJGMC": "甲", "RYRQ": "20240101"})
        with pytest.raises(model.LayoutError, match="not in this file"):
            card.write_inpatient_items(1, {"XM": "x"})
        with pytest.raises(model.LayoutError, match="item boundaries"):
            card.read_inpatient_items(1, 3, 10)
        with pytest.raises(model.EncodeError, match="DF03/EE01"):
            card.write_inpatient_items(1, {"ZYJGMC": "甲" * 40})
    assert rec.sent == []


def test_writing_only_the_signature_items_does_not_re_sign() -> None:
    with health_card() as (card, _sim, _rec):
        card.write_inpatient(1, _inpatient())
        data = _inpatient().data_bytes()
        module = card.security
        signature = sign_record(module, data)
        card.write_inpatient_items(1, {211: signature})
        assert card.read_inpatient(1).inpatient_signature == signature
