"""Typed per-file dataclasses, whole-card data, JSON in/out and the sample resident."""

from __future__ import annotations

import dataclasses
import json
import time
import typing

import pytest

from healthcard_apdu import model
from healthcard_apdu.model import files as files_module
from healthcard_apdu.model.base import FileValue

CLASSES = sorted(set(model.FILE_CLASSES.values()), key=lambda c: c.LAYOUT)


@pytest.fixture(scope="module")
def card() -> model.CardData:
    return model.sample_resident()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_fields_follow_the_item_table(cls: type[FileValue]) -> None:
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    items = model.layout_items(cls.LAYOUT)
    expected: list[str] = []
    for it in items:
        if it.kind == "index_flag":
            count = model.files_of_layout(cls.LAYOUT)[0].record_count or 0
            expected += [f"{it.name}_{n}" for n in range(1, count + 1)]
        else:
            expected.append(it.name)
    assert [f.name for f in fields] == expected
    hints = typing.get_type_hints(cls, vars(files_module))
    by_field = {s.field: s.item for s in cls.slots()}
    types = {
        "str": str,
        "bytes": bytes,
        "bool": bool,
        "bool | None": bool | None,
        "int | None": int | None,
    }
    for f in fields:
        assert hints[f.name] == types[model.value_type_name(by_field[f.name])], f.name
        assert f.default == model.empty_value(by_field[f.name])
    assert not set(expected) & set(dir(FileValue)), "a field shadows a FileValue method"
    assert cls().is_empty()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cls().__setattr__(expected[0], None)


def test_every_layout_has_a_class() -> None:
    assert set(model.FILE_CLASSES) == set(model.LAYOUTS)
    assert model.file_class("DF03/EE02") is model.InpatientRecord
    assert model.file_class("inpatient_2") is model.InpatientRecord
    assert model.file_class("DF03/ED") is model.OutpatientRecord


def test_sample_resident_is_valid_and_complete(card: model.CardData) -> None:
    assert card.validate() == []
    assert card.holder.name == "李堃" and card.contacts.contact_name_1 == "王赟"
    sfzh = card.holder.resident_id_number
    assert model.id_check_digit(sfzh[:17]) == sfzh[17]
    assert card.issuer.card_number == sfzh
    assert len(card.allergies.entries) == 1 and card.immunizations.entries
    assert card.inpatient[0] is not None and card.outpatient[0] is not None
    assert card.inpatient_index.to_records() == [(1, b"\x00"), (2, b"\xff"), (3, b"\xff")]
    assert card.outpatient_index.outpatient_record_valid_1 is True
    photo = card.photo.photo_jpeg
    assert photo[:2] == b"\xff\xd8" and photo[-2:] == b"\xff\xd9" and len(photo) <= 3072


def test_file_contents_cover_every_ef_once(card: model.CardData) -> None:
    contents = card.file_contents()
    assert [ef.path for ef, _ in contents] == [e.path for e in model.EFS]
    empty = [ef.path for ef, content in contents if content is None]
    assert empty == ["DF03/EE02", "DF03/EE03", "DF03/ED02", "DF03/ED03", "DF03/ED04", "DF03/ED05"]


@pytest.mark.parametrize("keys", ["name", "code"])
def test_card_json_round_trip(card: model.CardData, keys: typing.Literal["name", "code"]) -> None:
    data = card.to_json(keys)
    text = json.dumps(data, ensure_ascii=False)
    assert model.CardData.from_json(json.loads(text), keys=keys) == card
    assert model.CardData.from_json(json.loads(text)) == card  # auto-detected


def test_json_key_styles(card: model.CardData) -> None:
    by_code = card.to_json("code")
    assert by_code["DDF1EF06"] == {
        "XM": "李堃",
        "XB": 1,
        "MZ": "01",
        "CSRQ": "19850317",
        "SFZH": "110105198503171231",
    }
    assert list(by_code["DF02EF07"][0]) == ["GMWZMC", "GMFY"]
    assert by_code["DF03EE"][1] is None
    by_name = card.to_json("name")
    assert by_name["holder"]["birth_date"] == "19850317"
    assert by_name["issuer"]["issuer_certificate"] == card.issuer.issuer_certificate.hex().upper()
    assert model.sample_resident_json() == card.to_json("name", omit_empty=True)
    assert "payment_method_3" in by_name["card_contact"]


def test_from_json_accepts_mixed_keys_and_aliases() -> None:
    entry = model.AllergyEntry.from_json({"GMWZMC": "花粉", "GMWZFY": "喷嚏"})
    assert entry == model.AllergyEntry(allergen_name="花粉", allergic_reaction="喷嚏")
    holder = model.HolderData.from_json({"XM": "张三", "birth_date": "19900101"})
    assert (holder.name, holder.birth_date) == ("张三", "19900101")
    index = model.InpatientIndex.from_json({"ZYJLBS2": True})
    assert index.inpatient_record_valid_2 and not index.inpatient_record_valid_1


@pytest.mark.parametrize(
    ("data", "keys", "match"),
    [
        ({"XINGMING": "张三"}, "auto", "unknown"),
        ({"name": "张三"}, "code", "unknown"),
        ({"XM": "张三"}, "name", "unknown"),
        ({"XM": "张三", "name": "李四"}, "auto", "twice"),
        ({"XB": "1"}, "auto", "integer"),
        ({"CSRQ": 19900101}, "auto", "string"),
        ({"SFZH": None}, "auto", "string"),
    ],
)
def test_from_json_errors(data: dict[str, object], keys: model.KeyStyle, match: str) -> None:
    with pytest.raises(model.SchemaError, match=match):
        model.HolderData.from_json(data, keys=keys)


def test_from_json_type_errors_for_b_items() -> None:
    with pytest.raises(model.SchemaError, match="hex"):
        model.IssuerData.from_json({"FKJGZS": "not hex"})
    with pytest.raises(model.SchemaError, match="true, false or null"):
        model.ClinicalBasics.from_json({"XCBZ": 1})
    with pytest.raises(model.SchemaError, match="true or false"):
        model.InpatientIndex.from_json({"ZYJLBS1": None})
    with pytest.raises(model.SchemaError):
        model.CardData.from_json({"holder": []})
    with pytest.raises(model.SchemaError):
        model.CardData.from_json({"DF03EE": {}})
    with pytest.raises(model.SchemaError, match="unknown file key"):
        model.CardData.from_json({"DDF1EF09": {}})
    with pytest.raises(model.SchemaError, match="twice"):
        model.CardData.from_json({"holder": {}, "DDF1EF06": {}})


def test_tlv_records_of_a_file(card: model.CardData) -> None:
    records = dict(card.issuer.to_records())
    assert sorted(records) == list(range(1, 11))
    assert records[10] == bytes.fromhex("3903110000")  # YYCSDM, read by tag 0x39
    assert records[1] == b"\x01\x011"  # KLB "1"
    assert all(len(r) == model.ef("DDF1/EF05").record_lengths()[n] for n, r in records.items())
    assert model.IssuerData.from_records(records) == card.issuer
    partial = model.IssuerData.from_records({10: records[10]})
    assert partial.application_city_code == "110000" and partial.issuer_name == ""
    with pytest.raises(model.LayoutError):
        card.issuer.to_bytes()
    with pytest.raises(model.LayoutError):
        card.inpatient_index.to_bytes()


def test_transparent_record_files(card: model.CardData) -> None:
    record = card.inpatient[0]
    assert record is not None
    raw = record.to_bytes()
    assert len(raw) == 1893 and len(record.data_bytes()) == 1639
    assert raw[80:84] == bytes.fromhex("20230910")  # admission date at offset 80
    assert model.InpatientRecord.from_bytes(raw) == record
    assert model.InpatientRecord.from_bytes(raw[:1639]) == record  # unsigned data part
    with pytest.raises(model.DecodeError, match="1893"):
        model.InpatientRecord.from_bytes(raw[:100])
    assert model.InpatientRecord.decode_range(80, raw[80:86]) == {
        "admission_date": "20230910",
        "admission_count": "1",
    }
    pos, data = model.InpatientRecord.encode_range(
        {"discharge_date": "20230918", "rescue_count": "0", "rescue_success_count": "0"}
    )
    assert (pos, data) == (1005, raw[1005:1013])
    with pytest.raises(model.LayoutError, match="adjacent"):
        model.InpatientRecord.encode_range({"admission_date": "20230910", "bed_fee": "1"})
    with pytest.raises(model.LayoutError):
        model.InpatientRecord.encode_range({"no_such_item": "1"})
    assert card.outpatient[0] is not None and len(card.outpatient[0].to_bytes()) == 3267
    with pytest.raises(model.LayoutError):
        model.InpatientRecord.from_records({})


def test_photo_file(card: model.CardData) -> None:
    raw = card.photo.to_bytes()
    size = int.from_bytes(raw[:2], "big")
    assert len(raw) == 3074 and raw[2 : 2 + size] == card.photo.photo_jpeg
    assert model.Photo.from_bytes(raw[: 2 + size]) == card.photo


def test_cyclic_files(card: model.CardData) -> None:
    imms = card.immunizations
    records = imms.to_records()
    assert [n for n, _ in records] == [1, 2] and all(len(r) == 24 for _, r in records)
    assert records[0][1][20:] == bytes.fromhex("20210415")  # date at offset 20 of the record
    blank = bytes(20) + b"\xff" * 4
    assert model.Immunizations.from_records({**dict(records), 3: blank}) == imms
    assert imms.append_order() == tuple(reversed(imms.entries))
    with pytest.raises(model.SchemaError, match="at most 3"):
        model.Allergies((model.AllergyEntry(),) * 4)
    with pytest.raises(model.SchemaError):
        model.Allergies.from_json({"GMWZMC": "x"})


def test_card_record_slots() -> None:
    card = model.CardData(inpatient=(None, model.InpatientRecord(admission_date="20240101")))
    assert len(card.inpatient) == 3
    assert card.inpatient_index.to_records() == [(1, b"\xff"), (2, b"\x00"), (3, b"\xff")]
    with pytest.raises(model.SchemaError):
        model.CardData(inpatient=(None,) * 4)
    with pytest.raises(model.SchemaError):
        model.CardData(outpatient=(model.InpatientRecord(),))  # type: ignore[arg-type]


def test_card_cross_file_rules(card: model.CardData) -> None:
    broken = dataclasses.replace(
        card,
        issuer=card.issuer.replace(card_number="110105198503170000", issue_date="20240115"),
        card_contact=card.card_contact.replace(card_expiry_date="20200101"),
        id_documents=card.id_documents.replace(id_document_number="110105198503171232"),
    )
    errors = broken.validate()
    assert {(e.context, e.code) for e in errors} == {
        ("DDF1/EF05", "KH"),
        ("DDF1/EF08", "KYXQ"),
        ("DF01/EF08", "ZJHM"),
    }
    assert all(e.context and e.context in str(e) for e in errors)
    assert [str(e) for e in model.validate(broken)] == [str(e) for e in errors]


def test_errors_in_records_name_the_file(card: model.CardData) -> None:
    bad = model.OutpatientRecord(visit_datetime="20241301000000")
    errors = dataclasses.replace(card, outpatient=(None, bad)).validate()
    assert [(e.context, e.code) for e in errors] == [("DF03/ED02", "JZRQSJ")]


def test_get_by_any_key(card: model.CardData) -> None:
    holder = card.holder
    assert holder.get("XM") == holder.get("name") == holder.get(11) == "李堃"
    assert card.inpatient_index.get("ZYJLBS1") is True
    with pytest.raises(model.LayoutError):
        holder.get("KH")


def test_encoding_a_whole_card_is_fast(card: model.CardData) -> None:
    contents = [c for _, c in card.file_contents() if c is not None]
    rounds = 100
    start = time.perf_counter()
    for _ in range(rounds):
        for content in contents:
            if isinstance(content, model.CyclicFile) or content.structure() != "transparent":
                content.to_records()
            else:
                content.to_bytes()
    per_file = (time.perf_counter() - start) / (rounds * len(contents))
    assert per_file < 1e-3, f"{per_file * 1e3:.3f} ms per file"


def test_sam_public_files() -> None:
    info = model.SamPublicInfo.from_bytes(bytes(range(14)))
    assert info.serial_number == bytes(range(10)) and info.issuer_fci == 13
    assert info.to_bytes() == bytes(range(14))
    term = model.SamTerminalInfo.from_bytes(bytes.fromhex("110100000001"))
    assert term.terminal_number == "110100000001" and term.province == 0x11
    app = model.SamAppInfo.from_bytes(bytes(17) + bytes.fromhex("2024010120340101"))
    assert (app.start_date, app.expiry_date) == ("20240101", "20340101")
    assert app.to_bytes()[17:] == bytes.fromhex("2024010120340101")
    with pytest.raises(model.DecodeError, match="14 bytes"):
        model.SamPublicInfo.from_bytes(b"\x00")


def test_decoded_values_are_the_same_objects_their_constructor_makes() -> None:
    """Decoders fill the instance directly (no frozen-dataclass __init__): same value, same
    behaviour (equality, hash, replace, frozenness)."""
    sample = model.sample_resident()
    record = next(r for r in sample.inpatient if r is not None)
    decoded = type(record).from_bytes(record.to_bytes())
    built = type(record)(**decoded.values())
    assert decoded == built and hash(decoded) == hash(built) and repr(decoded) == repr(built)
    assert vars(decoded) == vars(built)
    assert decoded.replace(medical_record_number="42") == built.replace(medical_record_number="42")
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.medical_record_number = "1"  # type: ignore[misc]
    issuer = model.IssuerData.from_records(dict(sample.issuer.to_records()))
    assert issuer == sample.issuer and vars(issuer) == vars(sample.issuer)
