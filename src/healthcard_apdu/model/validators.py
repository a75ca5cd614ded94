"""Validators for item values: ID numbers, region codes, dates, phones, code tables.

``item_errors(item, value)`` collects every problem of one value (encoding first, then the
item kind's rules); the ``validate_*`` helpers raise :class:`ValidationError` for one value.
Empty values ("" / b"" / None) are always accepted: the model treats every item as optional.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import cast

from .codec import Value, empty_value, encode_item
from .codetables import code_table
from .dates import parse_date, parse_datetime
from .errors import EncodeError, ValidationError
from .layout import Item
from .layout import item as lookup_item

PROVINCE_CODES = frozenset(
    {
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
        "71",
        "81",
        "82",
    }
)
"""GB/T 2260 province-level prefixes (71 Taiwan, 81 Hong Kong, 82 Macao)."""

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_PHONE = re.compile(r"\+?[0-9]+(?:[- ][0-9]+)*")
_MIN_PHONE_DIGITS = 5


# --- resident ID (GB 11643) -----------------------------------------------------------------


def id_check_digit(first17: str) -> str:
    """GB 11643 ISO 7064 MOD 11-2 check character for the first 17 digits ('0'-'9' or 'X')."""
    if len(first17) != 17 or not (first17.isascii() and first17.isdigit()):
        raise ValidationError(None, first17, "need the first 17 digits of a resident ID")
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def validate_resident_id(value: str, item: Item | None = None) -> date:
    """Check an 18-character resident ID number; returns the birth date it encodes."""
    item = item or lookup_item("SFZH")
    if len(value) != 18 or not (value[:17].isascii() and value[:17].isdigit()):
        raise ValidationError(item, value, "resident ID needs 17 digits and a check character")
    if value[:2] not in PROVINCE_CODES:
        raise ValidationError(item, value, f"resident ID region {value[:6]} has no province")
    try:
        birth = parse_date(item, value[6:14])
    except ValidationError:
        raise ValidationError(item, value, "resident ID birth date is not a date") from None
    if birth > date.today():
        raise ValidationError(item, value, "resident ID birth date is in the future")
    expected = id_check_digit(value[:17])
    if value[17] != expected:
        raise ValidationError(
            item, value, f"check character is {value[17]!r}, expected {expected!r}"
        )
    return birth


def resident_id_sex(value: str) -> int:
    """GB/T 2261.1 sex code encoded by a resident ID: odd 17th digit 1 (male), even 2."""
    return 1 if int(value[16]) % 2 else 2


# --- other value shapes ---------------------------------------------------------------------


def validate_region_code(value: str, item: Item | None = None) -> None:
    """GB/T 2260 shape: six digits with a province-level prefix (11-82)."""
    item = item or lookup_item("YYCSDM")
    if len(value) != 6 or not (value.isascii() and value.isdigit()):
        raise ValidationError(item, value, "region code must be 6 digits")
    if value[:2] not in PROVINCE_CODES:
        raise ValidationError(item, value, f"region code prefix {value[:2]} is not a province")


def validate_date(value: str, item: Item | None = None) -> date:
    """A real calendar date in ``YYYYMMDD`` form."""
    return parse_date(item, value)


def validate_phone(value: str, item: Item | None = None) -> None:
    """Digits with an optional leading '+' and single '-' or ' ' separators (5+ digits)."""
    item = item or lookup_item("BRDH1")
    if not _PHONE.fullmatch(value) or not value.isascii():
        raise ValidationError(item, value, "phone must be digits, optional leading +, - or space")
    if sum(c.isdigit() for c in value) < _MIN_PHONE_DIGITS:
        raise ValidationError(item, value, f"phone needs at least {_MIN_PHONE_DIGITS} digits")


def _check_text(item: Item, value: str) -> None:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValidationError(item, value, "text contains control characters")


def _check_numeric_text(item: Item, value: str) -> None:
    if len(value) != item.length or not (value.isascii() and value.isdigit()):
        raise ValidationError(item, value, f"must be exactly {item.length} digits")


def _check_code(item: Item, value: Value) -> None:
    if item.table is None:
        return
    table = code_table(item.table)
    if value not in table:
        codes = ", ".join(str(c) for c in table.codes)
        raise ValidationError(item, value, f"not a code of table {table.name} ({codes})")


def _check_photo(item: Item, value: Value) -> None:
    is_jpeg = isinstance(value, bytes) and value[:2] == b"\xff\xd8" and value[-2:] == b"\xff\xd9"
    if not is_jpeg:
        raise ValidationError(item, value, "photo must be a JPEG (FFD8 ... FFD9)")


_KIND_CHECKS: dict[str, Callable[[Item, Value], object]] = {
    "text": lambda i, v: _check_text(i, str(v)),
    "numeric_text": lambda i, v: _check_numeric_text(i, str(v)),
    "phone": lambda i, v: validate_phone(str(v), i),
    "id_number": lambda i, v: validate_resident_id(str(v), i),
    "date": lambda i, v: parse_date(i, v),
    "datetime": lambda i, v: parse_datetime(i, v),
    "code": _check_code,
    "region": lambda i, v: validate_region_code(str(v), i),
    "photo": _check_photo,
}


def item_errors(item: Item, value: object) -> list[ValidationError]:
    """All problems of one item value (empty list when valid)."""
    try:
        encode_item(item, value)
    except EncodeError as exc:
        return [exc]
    if value == empty_value(item) or value in ("", b"", None):
        return []
    check = _KIND_CHECKS.get(item.kind)
    if check is None:
        return []
    try:
        check(item, cast(Value, value))
    except ValidationError as exc:
        return [exc]
    return []


# --- cross-item rules, per layout -----------------------------------------------------------

CrossCheck = Callable[[Mapping[str, Value]], list[ValidationError]]


def _holder(values: Mapping[str, Value]) -> list[ValidationError]:
    errors: list[ValidationError] = []
    sfzh, csrq, sex = values.get("resident_id_number"), values.get("birth_date"), values.get("sex")
    if not isinstance(sfzh, str) or item_errors(lookup_item("SFZH"), sfzh) or not sfzh:
        return errors
    if isinstance(csrq, str) and csrq and csrq != sfzh[6:14]:
        errors.append(
            ValidationError(
                lookup_item("CSRQ"), csrq, f"differs from the birth date {sfzh[6:14]} in SFZH"
            )
        )
    if sex in (1, 2) and sex != resident_id_sex(sfzh):
        errors.append(
            ValidationError(
                lookup_item("XB"), sex, f"SFZH {sfzh[:6]}... encodes sex {resident_id_sex(sfzh)}"
            )
        )
    return errors


def _ordered_dates(first: str, second: str) -> CrossCheck:
    def check(values: Mapping[str, Value]) -> list[ValidationError]:
        a, b = values.get(first), values.get(second)
        if not (isinstance(a, str) and isinstance(b, str) and a and b):
            return []
        if item_errors(lookup_item(first), a) or item_errors(lookup_item(second), b):
            return []
        if b < a:
            return [ValidationError(lookup_item(second), b, f"is before {first} {a}")]
        return []

    return check


def _not_more(part: str, whole: str) -> CrossCheck:
    def check(values: Mapping[str, Value]) -> list[ValidationError]:
        a, b = values.get(part), values.get(whole)
        if not (isinstance(a, str) and isinstance(b, str) and a.isdigit() and b.isdigit()):
            return []
        if a.isascii() and b.isascii() and int(a) > int(b):
            return [ValidationError(lookup_item(part), a, f"exceeds {whole} {b}")]
        return []

    return check


def _all(*checks: CrossCheck) -> CrossCheck:
    def check(values: Mapping[str, Value]) -> list[ValidationError]:
        return [e for c in checks for e in c(values)]

    return check


CROSS_CHECKS: dict[str, CrossCheck] = {
    "DDF1/EF06": _holder,
    "DF03/EE": _all(
        _ordered_dates("admission_date", "discharge_date"),
        _not_more("rescue_success_count", "rescue_count"),
    ),
}
"""Rules that relate several items of one layout (values keyed by English name)."""
