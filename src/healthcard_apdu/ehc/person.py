"""The person behind an e-card: identity fields and code tables, validated as the card model
validates them.

The code tables are the model's (:mod:`healthcard_apdu.model.codetables`): sex GB/T 2261.1
(``sex``), nation GB 3304 (``ethnicity``) and the ID document type CV02.01.101
(``id_document_type``). The e-card platforms write the ID type with two digits (``01``); the
card's ZJLB item holds the same codes with one (``1``), so each card code ``c`` is the e-card
code ``c.zfill(2)``. The platforms add three types the card table does not list (06, 07, 08,
:data:`EXTRA_ID_TYPES`). An ID number of type 01 is checked with the model's GB 11643 validator.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from healthcard_apdu.ehc.errors import EhcInputError
from healthcard_apdu.model.codetables import code_table
from healthcard_apdu.model.errors import ValidationError
from healthcard_apdu.model.files import CardContact, HolderData, IdDocuments
from healthcard_apdu.model.validators import resident_id_sex, validate_phone, validate_resident_id

__all__ = [
    "EXTRA_ID_TYPES",
    "ID_TYPES",
    "MAX_ID_NUMBER_LENGTH",
    "RESIDENT_ID",
    "IdType",
    "Person",
    "card_id_type",
    "ehc_id_type",
    "person_from_card",
]

RESIDENT_ID = "01"
MAX_ID_NUMBER_LENGTH = 30
"""idType (2) + idNo must fit the 32-byte block of the e-card ID derivation."""
MAX_NAME_LENGTH = 50
MAX_ADDRESS_LENGTH = 256


@dataclass(frozen=True)
class IdType:
    """One ID document type: the e-card's two-digit code, labels, the card's ZJLB code."""

    code: str
    zh: str
    en: str
    card_code: str | None


EXTRA_ID_TYPES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "06": ("港澳居民来往内地通行证", "Mainland travel permit (Hong Kong, Macao residents)"),
        "07": ("台湾居民来往大陆通行证", "Mainland travel permit for Taiwan residents"),
        "08": ("出生医学证明", "medical birth certificate"),
    }
)
"""ID types of the e-card platforms (Qinghai, the 华大 dictionary) beyond the card's table."""


def _id_types() -> Mapping[str, IdType]:
    table = code_table("id_document_type")
    types: dict[str, IdType] = {}
    for entry in table.entries:
        code = str(entry.code).zfill(2)
        types[code] = IdType(code, entry.zh, entry.en, str(entry.code))
    for code, (zh, en) in EXTRA_ID_TYPES.items():
        types.setdefault(code, IdType(code, zh, en, None))
    return MappingProxyType(dict(sorted(types.items())))


ID_TYPES: Mapping[str, IdType] = _id_types()
"""Two-digit e-card ID type -> :class:`IdType` (01 resident ID card ... 99 other)."""


def ehc_id_type(card_code: str) -> str:
    """The e-card ID type of a card's ZJLB code (``"1"`` -> ``"01"``)."""
    code = card_code.strip().zfill(2)
    if code not in ID_TYPES or ID_TYPES[code].card_code is None:
        raise EhcInputError("id_type", f"card ID document type {card_code!r} has no e-card code")
    return code


def card_id_type(code: str) -> str:
    """The card's ZJLB code of an e-card ID type (``"01"`` -> ``"1"``)."""
    entry = ID_TYPES.get(code)
    if entry is None or entry.card_code is None:
        raise EhcInputError("id_type", f"e-card ID type {code!r} has no card code")
    return entry.card_code


def _check_text(field: str, value: str, limit: int, *, required: bool) -> None:
    if required and not value:
        raise EhcInputError(field, "must not be empty")
    if len(value) > limit:
        raise EhcInputError(field, f"{len(value)} characters, at most {limit}")
    if value != value.strip():
        raise EhcInputError(field, "has leading or trailing spaces")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise EhcInputError(field, "contains control characters")


@dataclass(frozen=True, kw_only=True)
class Person:
    """Identity of an e-card holder. Construction validates every field (write strictly):
    :class:`EhcInputError` names the field. For ID type 01 the birth date and sex default to
    the ones the ID number encodes and must agree with them."""

    id_type: str
    id_number: str
    name: str
    sex: int | None = None
    nation: str | None = None
    birth_date: dt.date | None = None
    phone: str | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        if self.id_type not in ID_TYPES:
            codes = ", ".join(ID_TYPES)
            raise EhcInputError("id_type", f"{self.id_type!r} is not a CV02.01.101 code ({codes})")
        self._check_id_number()
        _check_text("name", self.name, MAX_NAME_LENGTH, required=True)
        if self.sex is not None and self.sex not in code_table("sex"):
            raise EhcInputError("sex", f"{self.sex!r} is not a GB/T 2261.1 code (0, 1, 2, 9)")
        if self.nation is not None and self.nation not in code_table("ethnicity"):
            raise EhcInputError("nation", f"{self.nation!r} is not a GB 3304 code (01-56, 97, 98)")
        if self.phone is not None:
            try:
                validate_phone(self.phone)
            except ValidationError as exc:
                raise EhcInputError("phone", exc.reason) from None
        if self.address is not None:
            _check_text("address", self.address, MAX_ADDRESS_LENGTH, required=False)
        if self.id_type == RESIDENT_ID:
            self._check_resident_id()

    def _check_id_number(self) -> None:
        number = self.id_number
        if not number:
            raise EhcInputError("id_number", "must not be empty")
        if len(number) > MAX_ID_NUMBER_LENGTH:
            raise EhcInputError(
                "id_number", f"{len(number)} characters, at most {MAX_ID_NUMBER_LENGTH}"
            )
        if not (number.isascii() and number.isalnum()):
            raise EhcInputError("id_number", "must be ASCII letters and digits")
        if number != number.upper():
            raise EhcInputError("id_number", "letters must be upper case")

    def _check_resident_id(self) -> None:
        try:
            birth = validate_resident_id(self.id_number)
        except ValidationError as exc:
            raise EhcInputError("id_number", exc.reason) from None
        if self.birth_date is None:
            object.__setattr__(self, "birth_date", birth)
        elif self.birth_date != birth:
            raise EhcInputError(
                "birth_date", f"{self.birth_date:%Y%m%d} differs from {birth:%Y%m%d} in the ID"
            )
        encoded = resident_id_sex(self.id_number)
        if self.sex is None:
            object.__setattr__(self, "sex", encoded)
        elif self.sex in (1, 2) and self.sex != encoded:
            raise EhcInputError("sex", f"{self.sex} differs from sex {encoded} in the ID number")

    def __repr__(self) -> str:
        masked = self.id_number[:4] + "*" * max(0, len(self.id_number) - 8) + self.id_number[-4:]
        return f"Person({self.id_type}, {masked}, {self.name})"

    # -- JSON ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (dates as ``YYYY-MM-DD``; absent fields left out)."""
        out: dict[str, Any] = {
            "id_type": self.id_type,
            "id_number": self.id_number,
            "name": self.name,
        }
        for name in ("sex", "nation", "phone", "address"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.birth_date is not None:
            out["birth_date"] = self.birth_date.isoformat()
        return out

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Person:
        """Read leniently what platforms send: ``idType``/``id_type``, ``idNumber``/
        ``id_number``, ``gender`` 男/女 or a code, ``nation`` code, ``birthday`` as
        ``YYYYMMDD`` or ``YYYY-MM-DD``, ``phone1``/``phone``; ID letters are upper-cased.
        The result is validated like any :class:`Person`."""
        if not isinstance(data, Mapping):
            raise EhcInputError("person", "expected a JSON object")

        def pick(*names: str) -> Any:
            for name in names:
                value = data.get(name)
                if value not in (None, ""):
                    return value
            return None

        id_type = pick("id_type", "idType", "idcard_type")
        id_number = pick("id_number", "idNumber", "id_no", "idcard_value")
        name = pick("name", "pname")
        for field, value in (("id_type", id_type), ("id_number", id_number), ("name", name)):
            if value is None:
                raise EhcInputError(field, "is missing")
        birth = pick("birth_date", "birthday")
        return cls(
            id_type=str(id_type).strip().zfill(2),
            id_number=str(id_number).strip().upper(),
            name=str(name).strip(),
            sex=_parse_sex(pick("sex", "gender")),
            nation=None if (n := pick("nation")) is None else str(n).strip().zfill(2),
            birth_date=None if birth is None else _parse_date(str(birth)),
            phone=None if (p := pick("phone", "phone1", "cellphone", "mobile")) is None else str(p),
            address=None if (a := pick("address")) is None else str(a).strip(),
        )


_SEX_WORDS = {"男": 1, "女": 2, "male": 1, "female": 2, "m": 1, "f": 2}


def _parse_sex(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _SEX_WORDS:
        return _SEX_WORDS[text]
    if text.isdigit():
        return int(text)
    raise EhcInputError("sex", f"{value!r} is not a GB/T 2261.1 code or 男/女")


def _parse_date(text: str) -> dt.date:
    digits = text.strip().replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        raise EhcInputError("birth_date", f"{text!r} is not YYYYMMDD or YYYY-MM-DD")
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        raise EhcInputError("birth_date", f"{text!r} is not a calendar date") from None


def person_from_card(
    holder: HolderData,
    id_documents: IdDocuments | None = None,
    contact: CardContact | None = None,
) -> Person:
    """The person on a Resident Health Card (the self-service issuance flow): the resident ID
    (SFZH, type 01) when present, else the ID document (ZJLB, ZJHM); name, sex, nation, birth
    date and the first phone number from the card."""
    if holder.resident_id_number:
        id_type, id_number = RESIDENT_ID, holder.resident_id_number
    elif id_documents is not None and id_documents.id_document_number:
        id_type = ehc_id_type(id_documents.id_document_type or "99")
        id_number = id_documents.id_document_number
    else:
        raise EhcInputError("id_number", "the card holds neither SFZH nor an ID document number")
    return Person(
        id_type=id_type,
        id_number=id_number.strip().upper(),
        name=holder.name.strip(),
        sex=holder.sex,
        nation=holder.ethnicity or None,
        birth_date=_parse_date(holder.birth_date) if holder.birth_date else None,
        phone=(contact.phone_1 or None) if contact is not None else None,
    )
