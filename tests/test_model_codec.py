"""Codecs: known byte vectors from live traces, round-trip properties, and error discipline."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcard_apdu import model
from healthcard_apdu.model import Item

ITEMS = model.ITEMS
GBK_CHARS = st.characters(codec="gbk", exclude_characters="\x00")


def _fit(text: str, limit: int) -> str:
    """Longest prefix whose GBK encoding fits ``limit`` bytes."""
    while len(text.encode("gbk")) > limit:
        text = text[:-1]
    return text


def gbk_text(limit: int) -> st.SearchStrategy[str]:
    return st.text(GBK_CHARS, max_size=limit).map(lambda s: _fit(s, limit))


def value_strategy(item: Item) -> st.SearchStrategy[Any]:
    """Any value the item's codec must accept (not necessarily semantically valid)."""
    if item.fmt == "ans":
        return gbk_text(item.length)
    if item.fmt == "cn":
        digits = st.text("0123456789", max_size=2 * item.length)
        if item.kind != "decimal":
            return digits
        half = item.length - 1
        decimals = st.tuples(
            st.text("0123456789", min_size=1, max_size=half),
            st.text("0123456789", min_size=1, max_size=half),
        ).map(lambda p: f"{p[0]}.{p[1]}")
        return digits | decimals
    if item.kind == "flag":
        return st.sampled_from([True, False, None])
    if item.kind == "index_flag":
        return st.booleans()
    if item.kind == "code":
        return st.none() | st.integers(0, 254)
    if item.kind == "photo":
        return st.binary(max_size=item.length - 2)
    return st.binary(min_size=item.length, max_size=item.length).filter(
        lambda b: b.count(0) != len(b) and b.count(0xFF) != len(b)
    ) | st.just(b"")


item_and_value = st.sampled_from(ITEMS).flatmap(lambda i: st.tuples(st.just(i), value_strategy(i)))


# --- vectors from live traces (docs/reference/healthcard-layout.md §2.1, §3.6) ------------------


@pytest.mark.parametrize(
    ("code", "tlv_hex", "value"),
    [
        ("FKSJ", "0604 20130401", "20130401"),
        ("KYXQ", "0704 2011FFFF", "2011"),
        ("YYCSDM", "3903 210000", "210000"),
        ("MZ", "0D01 01", "01"),
        ("FKJGMC", "031E CAAFBCD2D7AFCAD0CEC0C9FABED6" + "00" * 16, "石家庄市卫生局"),
    ],
)
def test_trace_vectors(code: str, tlv_hex: str, value: str) -> None:
    raw = bytes.fromhex(tlv_hex.replace(" ", ""))
    it = model.item(code)
    assert model.decode_tlv(it, raw) == value
    assert model.encode_tlv(it, value) == raw


def test_trace_ee01_starts_with_gbk_hospital_name() -> None:
    it = model.item(64)
    raw = bytes.fromhex("C8CBC3F1D2BDD4BA") + bytes(62)
    assert model.decode_item(it, raw) == "人民医院"


def test_cn_padding_and_empty_values() -> None:
    it = model.item("FKJGDM")  # cn11, up to 22 digits
    assert model.encode_item(it, "12345") == bytes.fromhex("12345F") + b"\xff" * 8
    assert model.decode_item(it, b"\xff" * 11) == ""
    assert model.decode_item(model.item("XM"), bytes(30)) == ""
    assert model.decode_item(model.item("XM"), b"\xff" * 30) == ""
    assert model.decode_item(model.item("FKJGZS"), bytes(180)) == b""


def test_b_types() -> None:
    assert model.encode_item(model.item("XCBZ"), True) == b"\x01"
    assert model.encode_item(model.item("XCBZ"), False) == b"\x00"
    assert model.encode_item(model.item("XCBZ"), None) == b"\xff"
    assert model.decode_item(model.item("XB"), b"\x02") == 2
    assert model.decode_item(model.item("XB"), b"\xff") is None
    assert model.encode_item(model.item("ZYJLBS"), True) == b"\x00"  # 00 = record valid
    assert model.decode_item(model.item("ZYJLBS"), b"\xff") is False


def test_photo_length_prefix() -> None:
    it = model.item("ZHAOPIAN")
    raw = model.encode_item(it, b"\xff\xd8abc\xff\xd9")
    assert raw[:9] == bytes.fromhex("0007FFD8616263FFD9")
    assert len(raw) == 3074 and raw[9:] == bytes(3065)
    assert model.decode_item(it, raw[:9]) == b"\xff\xd8abc\xff\xd9"  # partial read is enough
    assert model.decode_item(it, b"\xff\xff" + bytes(10)) == b""  # erased file
    with pytest.raises(model.DecodeError, match="3073 exceeds 3072"):
        model.decode_item(it, b"\x0c\x01" + bytes(3072))
    with pytest.raises(model.EncodeError, match="limit is 3072"):
        model.encode_item(it, bytes(3073))


def test_decimal_uses_nibble_a() -> None:
    it = model.item("ZYZFY")  # inpatient total cost, cn5
    assert model.encode_item(it, "1234.5") == bytes.fromhex("1234A5FFFF")
    assert model.decode_item(it, bytes.fromhex("1234A5FFFF")) == "1234.5"
    with pytest.raises(model.DecodeError):
        model.decode_item(model.item("CSRQ"), bytes.fromhex("2011A1FF"))
    with pytest.raises(model.EncodeError):
        model.encode_item(it, "1.2.3")


def test_rare_gbk_characters_round_trip() -> None:
    it = model.item("XM")
    for name in ("张喆", "王堃", "李赟", "欧阳娜娜"):
        assert model.decode_item(it, model.encode_item(it, name)) == name


def test_character_outside_gbk_names_field_and_code_point() -> None:
    with pytest.raises(model.EncodeError) as exc:
        model.encode_item(model.item("XM"), "王䶮")
    text = str(exc.value)
    assert "U+4DAE" in text and "XM" in text and "name" in text and "item 11" in text


def test_overlong_chinese_text_names_field_and_limit() -> None:
    value = "欧" * 16  # 32 bytes in GBK; XM holds 30
    with pytest.raises(model.EncodeError) as exc:
        model.encode_item(model.item("XM"), value)
    err = exc.value
    assert (err.item_no, err.code, err.name, err.value) == (11, "XM", "name", value)
    assert "32 bytes" in str(err) and "limit is 30" in str(err)
    assert model.encode_item(model.item("XM"), "欧" * 15)  # exactly 30 bytes fits


def test_tlv_errors() -> None:
    it = model.item("KLB")
    with pytest.raises(model.DecodeError, match="tag 02, expected 01"):
        model.decode_tlv(it, b"\x02\x01\x31")
    with pytest.raises(model.DecodeError):
        model.decode_tlv(it, b"\x01\x02\x31\x32")  # longer than the item
    with pytest.raises(model.LayoutError):
        model.encode_tlv(model.item(64), "x")  # EE items are not TLV
    # a shorter record is accepted and padded like the fixed-length form
    assert model.decode_tlv(model.item("XM"), b"\x0b\x04" + "李四".encode("gbk")) == "李四"


def test_dates() -> None:
    assert model.date_to_cn(date(2024, 1, 5)) == "20240105"
    assert model.cn_to_date("20240229") == date(2024, 2, 29)
    assert model.datetime_to_cn(datetime(2024, 3, 5, 9, 30, 7)) == "20240305093007"
    assert model.cn_to_datetime("20240305093007") == datetime(2024, 3, 5, 9, 30, 7)
    for bad in ("20230229", "2011", "2024013", "abcdefgh"):
        with pytest.raises(model.ValidationError):
            model.cn_to_date(bad)
    with pytest.raises(model.ValidationError):
        model.cn_to_datetime("20240305246000")


def test_dll_strings() -> None:
    assert model.to_dll_string(model.item("ZYHZSJBZ"), True) == "01"
    assert model.from_dll_string(model.item("ZYHZSJBZ"), "00") is False
    assert model.to_dll_string(model.item("CSRQ"), "19850317") == "19850317"
    with pytest.raises(model.EncodeError):
        model.from_dll_string(model.item("ZYHZSJBZ"), "zz")
    with pytest.raises(model.EncodeError):
        model.from_dll_string(model.item("ZYHZSJBZ"), "02")


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=400)
@given(item_and_value)
def test_every_codec_round_trips(pair: tuple[Item, Any]) -> None:
    it, value = pair
    raw = model.encode_item(it, value)
    assert len(raw) == it.length
    assert model.decode_item(it, raw) == value
    if it.tag is not None:
        tlv = model.encode_tlv(it, value)
        assert tlv[:2] == bytes((it.tag, it.length))
        assert model.decode_tlv(it, tlv) == value
    if it.fmt != "b" or it.kind in ("flag", "code", "index_flag"):
        assert model.from_dll_string(it, model.to_dll_string(it, value)) == value


@settings(max_examples=300)
@given(
    st.sampled_from([i for i in ITEMS if i.fmt == "ans"]).flatmap(
        lambda i: st.tuples(st.just(i), gbk_text(i.length))
    )
)
def test_ans_length_counts_encoded_bytes(pair: tuple[Item, str]) -> None:
    it, text = pair
    assert model.encode_item(it, text)[: len(text.encode("gbk"))] == text.encode("gbk")


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=500)
@given(st.sampled_from(ITEMS), json_like | st.text(max_size=300))
def test_invalid_values_raise_only_model_errors(it: Item, value: object) -> None:
    try:
        raw = model.encode_item(it, value)
    except model.EncodeError as exc:
        assert exc.item is it and exc.value is value
        return
    assert len(raw) == it.length


@settings(max_examples=500)
@given(st.sampled_from(ITEMS), st.binary(max_size=3100))
def test_arbitrary_bytes_decode_or_raise_decode_error(it: Item, raw: bytes) -> None:
    for decode in (model.decode_item, model.decode_tlv):
        try:
            decode(it, raw)
        except model.DecodeError as exc:
            assert exc.item is it
        except model.LayoutError:
            assert decode is model.decode_tlv and it.tag is None


@settings(max_examples=200)
@given(st.sampled_from(ITEMS), json_like | st.text(max_size=40))
def test_validation_collects_instead_of_raising(it: Item, value: object) -> None:
    errors = model.item_errors(it, value)
    assert all(isinstance(e, model.ValidationError) and e.item is it for e in errors)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_whole_record_files_round_trip(data: st.DataObject) -> None:
    for cls in (
        model.InpatientRecord,
        model.OutpatientRecord,
        model.AllergyEntry,
        model.ImmunizationEntry,
        model.Photo,
    ):
        values = {s.field: data.draw(value_strategy(s.item), label=s.field) for s in cls.slots()}
        record = cls(**values)
        raw = record.to_bytes()
        assert len(raw) == cls.byte_size()
        assert cls.from_bytes(raw) == record


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_record_files_round_trip(data: st.DataObject) -> None:
    for cls in (
        model.IssuerData,
        model.HolderData,
        model.Contacts,
        model.ClinicalBasics,
        model.InpatientIndex,
        model.OutpatientIndex,
    ):
        values = {s.field: data.draw(value_strategy(s.item), label=s.field) for s in cls.slots()}
        record = cls(**values)
        records = record.to_records()
        assert [n for n, _ in records] == list(range(1, len(records) + 1))
        assert cls.from_records(dict(records)) == record
        assert cls.from_json(record.to_json("code"), keys="code") == record
        assert cls.from_json(record.to_json("name")) == record


json_keys = st.sampled_from(["XM", "name", "XB", "sex", "CSRQ", "SFZH", "bogus", "ZYJLBS1"])


@settings(max_examples=300)
@given(st.dictionaries(json_keys | st.text(max_size=8), json_like, max_size=4))
def test_arbitrary_json_raises_only_schema_errors(data: dict[str, object]) -> None:
    for build in (
        model.HolderData.from_json,
        model.InpatientIndex.from_json,
        model.CardData.from_json,
    ):
        try:
            value = build(data)
        except model.SchemaError:
            continue
        assert all(isinstance(e, model.ValidationError) for e in value.validate())
