"""JSON documents of card files (``healthcard read`` / ``write``) and human-readable rows.

A document maps file keys to contents. The whole-card document is exactly
``CardData.to_json(keys)``: the single and cyclic files plus ``inpatient`` / ``outpatient``
(lists with ``null`` for slots whose index flag is FF). A selection may also name single EFs:
``DF03EE02`` / ``inpatient_2`` (one record or ``null``) and the index files ``DF03EF05`` /
``inpatient_index``. Keys are compact paths (``keys="code"``, items by pinyin code) or names
(``keys="name"``, items by English name); reading accepts both.

``healthcard read --json`` adds two reserved keys that :func:`write_document` ignores:
``warnings`` (the read's :class:`CardNotice` list: items out of spec, the card-factor check,
files the card lacks the read key for) and ``signatures`` (EE/ED path -> ``signed-valid`` /
``unsigned`` / ``signature-invalid``).

"A bad byte in one item never hides the rest of the card" holds for files too: with an
``unreadable`` list, :func:`read_selection` reads every selected file it can and reports each
file whose read key the card does not hold (EXTERNAL AUTHENTICATE ``6A88``, no try spent) as an
:class:`UnreadableFile` and a notice, instead of stopping at the first one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from healthcard_apdu.card.errors import KeyNotPresent, NotWritable, RecordInvalid, SignatureInvalid
from healthcard_apdu.card.healthcard import HealthCard, SignMode
from healthcard_apdu.card.notices import CardNotice
from healthcard_apdu.model import (
    Allergies,
    CyclicFile,
    FileValue,
    Immunizations,
    InpatientRecord,
    LayoutError,
    OutpatientRecord,
    SchemaError,
    Value,
    ef,
    file_class,
)

__all__ = [
    "DEFAULT_SELECTION",
    "RESERVED_KEYS",
    "FileSelector",
    "UnreadableFile",
    "WriteResult",
    "content_json",
    "display_value",
    "document_rows",
    "read_document",
    "read_selection",
    "resolve_selector",
    "write_document",
]

KeysBy = Literal["code", "name"]
#: Document keys that are not files: what ``read --json`` adds besides the files.
RESERVED_KEYS = frozenset({"warnings", "signatures"})
Content = FileValue | CyclicFile[Any] | tuple[FileValue | None, ...] | None


@dataclass(frozen=True)
class FileSelector:
    """One document entry: its two key spellings and the EFs it covers."""

    code: str
    name: str
    paths: tuple[str, ...]

    @property
    def is_group(self) -> bool:
        return len(self.paths) > 1

    def key(self, keys: KeysBy) -> str:
        return self.code if keys == "code" else self.name


_GROUPS = {
    "DF03EE": FileSelector("DF03EE", "inpatient", tuple(f"DF03/EE0{n}" for n in (1, 2, 3))),
    "DF03ED": FileSelector("DF03ED", "outpatient", tuple(f"DF03/ED0{n}" for n in range(1, 6))),
}
_GROUP_RECORDS: dict[str, type[FileValue]] = {
    "DF03EE": InpatientRecord,
    "DF03ED": OutpatientRecord,
}
_CYCLIC: dict[str, type[CyclicFile[Any]]] = {"DF02/EF07": Allergies, "DF02/EF08": Immunizations}


def resolve_selector(text: str) -> FileSelector:
    """``DDF1EF06``, ``DDF1/EF06``, ``holder``, ``DF03EE``, ``inpatient``, ``DF03EE02`` ..."""
    compact = text.strip().replace("/", "").upper()
    for group in _GROUPS.values():
        if compact == group.code or text.strip().lower() == group.name:
            return group
    try:
        target = ef(text.strip())
    except LayoutError:
        known = ", ".join(s.code for s in DEFAULT_SELECTION)
        raise LayoutError(
            f"no card file {text!r}; use a path such as DDF1EF06 or DF03EE02, or one of: {known}"
        ) from None
    return FileSelector(target.path.replace("/", ""), target.name, (target.path,))


DEFAULT_SELECTION: tuple[FileSelector, ...] = (
    *(
        resolve_selector(p)
        for p in (
            "DDF1/EF05",
            "DDF1/EF06",
            "DDF1/EF07",
            "DDF1/EF08",
            "DF01/EF05",
            "DF01/EF06",
            "DF01/EF07",
            "DF01/EF08",
            "DF02/EF05",
            "DF02/EF06",
            "DF02/EF07",
            "DF02/EF08",
        )
    ),
    _GROUPS["DF03EE"],
    _GROUPS["DF03ED"],
)
"""The files of the whole-card document, in card order (= the keys of ``CardData.to_json``)."""


def _unique(selectors: Iterable[str] | None) -> list[FileSelector]:
    if not selectors:
        return list(DEFAULT_SELECTION)
    out: list[FileSelector] = []
    for text in selectors:
        selector = resolve_selector(text)
        if selector not in out:
            out.append(selector)
    return out


# -- reading --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UnreadableFile:
    """A selected file the card does not let anyone read: it does not hold the file's read key
    (EXTERNAL AUTHENTICATE answered ``6A88``; no try was spent, and the key is not sent again).
    """

    selector: FileSelector
    key: str | None
    error: KeyNotPresent

    @property
    def message(self) -> str:
        what = f"key {self.key}" if self.key else "its read key"
        return (
            f"{self.selector.code} ({self.selector.name}) not read: {what} not present on this "
            "card (EXTERNAL AUTHENTICATE 6A88, no try spent)"
        )

    def notice(self) -> CardNotice:
        return CardNotice("unreadable", self.message, path=self.selector.code, key=self.key)

    def row(self, keys: KeysBy = "code") -> dict[str, Any]:
        """Its line in the :func:`document_rows` table."""
        what = f"key {self.key}" if self.key else "its read key"
        value = f"(not read: {what} not present on this card)"
        return {"file": self.selector.key(keys), "item": "", "code": "", "name": "", "value": value}

    def to_json(self) -> dict[str, Any]:
        return self.notice().to_json()


def _read_record_at(
    card: HealthCard, path: str, verify: bool | None,
    failures: list[SignatureInvalid] | None = None,
) -> FileValue:
    number = int(path[-1])
    try:
        if path.startswith("DF03/EE"):
            return card.read_inpatient(number, verify=verify)
        return card.read_outpatient(number, verify=verify)
    except SignatureInvalid as exc:
        if failures is None or not isinstance(exc.record_value, FileValue):
            raise
        failures.append(exc)
        return exc.record_value  # shown, but the caller reports the failure


def _read_one(
    card: HealthCard, selector: FileSelector, verify: bool | None,
    failures: list[SignatureInvalid] | None = None,
) -> Content:
    if selector.is_group:
        index = card.read_file("DF03/EF05" if selector.code == "DF03EE" else "DF03/EF06")
        assert isinstance(index, FileValue)
        flags = list(index.values().values())
        return tuple(
            _read_record_at(card, path, verify, failures) if valid else None
            for path, valid in zip(selector.paths, flags, strict=True)
        )
    path = selector.paths[0]
    if path.startswith(("DF03/EE", "DF03/ED")):
        try:
            return _read_record_at(card, path, verify, failures)
        except RecordInvalid:
            return None
    return card.read_file(path)


def read_selection(
    card: HealthCard,
    selectors: Iterable[str] | None = None,
    *,
    verify: bool | None = None,
    failures: list[SignatureInvalid] | None = None,
    unreadable: list[UnreadableFile] | None = None,
) -> list[tuple[FileSelector, Content]]:
    """Read the selected files (all by default) as typed values, in selection order.

    With a ``failures`` list, an EE/ED record whose signature check fails is collected there
    (its untrusted decoded value is shown) and reading goes on; otherwise it raises.
    With an ``unreadable`` list, a file whose read key the card does not hold
    (:class:`KeyNotPresent`) is left out of the result, collected there and added to the card's
    notices, and reading goes on; when no selected file could be read at all, the first
    :class:`KeyNotPresent` is raised. Any other error (a refused authentication ...) stops.
    """
    chosen = _unique(selectors)
    if unreadable is not None:
        return _read_what_can_be_read(card, chosen, verify, failures, unreadable)
    if failures is not None:
        return [(selector, _read_one(card, selector, verify, failures)) for selector in chosen]
    if chosen == list(DEFAULT_SELECTION):
        data = card.read_card(verify=verify)
        values: list[Content] = [
            data.issuer,
            data.holder,
            data.photo,
            data.card_contact,
            data.addresses,
            data.contacts,
            data.occupation_marriage,
            data.id_documents,
            data.clinical,
            data.special,
            data.allergies,
            data.immunizations,
            data.inpatient,
            data.outpatient,
        ]
        return list(zip(chosen, values, strict=True))
    return [(selector, _read_one(card, selector, verify)) for selector in chosen]


def _read_what_can_be_read(
    card: HealthCard,
    chosen: Sequence[FileSelector],
    verify: bool | None,
    failures: list[SignatureInvalid] | None,
    unreadable: list[UnreadableFile],
) -> list[tuple[FileSelector, Content]]:
    read: list[tuple[FileSelector, Content]] = []
    missing: list[UnreadableFile] = []
    for selector in chosen:
        try:
            read.append((selector, _read_one(card, selector, verify, failures)))
        except KeyNotPresent as exc:
            missing.append(UnreadableFile(selector, exc.key, exc))
    if missing and not read:
        raise missing[0].error
    for entry in missing:
        card.add_notice(entry.notice())
    unreadable += missing
    return read


def content_json(content: Content, keys: KeysBy = "code") -> Any:
    """JSON of one document entry (a file, a record list, or None)."""
    if content is None:
        return None
    if isinstance(content, tuple):
        return [None if r is None else r.to_json(keys) for r in content]
    return content.to_json(keys)


def read_document(
    card: HealthCard,
    selectors: Iterable[str] | None = None,
    *,
    keys: KeysBy = "code",
    verify: bool | None = None,
    unreadable: list[UnreadableFile] | None = None,
) -> dict[str, Any]:
    """The JSON document of the selected files (the whole card by default); ``unreadable`` as
    for :func:`read_selection` (those files are then missing from the document)."""
    selection = read_selection(card, selectors, verify=verify, unreadable=unreadable)
    return {selector.key(keys): content_json(content, keys) for selector, content in selection}


# -- human-readable rows --------------------------------------------------------------------

_HEX_SHOWN = 16


def _display(value: Value, photo: bool) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        if not value:
            return ""
        if photo:
            return f"JPEG, {len(value)} bytes"
        text = value.hex().upper()
        if len(value) > _HEX_SHOWN:
            return f"{text[: 2 * _HEX_SHOWN]}… ({len(value)} bytes)"
        return text
    return str(value)


def display_value(value: Value, photo: bool = False) -> str:
    """How the tables show one item value: hex shortened, the photo as its size."""
    return _display(value, photo)


def _file_rows(label: str, value: FileValue, keys: KeysBy, all_items: bool) -> list[dict[str, Any]]:
    rows = []
    for slot, item_value in value.items():
        shown = _display(item_value, slot.item.kind == "photo")
        if not shown and not all_items:
            continue
        rows.append(
            {
                "file": label,
                "item": slot.item.no,
                "code": slot.json_code if keys == "code" else slot.json_name,
                "name": slot.item.name_zh,
                "value": shown,
            }
        )
    return rows


def document_rows(
    selection: Sequence[tuple[FileSelector, Content]],
    *,
    keys: KeysBy = "code",
    all_items: bool = False,
) -> list[dict[str, Any]]:
    """Table rows ``file, item, code, name, value``; empty items only with ``all_items``."""
    rows: list[dict[str, Any]] = []
    for selector, content in selection:
        label = selector.key(keys)
        if content is None:
            rows.append(
                {
                    "file": label,
                    "item": "",
                    "code": "",
                    "name": "",
                    "value": "(record invalid: index flag FF)",
                }
            )
        elif isinstance(content, tuple):
            for path, record in zip(selector.paths, content, strict=True):
                sub = path.replace("/", "") if keys == "code" else ef(path).name
                if record is None:
                    rows.append(
                        {
                            "file": sub,
                            "item": "",
                            "code": "",
                            "name": "",
                            "value": "(record invalid: index flag FF)",
                        }
                    )
                else:
                    rows += _file_rows(sub, record, keys, all_items)
        elif isinstance(content, CyclicFile):
            if not content.entries:
                rows.append(
                    {"file": label, "item": "", "code": "", "name": "", "value": "(no entries)"}
                )
            for n, entry in enumerate(content.entries, start=1):
                rows += _file_rows(f"{label}#{n}", entry, keys, all_items)
        else:
            rows += _file_rows(label, content, keys, all_items)
    return rows


# -- writing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_document` did with one document entry."""

    file: str
    action: Literal["written", "skipped"]
    note: str = ""


def _parse(selector: FileSelector, value: object) -> Content:
    code = selector.code
    if selector.is_group:
        cls = _GROUP_RECORDS[code]
        if not isinstance(value, list) or len(value) > len(selector.paths):
            raise SchemaError(
                None,
                value,
                f"needs a list of at most {len(selector.paths)} records (null for empty slots)",
                context=code,
            )
        padded = list(value) + [None] * (len(selector.paths) - len(value))
        return tuple(None if v is None else cls.from_json(_mapping(v, code)) for v in padded)
    path = selector.paths[0]
    if path in _CYCLIC:
        return _CYCLIC[path].from_json(value)
    if value is None and path.startswith(("DF03/EE", "DF03/ED")):
        return None
    return file_class(path).from_json(_mapping(value, code))


def _mapping(value: object, context: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise SchemaError(None, value, "needs a JSON object", context=context)
    return value


def write_document(
    card: HealthCard,
    document: Mapping[str, object],
    selectors: Iterable[str] | None = None,
    *,
    sign: SignMode = None,
) -> list[WriteResult]:
    """Write the files of ``document`` (only ``selectors`` when given) to the card.

    Everything is parsed before the first card command. Files that are not rewritable after
    issuance (DDF1/EF05, EF06) are skipped, or refused with :class:`NotWritable` when they are
    selected explicitly. A record entry ``null`` erases that slot's index flag.
    """
    if not isinstance(document, Mapping):
        raise SchemaError(None, document, "the document must be a JSON object")
    wanted = None if selectors is None else _unique(selectors)
    parsed: list[tuple[FileSelector, Content]] = []
    for key, value in document.items():
        if key in RESERVED_KEYS:
            continue  # what `read --json` reports besides the files
        selector = resolve_selector(key)
        if any(s == selector for s, _ in parsed):
            raise SchemaError(None, key, "file given twice")
        if wanted is not None and selector not in wanted:
            continue
        parsed.append((selector, _parse(selector, value)))
    if wanted is not None:
        missing = [s.code for s in wanted if all(s != p for p, _ in parsed)]
        if missing:
            raise SchemaError(None, missing, "selected files are not in the document")
    results: list[WriteResult] = []
    for selector, content in parsed:
        label = selector.code
        target = ef(selector.paths[0])
        if target.write_key is None:
            if wanted is not None:
                raise NotWritable(
                    f"{target.path} ({target.name}) is not rewritable after issuance",
                    path=target.path,
                )
            results.append(WriteResult(label, "skipped", "not rewritable after issuance"))
            continue
        _write_one(card, selector, content, sign)
        results.append(WriteResult(label, "written"))
    return results


def _write_one(card: HealthCard, selector: FileSelector, content: Content, sign: SignMode) -> None:
    if not (selector.is_group or selector.paths[0].startswith(("DF03/EE", "DF03/ED"))):
        card.write_file(selector.paths[0], content)
        return
    records = content if isinstance(content, tuple) else (content,)
    for path, record in zip(selector.paths, records, strict=True):
        number = int(path[-1])
        if record is None:
            if path.startswith("DF03/EE"):
                card.erase_inpatient_flag(number)
            else:
                card.erase_outpatient_flag(number)
        elif isinstance(record, InpatientRecord):
            card.write_inpatient(number, record, sign=sign)
        elif isinstance(record, OutpatientRecord):
            card.write_outpatient(number, record, sign=sign)
