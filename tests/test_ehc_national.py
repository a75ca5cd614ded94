"""National e-card derivation against the published vectors, the person model, the inverse
and the validity block."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ehc_support import GUIFUTONG, LI_KUN, SPEC_SECURITY_KEY, spec_keyset, spec_platform
from healthcard_apdu.crypto import BlockCipher, diversify
from healthcard_apdu.ehc import (
    CHINA_STANDARD_TIME,
    ID_TYPES,
    EhcInputError,
    Person,
    PlatformKeys,
    QrRejected,
    card_id_type,
    decode_validity_time,
    diversification_factor,
    ehc_id_type,
    encode_validity_time,
    id_block,
    master_index,
    person_from_card,
)
from healthcard_apdu.ehc.national import decode_id_block, validity_epoch
from healthcard_apdu.model import CardData, code_table
from healthcard_apdu.model.card_data import sample_resident
from healthcard_apdu.security import (
    KeySet,
    MasterKey,
    SoftwareSecurityModule,
    UnknownKeyRole,
    UnsupportedOperation,
)

VECTORS = Path(__file__).resolve().parent.parent / "test_vectors" / "ehc" / "national.json"


def _module(security: bytes | None = None, protection: bytes | None = None) -> PlatformKeys:
    keys: dict[str, MasterKey] = {}
    if security is not None:
        keys["EHC_SECURITY"] = MasterKey.create(BlockCipher.SM4, security)
    if protection is not None:
        keys["EHC_PROTECTION"] = MasterKey.create(BlockCipher.SM4, protection)
    return PlatformKeys(SoftwareSecurityModule(KeySet(BlockCipher.SM4, keys)))


def _run(operation: str, inputs: dict[str, Any]) -> str:
    used = set(inputs)
    if operation == "diversification_factor":
        return diversification_factor(bytes.fromhex(inputs["master_index"])).hex()
    if operation == "user_key":
        # the spec's user key is the card diversification of docs/reference/cos-crypto.md §1.9
        return diversify(
            BlockCipher.SM4, bytes.fromhex(inputs["security_key"]), bytes.fromhex(inputs["factor"])
        ).hex()
    if operation == "master_index":
        return master_index(inputs["id_type"], inputs["id_number"], inputs["name"]).hex()
    if operation == "ecard_id":
        keys = _module(security=bytes.fromhex(inputs["security_key"]))
        block = id_block(inputs["id_type"], inputs["id_number"])
        assert block.hex().upper() == inputs["id_block"]
        mindex = bytes.fromhex(inputs["master_index"])
        ehc_id = keys.user_key(mindex).encrypt(block).hex()
        assert keys.identity_of(ehc_id, mindex) == (inputs["id_type"], inputs["id_number"])
        return ehc_id
    if operation == "person_ecard_id":
        keys = _module(security=bytes.fromhex(inputs["security_key"]))
        person = Person(id_type=inputs["id_type"], id_number=inputs["id_number"],
                        name=inputs["name"])
        return keys.ecard_id(person)
    if operation == "validity_block":
        keys = _module(protection=bytes.fromhex(inputs["protection_key"]))
        when = dt.datetime.fromisoformat(inputs["time_utc8"])
        block = keys.validity_block(when)
        assert keys.validity_expiry(block) == when
        return block
    raise AssertionError(f"unknown operation {operation!r} ({sorted(used)})")


def _vectors() -> list[Any]:
    document = json.loads(VECTORS.read_text("utf-8"))
    assert document["kind"] == "ehc_national"
    return [pytest.param(v, id=v["id"]) for v in document["vectors"]]


@pytest.mark.parametrize("vector", _vectors())
def test_published_vector(vector: dict[str, Any]) -> None:
    document = json.loads(VECTORS.read_text("utf-8"))
    assert vector["source"] in document["sources"]
    assert _run(vector["operation"], vector["inputs"]).upper() == vector["expected"]


def test_every_vector_source_is_named_and_regressions_marked() -> None:
    document = json.loads(VECTORS.read_text("utf-8"))
    for vector in document["vectors"]:
        assert vector["source"] in document["sources"]
        assert vector.get("regression", False) == (vector["source"] == "DERIVED")


def test_platform_derives_the_hsm_vector_end_to_end() -> None:
    platform = spec_platform()
    assert platform.master_index(GUIFUTONG) == (
        "A59E97C486E8F1C29F46EA87A515E61DB1EECF23076B4993F0E0C5CBEBF909C8"
    )
    ehc_id = platform.ecard_id(GUIFUTONG)
    assert ehc_id == "37B098FC786EE122F2A8D4A1CB4B8DEE382E7813958914F15D3426F89E2E20DD"
    assert platform.identity_of(ehc_id, platform.master_index(GUIFUTONG)) == (
        "01", "110101199211140619"
    )


def test_inverse_with_another_master_index_is_refused() -> None:
    platform = spec_platform()
    ehc_id = platform.ecard_id(GUIFUTONG)
    with pytest.raises(QrRejected) as caught:
        platform.identity_of(ehc_id, platform.master_index(LI_KUN))
    assert caught.value.reason == "identity-mismatch"


def test_ids_differ_per_name_and_per_key() -> None:
    platform = spec_platform()
    renamed = Person(id_type="01", id_number=GUIFUTONG.id_number, name="贵服")
    assert platform.ecard_id(renamed) != platform.ecard_id(GUIFUTONG)
    other = PlatformKeys(SoftwareSecurityModule(KeySet.generate(["EHC_SECURITY"], with_sm2=False)))
    assert other.ecard_id(GUIFUTONG) != platform.ecard_id(GUIFUTONG)


# -- person ----------------------------------------------------------------------------------


def test_id_types_reuse_the_model_table_two_digit() -> None:
    table = code_table("id_document_type")
    for entry in table.entries:
        code = str(entry.code).zfill(2)
        assert ID_TYPES[code].zh == entry.zh and ID_TYPES[code].card_code == entry.code
    assert set(ID_TYPES) == {"01", "02", "03", "04", "05", "06", "07", "08", "99"}
    assert ehc_id_type("1") == "01" and card_id_type("99") == "99"
    with pytest.raises(EhcInputError, match="id_type"):
        card_id_type("08")  # the card's table has no birth certificate


def test_resident_id_fills_birth_date_and_sex() -> None:
    assert GUIFUTONG.birth_date == dt.date(1992, 11, 14)
    assert GUIFUTONG.sex == 1  # 17th digit 1: odd


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"id_type": "1"}, "id_type", "CV02.01.101"),
        ({"id_type": "09"}, "id_type", "CV02.01.101"),
        ({"id_number": "110101199211140618"}, "id_number", "check character"),
        ({"id_number": "11010119921114061"}, "id_number", "17 digits"),
        ({"id_number": "110101299211140619"}, "id_number", "date"),
        ({"id_number": "11010020171225006x"}, "id_number", "upper case"),
        ({"name": ""}, "name", "empty"),
        ({"name": " 贵服通"}, "name", "spaces"),
        ({"name": "贵\x07服通"}, "name", "control"),
        ({"sex": 2}, "sex", "differs"),
        ({"sex": 3}, "sex", "GB/T 2261.1"),
        ({"nation": "57"}, "nation", "GB 3304"),
        ({"birth_date": dt.date(1992, 11, 15)}, "birth_date", "differs"),
        ({"phone": "12"}, "phone", "digits"),
    ],
)
def test_person_errors_name_the_field(fields: dict[str, Any], field: str, words: str) -> None:
    values: dict[str, Any] = {"id_type": "01", "id_number": "110101199211140619",
                              "name": "贵服通", **fields}
    with pytest.raises(EhcInputError) as caught:
        Person(**values)
    assert caught.value.field == field
    assert words in str(caught.value)


def test_other_id_types_need_only_ascii_alphanumerics() -> None:
    passport = Person(id_type="03", id_number="E12345678", name="Zhang San")
    assert passport.birth_date is None and passport.sex is None
    with pytest.raises(EhcInputError, match="id_number"):
        Person(id_type="03", id_number="E1234-5678", name="Zhang San")
    with pytest.raises(EhcInputError, match="at most 30"):
        Person(id_type="99", id_number="A" * 31, name="x")
    assert id_block("99", "A" * 30) == b"99" + b"A" * 30


def test_person_from_platform_mapping_is_lenient() -> None:
    person = Person.from_mapping({"idType": "1", "idNumber": "11010020171225006x",
                                  "name": " 测试 ", "gender": "女", "nation": "1",
                                  "birthday": "2017-12-25", "phone1": "13800138000"})
    assert (person.id_type, person.id_number, person.name) == ("01", "11010020171225006X", "测试")
    assert person.sex == 2 and person.nation == "01" and person.birth_date == dt.date(2017, 12, 25)
    assert Person.from_mapping(person.to_dict()) == person
    with pytest.raises(EhcInputError, match="id_number: is missing"):
        Person.from_mapping({"idType": "01", "name": "x"})


def test_repr_masks_the_id_number() -> None:
    assert "110101199211140619" not in repr(GUIFUTONG)


def test_person_from_the_card_model() -> None:
    card: CardData = sample_resident()
    person = person_from_card(card.holder, card.id_documents, card.card_contact)
    assert person.id_type == "01"
    assert person.id_number == card.holder.resident_id_number
    assert person.name == card.holder.name and person.nation == card.holder.ethnicity
    assert person.phone == card.card_contact.phone_1


# -- validity block --------------------------------------------------------------------------


def test_validity_time_is_bcd_in_china_standard_time() -> None:
    when = dt.datetime(2018, 1, 17, 3, 50, 3, tzinfo=dt.UTC)  # 11:50:03 in UTC+8
    assert encode_validity_time(when).hex().upper() == "20180117115003" + "00" * 9
    assert decode_validity_time(encode_validity_time(when)) == when
    with pytest.raises(EhcInputError, match="expiry"):
        encode_validity_time(dt.datetime(2018, 1, 17))


@given(st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(9998, 12, 30)))
def test_validity_time_round_trips(naive: dt.datetime) -> None:
    when = naive.replace(microsecond=0, tzinfo=CHINA_STANDARD_TIME)
    plain = encode_validity_time(when)
    assert decode_validity_time(plain) == when
    assert validity_epoch(plain) == int(when.timestamp())


@pytest.mark.parametrize(
    "plain_hex",
    [
        "20180117115003" + "00" * 8 + "01",  # non-zero padding
        "2018011711500A" + "00" * 9,  # not BCD
        "20181317115003" + "00" * 9,  # month 13
        "20190229115003" + "00" * 9,  # not a leap year
        "20180117245003" + "00" * 9,  # hour 24
        "19690101000000" + "00" * 9,  # before the epoch
    ],
)
def test_bad_validity_plaintext(plain_hex: str) -> None:
    with pytest.raises(ValueError):
        validity_epoch(bytes.fromhex(plain_hex))


def test_validity_from_another_key_is_bad_validity() -> None:
    ours = spec_platform()
    theirs = PlatformKeys(SoftwareSecurityModule(KeySet.generate(["EHC_PROTECTION"],
                                                                 with_sm2=False)))
    block = theirs.validity_block(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(QrRejected) as caught:
        ours.keys.validity_expiry(block)
    assert caught.value.reason == "bad-validity"


def test_id_block_round_trip_and_refusals() -> None:
    assert decode_id_block(id_block("01", "11010020171225006X")) == ("01", "11010020171225006X")
    for bad in (b"\x00" * 32, b"01" + b"\x00" + b"X" * 29, b"\xff" * 32, b"98ABC".ljust(32, b"\0")):
        with pytest.raises(ValueError):
            decode_id_block(bad)


# -- keys as roles of the security module ----------------------------------------------------


def test_missing_role_is_a_key_error() -> None:
    keys = _module(protection=bytes(16))
    with pytest.raises(UnknownKeyRole, match="EHC_SECURITY"):
        keys.ecard_id(GUIFUTONG)
    with pytest.raises(UnknownKeyRole, match="EHC_SIGNING"):
        keys.public_key()


def test_platform_keys_keep_to_their_use() -> None:
    module = SoftwareSecurityModule(spec_keyset())
    with pytest.raises(UnsupportedOperation, match="diversification"):
        module.data_cipher("EHC_SECURITY")
    with pytest.raises(UnsupportedOperation, match="directly"):
        module.data_cipher("EHC_PROTECTION", factor=bytes(8))
    card_keys = SoftwareSecurityModule(KeySet.generate(["MK_MF"], with_sm2=False))
    with pytest.raises(UnsupportedOperation, match="not a platform data key"):
        card_keys.data_cipher("MK_MF")


def test_security_key_is_the_card_diversification() -> None:
    module = SoftwareSecurityModule(spec_keyset())
    factor = bytes.fromhex("92CDCE45A16799FD")
    block = bytes(range(16))
    uk = diversify(BlockCipher.SM4, SPEC_SECURITY_KEY, factor)
    from healthcard_apdu.crypto import ecb_encrypt

    assert module.data_cipher("EHC_SECURITY", factor=factor).encrypt(block) == (
        ecb_encrypt(BlockCipher.SM4, uk, block)
    )
