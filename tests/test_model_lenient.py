"""Read leniently, write strictly: any card bytes decode to a value or a warning, never an
exception (issue 10 §2); the encoders and validators still refuse what is out of spec."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcard_apdu.model import (
    ITEMS,
    DecodeError,
    EncodeError,
    InpatientRecord,
    IssuerData,
    Item,
    OutpatientRecord,
    decode_item,
    decode_item_lenient,
    decode_tlv,
    decode_tlv_lenient,
    empty_value,
    encode_item,
    file_class,
    item,
    item_errors,
)
from healthcard_apdu.model.card_data import Allergies

#: What issued cards of one city hold in FKJGDM (public reader logs, 2015).
REAL_FKJGDM = bytes.fromhex("00022483AFFFFFFFFFFFFF")


def test_the_real_issuer_code_is_kept_and_reported() -> None:
    fkjgdm = item("FKJGDM")
    value, warning = decode_item_lenient(fkjgdm, REAL_FKJGDM)
    assert value == "00022483A"
    assert warning is not None and "non-decimal nibble" in warning.reason
    assert "FKJGDM" in warning.message and "00022483A" in warning.message
    assert REAL_FKJGDM.hex().upper() in warning.message
    with pytest.raises(EncodeError, match="digits"):
        encode_item(fkjgdm, value)  # writing stays strict
    assert item_errors(fkjgdm, value)  # and so does validation


def test_one_bad_item_does_not_hide_the_others() -> None:
    records = dict(IssuerData(issuer_code="4000000001100000", card_number="110105198503171231",
                              issuer_name="示例").to_records())
    records[4] = bytes((4, 11)) + REAL_FKJGDM
    records[3] = bytes((3, 30)) + b"\xff\xfe\x80\x81" + bytes(26)  # not GBK
    with pytest.raises(DecodeError, match="FKJGMC"):
        IssuerData.from_records(records)  # strict by default
    warnings: list = []
    issuer = IssuerData.from_records(records, warnings=warnings)
    assert issuer.issuer_code == "00022483A"
    assert issuer.card_number == "110105198503171231"
    assert "\ufffd" in issuer.issuer_name
    assert sorted(w.item.code for w in warnings) == ["FKJGDM", "FKJGMC"]
    assert {w.record for w in warnings} == {3, 4}


@pytest.mark.parametrize(
    ("code", "raw", "shown", "warned"),
    [
        ("MZ", b"\x01", "01", False),  # cn code, in spec
        ("MZ", b"\x1c", "1C", True),  # cn with a non-decimal nibble
        ("MZ", b"\x1f", "1", False),  # cn with F padding
        ("XB", b"\x07", 7, False),  # b1 code: any byte is a code
        ("KLB", b"\xff", "", False),  # ans all FF: empty
        ("KLB", b"\x81", "\ufffd", True),  # half a GBK character
    ],
)
def test_short_items(code: str, raw: bytes, shown: object, warned: bool) -> None:
    value, warning = decode_item_lenient(item(code), raw)
    assert value == shown
    assert (warning is not None) == warned


def test_flags_and_index_flags_out_of_spec() -> None:
    flag = next(i for i in ITEMS if i.kind == "flag")
    value, warning = decode_item_lenient(flag, b"\x02")
    assert value is None and warning is not None and "00, 01 or FF" in warning.reason
    index = next(i for i in ITEMS if i.kind == "index_flag")
    value, warning = decode_item_lenient(index, b"\x5a")
    assert value is False and warning is not None  # only 00 means "record valid"


def test_tlv_records_out_of_spec() -> None:
    fkjgdm = item("FKJGDM")
    wrong_tag = bytes((5, 11)) + bytes.fromhex("1234") + b"\xff" * 9
    value, warning = decode_tlv_lenient(fkjgdm, wrong_tag)
    assert value == "1234" and warning is not None and "tag 05" in warning.reason
    value, warning = decode_tlv_lenient(fkjgdm, bytes((4, 30)) + bytes.fromhex("12"))
    assert value == "12" and warning is not None
    value, warning = decode_tlv_lenient(fkjgdm, b"\x04")
    assert value == "" and warning is not None


def test_transparent_files_and_cyclic_records() -> None:
    raw = bytearray(InpatientRecord().to_bytes())
    raw[0:4] = b"\xff\xfe\xfd\xfc"
    warnings: list = []
    record = InpatientRecord.from_bytes(bytes(raw[:1000]), warnings=warnings)  # cut short
    assert record is not None and warnings
    entry = bytearray(Allergies.ENTRY().to_bytes())
    entry[0:2] = b"\x80\x80"
    warnings = []
    allergies = Allergies.from_records({1: bytes(entry), 2: b"\x00" * 5}, warnings=warnings)
    # record 2 is too short: reported, and blank, so dropped like any blank record
    assert len(allergies.entries) == 1 and {w.record for w in warnings} == {1, 2}


# --- any bytes, any item ----------------------------------------------------------------------

_ITEMS = [i for i in ITEMS if i.length]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_ITEMS), st.binary(max_size=80))
def test_any_bytes_in_any_item_decode_to_a_value_or_a_warning(target: Item, raw: bytes) -> None:
    value, warning = decode_item_lenient(target, raw)
    if warning is None:
        assert decode_item(target, raw) == value
    else:
        assert warning.item is target and warning.raw == raw and warning.message


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([i for i in _ITEMS if i.tag is not None]), st.binary(max_size=80))
def test_any_bytes_in_any_tlv_record_decode_to_a_value_or_a_warning(
    target: Item, raw: bytes
) -> None:
    value, warning = decode_tlv_lenient(target, raw)
    if warning is None:
        assert decode_tlv(target, raw) == value


_RECORD_FILES = ["DDF1/EF05", "DDF1/EF06", "DDF1/EF08", "DF01/EF06", "DF02/EF05", "DF03/EF05"]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_RECORD_FILES),
       st.dictionaries(st.integers(1, 20), st.binary(max_size=60), max_size=12))
def test_any_records_decode_leniently(path: str, records: dict[int, bytes]) -> None:
    warnings: list = []
    file_class(path).from_records(records, warnings=warnings)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=300), st.integers(0, 1893))
def test_any_ee_bytes_decode_leniently(chunk: bytes, offset: int) -> None:
    raw = bytearray(InpatientRecord().to_bytes())
    raw[offset : offset + len(chunk)] = chunk
    InpatientRecord.from_bytes(bytes(raw), warnings=[])


# --- the file decoders' direct paths give what the item decoders give ------------------------


def _reference_records(cls: type, records: dict[int, bytes]) -> tuple[dict, list]:
    """from_records(..., warnings=...) item by item through decode_tlv/item_lenient."""
    values, found = {}, []
    tlv = cls.structure() == "tlv_records"
    for s in cls.slots():
        raw = records.get(s.record or 0)
        if raw is None:
            values[s.field] = empty_value(s.item)
            continue
        value, warning = (decode_tlv_lenient if tlv else decode_item_lenient)(s.item, raw)
        values[s.field] = value
        if warning is not None:
            found.append(dataclasses.replace(warning, context=cls.LAYOUT, record=s.record))
    return values, found


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_RECORD_FILES), st.data())
def test_record_files_decode_as_their_items_do(path: str, data: st.DataObject) -> None:
    cls = file_class(path)
    records = dict(cls().to_records())
    for number in data.draw(st.lists(st.sampled_from(sorted(records)), max_size=4)):
        kind = data.draw(st.sampled_from(["bytes", "value", "tag", "length"]))
        raw = bytearray(records[number])
        if kind == "bytes" or len(raw) < 3:
            records[number] = data.draw(st.binary(max_size=40))
            continue
        if kind == "value":
            raw[data.draw(st.integers(2, len(raw) - 1))] = data.draw(st.integers(0, 255))
        elif kind == "tag":
            raw[0] ^= data.draw(st.integers(1, 255))
        else:
            raw[1] = data.draw(st.integers(0, 255))
        records[number] = bytes(raw)
    found: list = []
    value = cls.from_records(records, warnings=found)
    expected, expected_found = _reference_records(cls, records)
    assert {s.field: getattr(value, s.field) for s in cls.slots()} == expected
    assert found == expected_found


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([InpatientRecord, OutpatientRecord]), st.binary(max_size=64),
       st.integers(0, 3200), st.integers(0, 3200))
def test_record_images_decode_as_their_items_do(
    cls: type, chunk: bytes, offset: int, cut: int
) -> None:
    raw = bytearray(cls().to_bytes())
    raw[offset : offset + len(chunk)] = chunk
    image = bytes(raw[: max(cut, cls.data_length())]) if cut % 3 else bytes(raw[:cut])
    found: list = []
    value = cls.from_bytes(image, warnings=found)
    expected_found = []
    for s in cls.slots():
        start, end = s.item.offset or 0, (s.item.offset or 0) + s.item.length
        part = image[start:end]
        if start >= len(image) or (
            len(part) < s.item.length and len(image) in (cls.byte_size(), cls.data_length())
        ):
            assert getattr(value, s.field) == empty_value(s.item)
            continue
        item_value, warning = decode_item_lenient(s.item, part)
        assert getattr(value, s.field) == item_value
        if warning is not None:
            expected_found.append(dataclasses.replace(warning, context=cls.LAYOUT))
    assert found == expected_found
