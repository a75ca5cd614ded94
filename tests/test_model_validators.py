"""Validators: GB 11643 resident IDs, GB/T 2260 region codes, dates, phones, code tables."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu import model


def iso7064_mod11_2(first17: str) -> str:
    """Independent check-character computation: weights 2^(18-i) mod 11, ISO 7064 MOD 11-2."""
    total = sum(int(d) * pow(2, 17 - i, 11) for i, d in enumerate(first17))
    check = (12 - total % 11) % 11
    return "X" if check == 10 else str(check)


def test_published_example_check_character() -> None:
    # The example number printed in GB 11643-1999 and countless tutorials.
    assert model.id_check_digit("11010519491231002") == "X"
    assert model.validate_resident_id("11010519491231002X") == date(1949, 12, 31)
    assert model.resident_id_sex("11010519491231002X") == 2


@given(st.text("0123456789", min_size=17, max_size=17))
def test_check_digit_matches_iso7064(first17: str) -> None:
    assert model.id_check_digit(first17) == iso7064_mod11_2(first17)


valid_ids = st.tuples(
    st.sampled_from(sorted(model.PROVINCE_CODES)),
    st.integers(0, 9999),
    st.dates(min_value=date(1900, 1, 1), max_value=date.today()),
    st.integers(0, 999),
).map(lambda t: f"{t[0]}{t[1]:04d}{t[2]:%Y%m%d}{t[3]:03d}")


@given(valid_ids, st.sampled_from("0123456789X"))
def test_only_the_right_check_character_passes(first17: str, check: str) -> None:
    number = first17 + check
    if check == iso7064_mod11_2(first17):
        assert model.validate_resident_id(number).strftime("%Y%m%d") == first17[6:14]
    else:
        with pytest.raises(model.ValidationError, match="check character"):
            model.validate_resident_id(number)


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("11010519491231002x", "check character"),  # lower-case x
        ("110105194912310", "17 digits"),  # old 15-digit form
        ("00010519491231002X", "province"),
        ("110105194902300023", "birth date"),
        ("1101051949123100AX", "17 digits"),
    ],
)
def test_invalid_resident_ids(number: str, reason: str) -> None:
    with pytest.raises(model.ValidationError, match=reason) as exc:
        model.validate_resident_id(number)
    assert exc.value.code == "SFZH" and exc.value.value == number
    assert "resident_id_number" in str(exc.value) and number in str(exc.value)


def test_future_birth_date_is_rejected() -> None:
    tomorrow = date.today() + timedelta(days=1)
    first17 = f"110105{tomorrow:%Y%m%d}001"
    with pytest.raises(model.ValidationError, match="future"):
        model.validate_resident_id(first17 + iso7064_mod11_2(first17))


@pytest.mark.parametrize("code", ["110000", "210000", "130185", "820000", "710000"])
def test_region_codes_ok(code: str) -> None:
    model.validate_region_code(code)
    assert model.item_errors(model.item("YYCSDM"), code) == []


@pytest.mark.parametrize("code", ["000000", "990000", "11000", "1100001", "16abcd", "100000"])
def test_region_codes_bad(code: str) -> None:
    with pytest.raises(model.ValidationError) as exc:
        model.validate_region_code(code)
    assert exc.value.code == "YYCSDM"


@pytest.mark.parametrize("phone", ["13800138000", "010-65550123", "+86 138 0013 8000", "12345"])
def test_phones_ok(phone: str) -> None:
    model.validate_phone(phone)


@pytest.mark.parametrize(
    "phone", ["1234", "138-", "-138001", "138--0013", "1380013800O", "一二三四五"]
)
def test_phones_bad(phone: str) -> None:
    with pytest.raises(model.ValidationError, match="phone"):
        model.validate_phone(phone)


def test_item_errors_by_kind() -> None:
    def codes(item_code: str, value: object) -> list[str | None]:
        return [e.code for e in model.item_errors(model.item(item_code), value)]

    assert codes("CSRQ", "19850317") == []
    assert codes("CSRQ", "19850230") == ["CSRQ"]
    assert codes("KYXQ", "2011") == ["KYXQ"]  # the year-only value seen in a trace
    assert codes("JZRQSJ", "20240305093000") == []
    assert codes("JZRQSJ", "20240305253000") == ["JZRQSJ"]
    assert codes("MZ", "01") == [] and codes("MZ", "57") == ["MZ"]
    assert codes("XB", 9) == [] and codes("XB", 3) == ["XB"]
    assert codes("HYZK", "20") == [] and codes("HYZK", "2") == ["HYZK"]
    assert codes("AQM", "527") == [] and codes("AQM", "52") == ["AQM"]
    assert codes("XM", "李\n四") == ["XM"]
    assert codes("ZHAOPIAN", b"GIF89a") == ["ZHAOPIAN"]
    assert codes("XM", "王䶮") == ["XM"]  # encoding errors are collected too
    for empty_ok in (("XM", ""), ("XB", None), ("FKJGZS", b""), ("XCBZ", None), ("CSRQ", "")):
        assert codes(*empty_ok) == []


def test_errors_name_item_code_english_name_and_value() -> None:
    [err] = model.item_errors(model.item("CSRQ"), "19850230")
    text = str(err)
    assert "CSRQ" in text and "birth_date" in text and "19850230" in text
    assert (err.item_no, err.name, err.value) == (14, "birth_date", "19850230")


def test_code_tables() -> None:
    eth = model.code_table("ethnicity")
    assert eth.codes[:56] == tuple(f"{n:02d}" for n in range(1, 57))
    assert set(eth.codes[56:]) == {"97", "98"}
    assert eth.label("01") == "汉族" and eth.label("56", "en") == "Jino"
    assert len({e.zh for e in eth.entries}) == len(eth.entries)
    sex = model.code_table("sex")
    assert sex.codes == (0, 1, 2, 9) and 1 in sex and "1" not in sex and True not in sex
    assert model.code_table("abo_blood_group").label(4, "en") == "AB"
    assert model.code_table("marital_status").codes[:2] == ("10", "20")
    with pytest.raises(model.LayoutError):
        sex.label(5)
    for table in model.CODE_TABLES.values():
        assert len(set(table.codes)) == len(table.codes), table.name


def test_holder_cross_checks() -> None:
    holder = model.HolderData(
        name="李堃",
        sex=2,
        ethnicity="01",
        birth_date="19850318",
        resident_id_number="110105198503171231",
    )
    errors = holder.validate()
    assert sorted(e.code for e in errors if e.code) == ["CSRQ", "XB"]
    assert all("SFZH" in e.reason for e in errors)
    assert holder.replace(sex=1, birth_date="19850317").validate() == []


def test_validation_reports_all_errors_at_once() -> None:
    contact = model.CardContact(
        card_expiry_date="20241301", phone_1="abc", phone_2="12", payment_method_1="9"
    )
    assert [e.code for e in contact.validate()] == ["KYXQ", "BRDH1", "BRDH2", "YLFYZFFS1"]


def test_inpatient_cross_checks() -> None:
    record = model.InpatientRecord(
        admission_date="20230910",
        discharge_date="20230901",
        rescue_count="1",
        rescue_success_count="2",
    )
    assert sorted(str(e.code) for e in record.validate()) == ["CYRQ", "ZYHZQJCGCS"]
