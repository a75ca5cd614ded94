"""The validation pass: every row checked before anything is issued.

Per row, the model checks each item (GB 11643 check digit, birth date against CSRQ, GBK length,
code tables ...) and the file's cross rules; this module adds what only a batch can know:
required identity items, a card number or ID number that appears twice in the file, or that the
journal already holds. Each problem is reported with its row number, field and reason.

Rows come flat (one column per item, keyed by pinyin code or English name, CSV strings) or, in
JSON Lines, either flat or nested like :meth:`CardData.to_json`. The stored record is the nested
form keyed by pinyin code with empty items left out; the card number ``KH`` is filled in from
the ID number when the file has none (the national rule: card number = ID / document number).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from healthcard_apdu.batch.input import FileInfo, InputRow
from healthcard_apdu.fileio import write_file
from healthcard_apdu.model import CardData, ItemError, ModelError, item
from healthcard_apdu.model.errors import LayoutError

# CardData attribute -> layout, for the files a flat row may fill (not the cyclic/EE/ED ones).
FLAT_FILES: Final[dict[str, str]] = {
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
_LAYOUT_KEY: Final = {layout: layout.replace("/", "") for layout in FLAT_FILES.values()}
_NESTED_KEYS: Final = frozenset(
    [*FLAT_FILES, *_LAYOUT_KEY.values(), "allergies", "immunizations", "inpatient",
     "outpatient", "DF02EF07", "DF02EF08", "DF03EE", "DF03ED"]
)
_TRUE: Final = frozenset({"1", "true", "t", "y", "yes", "是", "真"})
_FALSE: Final = frozenset({"0", "false", "f", "n", "no", "否", "假"})


@dataclass(frozen=True, slots=True)
class RowIssue:
    """One problem of one row. ``field`` is the pinyin code when the item is known, else the
    key as written (or ``"-"`` for the row as a whole)."""

    row: int
    field: str
    reason: str
    value: str | None = None
    item_no: int | None = None
    name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"row": self.row, "field": self.field, "reason": self.reason}
        if self.item_no is not None:
            out["item"] = self.item_no
        if self.name is not None:
            out["name"] = self.name
        if self.value is not None:
            out["value"] = self.value
        return out


@dataclass(frozen=True, slots=True)
class RowVerdict:
    """A row after validation: ``record`` is set when it may be issued."""

    row: int
    record: dict[str, Any] | None
    card_number: str | None
    id_number: str | None
    issues: tuple[RowIssue, ...] = ()

    @property
    def valid(self) -> bool:
        return not self.issues


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _issue(row: int, exc: ModelError) -> RowIssue:
    if isinstance(exc, ItemError):
        it = exc.item
        reason = exc.reason
        context = getattr(exc, "context", None)
        if context:
            reason = f"{reason} (file {context})"
        if it is not None:
            return RowIssue(row, it.code, reason, _short(exc.value), it.no, it.name)
        return RowIssue(row, _short(exc.value) if isinstance(exc.value, str) else "-", reason)
    return RowIssue(row, "-", str(exc))


def _coerce(it: Any, value: Any) -> Any:
    """A flat (CSV/JSON) value to the JSON type the model expects for the item."""
    if it.fmt in ("ans", "cn"):
        if isinstance(value, bool):
            return value
        return str(value) if isinstance(value, int | float) else value
    if it.kind == "flag":
        if isinstance(value, str):
            low = value.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
        return value
    if it.kind == "code":
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        return value
    return value


def to_card_json(row: int, values: Mapping[str, Any]) -> tuple[dict[str, Any], list[RowIssue]]:
    """Flat or nested input -> nested card JSON (layout keys, pinyin codes), plus key issues."""
    issues: list[RowIssue] = []
    if any(key in _NESTED_KEYS for key in values):
        return dict(values), issues
    nested: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        try:
            it = item(key)
        except LayoutError:
            issues.append(RowIssue(row, key, "not a data item code or name", _short(value)))
            continue
        file_key = _LAYOUT_KEY.get(it.layout)
        if file_key is None:
            issues.append(RowIssue(row, it.code, f"item of {it.layout} cannot be given as a "
                                                 "column (use nested JSON Lines)", _short(value),
                                   it.no, it.name))
            continue
        target = nested.setdefault(file_key, {})
        if it.code in target:
            issues.append(RowIssue(row, it.code, "given twice (code and name)", _short(value),
                                   it.no, it.name))
            continue
        target[it.code] = _coerce(it, value)
    return nested, issues


def _prune(value: Any) -> Any:
    """Drop empty items so the stored record stays small."""
    if isinstance(value, dict):
        out = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in ("", None, {}, [])}
    if isinstance(value, list):
        items = [_prune(v) for v in value]
        return items if any(v not in (None, {}, "") for v in items) else []
    return value


IssuerCheck = Callable[[Mapping[str, Any]], list[tuple[str, str]]]
"""``check_record`` of the issuer: ``(field, reason)`` pairs for a record it cannot issue."""


class RecordChecker:
    """Checks one row with the model (and, when given, the issuer's ``check_record``, e.g. the
    profile's rules); returns the stored record or the row's issues."""

    required: tuple[str, ...] = ("XM",)

    def __init__(self, issuer_check: IssuerCheck | None = None) -> None:
        self.issuer_check = issuer_check

    def __call__(self, row: InputRow) -> RowVerdict:
        if row.problem is not None:
            return RowVerdict(row.row, None, None, None, (RowIssue(row.row, "-", row.problem),))
        nested, issues = to_card_json(row.row, row.values)
        try:
            data = CardData.from_json(nested, "auto")
        except ModelError as exc:
            issues.append(_issue(row.row, exc))
            return RowVerdict(row.row, None, None, None, tuple(issues))
        issues.extend(_issue(row.row, exc) for exc in data.validate())
        record = _prune(data.to_json("code"))
        issuer = record.setdefault("DDF1EF05", {})
        holder = record.get("DDF1EF06", {})
        documents = record.get("DF01EF08", {})
        id_number = holder.get("SFZH") or documents.get("ZJHM")
        card_number = issuer.get("KH") or id_number
        for code in self.required:
            it = item(code)
            if not record.get(_LAYOUT_KEY[it.layout], {}).get(code):
                issues.append(RowIssue(row.row, code, "required item is missing", None, it.no,
                                       it.name))
        if not card_number:
            it = item("SFZH")
            issues.append(RowIssue(row.row, "SFZH", "need a resident ID number (SFZH), an ID "
                                                    "document number (ZJHM) or a card number "
                                                    "(KH)", None, it.no, it.name))
        elif "KH" not in issuer:
            issuer["KH"] = card_number
            if item("KH").length < len(str(card_number).encode("gbk", "replace")):
                issues.append(RowIssue(row.row, "KH", "card number taken from the ID number "
                                                      "is too long", _short(card_number)))
        if not issues and self.issuer_check is not None:
            issues.extend(_issuer_issue(row.row, code, reason)
                          for code, reason in self.issuer_check(record))
        if issues:
            return RowVerdict(row.row, None, card_number, id_number, tuple(issues))
        return RowVerdict(row.row, record, card_number, id_number)


def _issuer_issue(row: int, code: str, reason: str) -> RowIssue:
    try:
        it = item(code)
    except LayoutError:
        return RowIssue(row, code, f"the issuer cannot issue it: {reason}")
    return RowIssue(row, it.code, f"the issuer cannot issue it: {reason}", None, it.no, it.name)


@dataclass
class DuplicateIndex:
    """Card and ID numbers of the valid rows seen so far -> their row. Costs about 200 bytes
    per row; the load into a journal keeps one per chunk only and lets the journal's unique
    indexes find duplicates between chunks."""

    cards: dict[str, int] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def check(self, verdict: RowVerdict) -> RowVerdict:
        issues = list(verdict.issues)
        for label, code, number, seen in (
            ("card number", "KH", verdict.card_number, self.cards),
            ("ID number", "SFZH", verdict.id_number, self.ids),
        ):
            first = seen.get(number) if number else None
            if first is not None and first != verdict.row:
                issues.append(RowIssue(verdict.row, code, f"duplicate {label}: also on row "
                                                          f"{first}", _short(number)))
        if len(issues) == len(verdict.issues):
            if verdict.valid:
                for number, seen in ((verdict.card_number, self.cards),
                                     (verdict.id_number, self.ids)):
                    if number:
                        seen.setdefault(number, verdict.row)
            return verdict
        return RowVerdict(verdict.row, None, verdict.card_number, verdict.id_number,
                          tuple(issues))


def validate_rows(rows: Iterable[InputRow], checker: RecordChecker | None = None
                  ) -> Iterator[RowVerdict]:
    """Validate a stream of rows: model checks plus duplicates inside the stream."""
    checker = checker or RecordChecker()
    duplicates = DuplicateIndex()
    for row in rows:
        yield duplicates.check(checker(row))


@dataclass
class ValidationReport:
    """Counts and issues of a validation pass (``--validate-only`` writes it as JSON)."""

    file: str
    encoding: str
    format: str
    fingerprint: str
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    issues: list[RowIssue] = field(default_factory=list)

    @classmethod
    def for_file(cls, info: FileInfo) -> ValidationReport:
        return cls(str(info.path), info.encoding, info.format, info.fingerprint)

    def add(self, verdict: RowVerdict) -> None:
        self.rows += 1
        if verdict.valid:
            self.valid += 1
        else:
            self.invalid += 1
            self.issues.extend(verdict.issues)

    def add_issues(self, row: int, issues: Iterable[Mapping[str, Any]]) -> None:
        """Count a row that the journal turned invalid at load time."""
        self.valid -= 1
        self.invalid += 1
        for issue in issues:
            self.issues.append(RowIssue(row, str(issue.get("field", "-")),
                                        str(issue.get("reason", "")),
                                        issue.get("value")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "encoding": self.encoding, "format": self.format,
            "sha256": self.fingerprint, "rows": self.rows, "valid": self.valid,
            "invalid": self.invalid,
            "issues": [issue.to_dict() for issue in sorted(self.issues, key=lambda i: i.row)],
        }

    def write(self, path: str | Path) -> None:
        """Write the report as JSON (mode 0600: it quotes resident values)."""
        write_file(path, json.dumps(self.to_dict(), ensure_ascii=False, indent=2) + "\n")

    def lines(self, limit: int = 50) -> list[str]:
        """Human lines: one per issue (up to ``limit``)."""
        out = [f"{self.file}: {self.rows} rows, {self.valid} valid, {self.invalid} invalid "
               f"({self.encoding}, {self.format})"]
        for issue in sorted(self.issues, key=lambda i: i.row)[:limit]:
            value = f" [{issue.value}]" if issue.value is not None else ""
            out.append(f"  row {issue.row}: {issue.field}: {issue.reason}{value}")
        if len(self.issues) > limit:
            out.append(f"  ... {len(self.issues) - limit} more (see the JSON report)")
        return out
