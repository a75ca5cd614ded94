"""Whole-card data: every file of one resident, JSON in/out, and cross-file validation."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar

from .base import FileValue, JsonObject, KeyStyle
from .codec import DecodeWarning
from .errors import LayoutError, SchemaError, ValidationError
from .files import (
    Addresses,
    AllergyEntry,
    CardContact,
    ClinicalBasics,
    Contacts,
    HolderData,
    IdDocuments,
    ImmunizationEntry,
    InpatientIndex,
    InpatientRecord,
    IssuerData,
    OccupationMarriage,
    OutpatientIndex,
    OutpatientRecord,
    Photo,
    SpecialInfo,
)
from .layout import EF, ef, files_of_layout
from .layout import item as lookup_item
from .validators import validate_resident_id

E = TypeVar("E", bound=FileValue)

FILE_CLASSES: dict[str, type[FileValue]] = {
    cls.LAYOUT: cls
    for cls in (
        IssuerData,
        HolderData,
        Photo,
        CardContact,
        Addresses,
        Contacts,
        OccupationMarriage,
        IdDocuments,
        ClinicalBasics,
        SpecialInfo,
        AllergyEntry,
        ImmunizationEntry,
        InpatientIndex,
        OutpatientIndex,
        InpatientRecord,
        OutpatientRecord,
    )
}
"""Layout name -> dataclass (for cyclic files: the class of one record)."""


def file_class(key: str) -> type[FileValue]:
    """Dataclass for an EF path ("DF03/EE02"), EF name ("inpatient_2") or layout ("DF03/EE")."""
    if key in FILE_CLASSES:
        return FILE_CLASSES[key]
    return FILE_CLASSES[ef(key).layout]


def _with_context(errors: list[ValidationError], context: str) -> list[ValidationError]:
    return [type(e)(e.item, e.value, e.reason, context=context) for e in errors]


@dataclass(frozen=True)
class CyclicFile(Generic[E]):
    """A cyclic record file: ``entries[0]`` is record 1, the newest entry."""

    ENTRY: ClassVar[type[FileValue]]
    LAYOUT: ClassVar[str]

    entries: tuple[E, ...] = ()

    def __post_init__(self) -> None:
        limit = self.capacity()
        if len(self.entries) > limit:
            raise SchemaError(
                None, len(self.entries), f"at most {limit} entries", context=self.LAYOUT
            )

    @classmethod
    def capacity(cls) -> int:
        return files_of_layout(cls.LAYOUT)[0].record_count or 0

    def to_records(self) -> list[tuple[int, bytes]]:
        """(record number, record bytes), newest first."""
        return [(n, e.to_bytes()) for n, e in enumerate(self.entries, start=1)]

    def append_order(self) -> tuple[E, ...]:
        """Entries in the order to APPEND them (oldest first) so the card ends up like this."""
        return tuple(reversed(self.entries))

    @classmethod
    def from_records(
        cls, records: Mapping[int, bytes], *, warnings: list[DecodeWarning] | None = None
    ) -> Self:
        """Decode records 1..n as read from the card; blank records are dropped (lenient
        with ``warnings``, see :meth:`FileValue.from_records`; extra records are dropped)."""
        decoded: list[FileValue] = []
        for n in sorted(records):
            if warnings is None:
                decoded.append(cls.ENTRY.from_bytes(records[n]))
                continue
            found: list[DecodeWarning] = []
            decoded.append(cls.ENTRY.from_bytes(records[n], warnings=found))
            warnings += [dataclasses.replace(w, record=n) for w in found]
        entries: tuple[Any, ...] = tuple(e for e in decoded if not e.is_empty())
        if warnings is not None:
            entries = entries[: cls.capacity()]
        return cls(entries)

    def to_json(
        self, keys: Literal["name", "code"] = "name", *, omit_empty: bool = False
    ) -> list[JsonObject]:
        return [e.to_json(keys, omit_empty=omit_empty) for e in self.entries]

    @classmethod
    def from_json(cls, data: object, keys: KeyStyle = "auto") -> Self:
        if not isinstance(data, list):
            raise SchemaError(None, data, "needs a JSON list of entries", context=cls.LAYOUT)
        entries: tuple[Any, ...] = tuple(cls.ENTRY.from_json(d, keys) for d in data)
        return cls(entries)

    def validate(self) -> list[ValidationError]:
        return [err for e in self.entries for err in e.validate()]


@dataclass(frozen=True)
class Allergies(CyclicFile[AllergyEntry]):
    """DF02/EF07: up to 3 allergy entries, newest first."""

    ENTRY: ClassVar[type[FileValue]] = AllergyEntry
    LAYOUT: ClassVar[str] = "DF02/EF07"


@dataclass(frozen=True)
class Immunizations(CyclicFile[ImmunizationEntry]):
    """DF02/EF08: up to 10 immunization entries, newest first."""

    ENTRY: ClassVar[type[FileValue]] = ImmunizationEntry
    LAYOUT: ClassVar[str] = "DF02/EF08"


FileContent = FileValue | CyclicFile[Any]

# CardData field -> (layout, JSON code key)
_SINGLE = {
    "issuer": "DDF1/EF05",
    "holder": "DDF1/EF06",
    "photo": "DDF1/EF07",
    "card_contact": "DDF1/EF08",
    "addresses": "DF01/EF05",
    "contacts": "DF01/EF06",
    "occupation_marriage": "DF01/EF07",
    "id_documents": "DF01/EF08",
    "clinical": "DF02/EF05",
    "special": "DF02/EF06",
}
_CYCLIC: dict[str, type[CyclicFile[Any]]] = {
    "allergies": Allergies,
    "immunizations": Immunizations,
}
_RECORDS: dict[str, type[FileValue]] = {
    "inpatient": InpatientRecord,
    "outpatient": OutpatientRecord,
}


def _code_key(layout: str) -> str:
    return layout.replace("/", "")


@dataclass(frozen=True, kw_only=True)
class CardData:
    """All data of one card. ``inpatient``/``outpatient`` hold 3/5 slots (None = flag FF);
    the index files are derived from which slots are filled."""

    issuer: IssuerData = field(default_factory=IssuerData)
    holder: HolderData = field(default_factory=HolderData)
    photo: Photo = field(default_factory=Photo)
    card_contact: CardContact = field(default_factory=CardContact)
    addresses: Addresses = field(default_factory=Addresses)
    contacts: Contacts = field(default_factory=Contacts)
    occupation_marriage: OccupationMarriage = field(default_factory=OccupationMarriage)
    id_documents: IdDocuments = field(default_factory=IdDocuments)
    clinical: ClinicalBasics = field(default_factory=ClinicalBasics)
    special: SpecialInfo = field(default_factory=SpecialInfo)
    allergies: Allergies = field(default_factory=Allergies)
    immunizations: Immunizations = field(default_factory=Immunizations)
    inpatient: tuple[InpatientRecord | None, ...] = (None, None, None)
    outpatient: tuple[OutpatientRecord | None, ...] = (None, None, None, None, None)

    def __post_init__(self) -> None:
        for name, cls in _RECORDS.items():
            slots = getattr(self, name)
            count = len(files_of_layout(cls.LAYOUT))
            if len(slots) > count:
                raise SchemaError(None, len(slots), f"at most {count} {name} records")
            padded = tuple(slots) + (None,) * (count - len(slots))
            if any(r is not None and not isinstance(r, cls) for r in padded):
                raise SchemaError(None, padded, f"{name} slots must be {cls.__name__} or None")
            object.__setattr__(self, name, padded)

    # --- derived index files ----------------------------------------------------------------

    @property
    def inpatient_index(self) -> InpatientIndex:
        return InpatientIndex(**_flags(InpatientIndex, self.inpatient))

    @property
    def outpatient_index(self) -> OutpatientIndex:
        return OutpatientIndex(**_flags(OutpatientIndex, self.outpatient))

    def file_contents(self) -> list[tuple[EF, FileContent | None]]:
        """Every EF in card order with its content (None for an empty EE/ED slot)."""
        out: list[tuple[EF, FileContent | None]] = []
        for name, layout in _SINGLE.items():
            out.append((ef(layout), getattr(self, name)))
        for name, cyc in _CYCLIC.items():
            out.append((ef(cyc.LAYOUT), getattr(self, name)))
        out.append((ef("DF03/EF05"), self.inpatient_index))
        out.append((ef("DF03/EF06"), self.outpatient_index))
        for name, cls in _RECORDS.items():
            out += zip(files_of_layout(cls.LAYOUT), getattr(self, name), strict=True)
        return out

    # --- JSON -------------------------------------------------------------------------------

    def to_json(
        self, keys: Literal["name", "code"] = "name", *, omit_empty: bool = False
    ) -> JsonObject:
        """Files keyed by name ("holder", "inpatient") or code ("DDF1EF06", "DF03EE");
        ``omit_empty`` drops empty items inside each file."""
        if keys not in ("name", "code"):
            raise SchemaError(None, keys, "key style must be 'name' or 'code'")
        by_code = keys == "code"
        out: JsonObject = {}
        for name, layout in _SINGLE.items():
            value = getattr(self, name).to_json(keys, omit_empty=omit_empty)
            out[_code_key(layout) if by_code else name] = value
        for name, cyc in _CYCLIC.items():
            value = getattr(self, name).to_json(keys, omit_empty=omit_empty)
            out[_code_key(cyc.LAYOUT) if by_code else name] = value
        for name, cls in _RECORDS.items():
            out[_code_key(cls.LAYOUT) if by_code else name] = [
                None if r is None else r.to_json(keys, omit_empty=omit_empty)
                for r in getattr(self, name)
            ]
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object], keys: KeyStyle = "auto") -> CardData:
        """Build from :meth:`to_json` output (either key style); missing files are empty."""
        if not isinstance(data, Mapping):
            raise SchemaError(None, data, "card data must be a JSON object")
        names = dict(_SINGLE)
        names.update({n: c.LAYOUT for n, c in _CYCLIC.items()})
        names.update({n: r.LAYOUT for n, r in _RECORDS.items()})
        lookup: dict[str, str] = {}
        for name, layout in names.items():
            if keys in ("name", "auto"):
                lookup[name] = name
            if keys in ("code", "auto"):
                lookup[_code_key(layout)] = name
        fields: dict[str, Any] = {}
        for k, v in data.items():
            found = lookup.get(k)
            if found is None:
                raise SchemaError(None, k, f"unknown file key ({keys} style)")
            name = found
            if name in fields:
                raise SchemaError(None, k, "file given twice")
            if name in _SINGLE:
                if not isinstance(v, Mapping):
                    raise SchemaError(None, v, "needs a JSON object", context=_SINGLE[name])
                fields[name] = FILE_CLASSES[_SINGLE[name]].from_json(v, keys)
            elif name in _CYCLIC:
                fields[name] = _CYCLIC[name].from_json(v, keys)
            else:
                fields[name] = _records_from_json(_RECORDS[name], v, keys)
        return cls(**fields)

    # --- validation -------------------------------------------------------------------------

    def validate(self) -> list[ValidationError]:
        """Every problem of every file plus cross-file rules; each error's context names the
        file (e.g. "DF03/EE02")."""
        errors: list[ValidationError] = []
        for f, content in self.file_contents():
            if content is not None:
                errors += _with_context(content.validate(), f.path)
        return errors + self._cross_file_errors()

    def _cross_file_errors(self) -> list[ValidationError]:
        errors: list[ValidationError] = []
        kh, sfzh = self.issuer.card_number, self.holder.resident_id_number
        zjhm = self.id_documents.id_document_number
        if kh and (sfzh or zjhm) and kh not in (sfzh, zjhm):
            errors.append(
                ValidationError(
                    lookup_item("KH"),
                    kh,
                    "card number must equal SFZH or ZJHM",
                    context="DDF1/EF05",
                )
            )
        if self.id_documents.id_document_type == "1" and zjhm:
            try:
                validate_resident_id(zjhm, lookup_item("ZJHM"))
            except ValidationError as exc:
                errors += _with_context([exc], "DF01/EF08")
        issued, expiry = self.issuer.issue_date, self.card_contact.card_expiry_date
        birth = self.holder.birth_date
        if _is_date(issued) and _is_date(expiry) and expiry <= issued:
            errors.append(
                ValidationError(
                    lookup_item("KYXQ"),
                    expiry,
                    f"not after issue date {issued}",
                    context="DDF1/EF08",
                )
            )
        if _is_date(issued) and _is_date(birth) and birth > issued:
            errors.append(
                ValidationError(
                    lookup_item("CSRQ"), birth, f"after issue date {issued}", context="DDF1/EF06"
                )
            )
        return errors


def _is_date(text: str) -> bool:
    return len(text) == 8 and text.isascii() and text.isdigit()


def _flags(index_cls: type[FileValue], records: Sequence[object]) -> dict[str, bool]:
    slots = index_cls.slots()
    if len(slots) != len(records):
        raise LayoutError(f"{index_cls.LAYOUT}: {len(slots)} flags for {len(records)} records")
    return {s.field: r is not None for s, r in zip(slots, records, strict=True)}


def _records_from_json(
    cls: type[FileValue], data: object, keys: KeyStyle
) -> tuple[FileValue | None, ...]:
    if not isinstance(data, list):
        raise SchemaError(
            None, data, "needs a JSON list (null for empty slots)", context=cls.LAYOUT
        )
    return tuple(None if d is None else cls.from_json(d, keys) for d in data)


def sample_resident() -> CardData:
    """A complete fictional resident (valid ID, photo, one allergy/immunization, one inpatient
    and one outpatient record); the data is in ``samples/resident.json``."""
    return CardData.from_json(sample_resident_json())


def sample_resident_json() -> dict[str, Any]:
    """The raw JSON of :func:`sample_resident` (English-name keys)."""
    text = resources.files(__package__).joinpath("samples", "resident.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


__all__ = [
    "FILE_CLASSES",
    "Allergies",
    "CardData",
    "CyclicFile",
    "FileContent",
    "Immunizations",
    "file_class",
    "sample_resident",
    "sample_resident_json",
]
