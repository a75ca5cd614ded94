"""Streaming readers for resident files: CSV (UTF-8 or GBK) and JSON Lines.

Nothing here loads a whole file: :func:`scan_file` reads it once in chunks to fingerprint it and
settle the encoding, and :func:`read_residents` yields one row at a time. Row numbers are the
file's line numbers (a CSV header is line 1, so the first resident is row 2; a quoted CSV value
spanning lines counts from the line where its record starts).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from healthcard_apdu.batch.errors import InputError
from healthcard_apdu.fileio import parse_json

Format = Literal["csv", "jsonl"]

_CHUNK = 1 << 16
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_CSV_SUFFIXES = (".csv", ".txt", ".tsv")


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What one pass over a resident file found out."""

    path: Path
    size: int
    fingerprint: str  # sha256 of the bytes, hex
    encoding: str  # a Python codec name: "utf-8-sig", "utf-8" or "gbk" (or what was asked for)
    format: Format


@dataclass(frozen=True, slots=True)
class InputRow:
    """One resident as read: keys as written in the file (pinyin codes or English names).

    Empty CSV cells and JSON nulls are left out. ``problem`` is set when the row could not be
    read as a record at all (bad JSON, wrong number of CSV fields); ``values`` is then empty.
    """

    row: int
    values: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


def _guess_format(path: Path, head: bytes) -> Format:
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _CSV_SUFFIXES:
        return "csv"
    stripped = head.lstrip(codecs.BOM_UTF8).lstrip()
    return "jsonl" if stripped.startswith(b"{") else "csv"


def scan_file(path: str | Path, *, encoding: str | None = None, fmt: Format | None = None
              ) -> FileInfo:
    """Fingerprint the file and settle its encoding in one streaming pass.

    A file is read in one encoding from its first byte to its last, or refused before anything
    is loaded (:class:`InputError` naming the row -- the line -- and the byte):

    * with ``encoding``: every byte must decode in it;
    * without: UTF-8 (with or without BOM) when every byte decodes as UTF-8; else GBK when every
      byte decodes as GBK **and** no line holding non-ASCII text is valid UTF-8 on its own (a
      file that mixes UTF-8 and GBK lines decodes as GBK by accident and would garble every
      UTF-8 name: refused, naming a UTF-8 row and the first row that is not); else refused.
      JSON Lines files are always UTF-8 (RFC 8259), so only that is tried for them.
    """
    path = Path(path)
    if encoding is not None:
        try:
            text_codec = getattr(codecs.lookup(encoding), "_is_text_encoding", True)
        except LookupError:
            text_codec = False
        if not text_codec:  # e.g. "base64" is a codec, but not one of text
            raise InputError(str(path), None, f"unknown encoding {encoding[:40]!r}")
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(str(path), None, f"cannot open: {exc.strerror or exc}") from None
    with handle:
        scan = _Scan([encoding] if encoding is not None else ["utf-8", "gbk"])
        while piece := handle.readline(_CHUNK):
            scan.feed(piece)
        scan.finish()
    file_format = fmt or _guess_format(path, scan.head)
    where = str(path)
    if encoding is not None:
        bad = scan.bad[encoding]
        if bad is not None:
            raise InputError(where, bad.row, f"not valid {encoding}: {bad}")
        return FileInfo(path, scan.size, scan.digest.hexdigest(), encoding, file_format)
    utf8_bad, gbk_bad = scan.bad["utf-8"], scan.bad["gbk"]
    if utf8_bad is None:
        chosen = "utf-8-sig" if scan.head.startswith(codecs.BOM_UTF8) else "utf-8"
    elif file_format == "jsonl":
        raise InputError(where, utf8_bad.row, f"JSON Lines file is not valid UTF-8: {utf8_bad}")
    elif gbk_bad is None and scan.utf8_row is not None:
        raise InputError(
            where, utf8_bad.row,
            f"the file mixes encodings: row {scan.utf8_row} is UTF-8 text, this row is not "
            f"({utf8_bad}); convert the file to one encoding (or force one with --encoding)",
        )
    elif gbk_bad is None:
        chosen = "gbk"
    else:
        first = min(utf8_bad, gbk_bad, key=lambda b: b.offset)
        raise InputError(
            where, first.row,
            f"neither UTF-8 (row {utf8_bad.row}: {utf8_bad}) nor GBK (row {gbk_bad.row}: "
            f"{gbk_bad}); give the encoding with --encoding",
        )
    return FileInfo(path, scan.size, scan.digest.hexdigest(), chosen, file_format)


@dataclass(frozen=True, slots=True)
class _BadByte:
    """Where a byte sequence first failed to decode."""

    row: int  # line number, 1-based
    column: int  # byte offset inside the row, 0-based
    offset: int  # byte offset in the file, 0-based
    value: int

    def __str__(self) -> str:
        return f"byte 0x{self.value:02X} at byte {self.column} of the row (file offset " \
               f"{self.offset})"


class _Scan:
    """One pass over the bytes: digest, size, and per encoding the first byte that does not
    decode; also the first row with non-ASCII text that is valid UTF-8 by itself."""

    def __init__(self, encodings: list[str]) -> None:
        self.digest = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.row = 1
        self.row_start = 0
        self.decoders = {name: codecs.getincrementaldecoder(name)() for name in encodings}
        self.bad: dict[str, _BadByte | None] = dict.fromkeys(encodings)
        self.utf8_row: int | None = None
        self._line = codecs.getincrementaldecoder("utf-8")()
        self._line_ok = True
        self._line_ascii = True

    def feed(self, piece: bytes, final: bool = False) -> None:
        if not self.head:
            self.head = piece[:64]
        start = self.size
        self.digest.update(piece)
        self.size += len(piece)
        for name, decoder in self.decoders.items():
            if self.bad[name] is None:
                self.bad[name] = self._decode(decoder, piece, start, final)
        if "gbk" in self.decoders and self.utf8_row is None:
            self._classify_line(piece, final)
        if piece.endswith(b"\n"):
            self.row += 1
            self.row_start = self.size

    def finish(self) -> None:
        self.feed(b"", final=True)

    def _decode(self, decoder: codecs.IncrementalDecoder, piece: bytes, start: int,
                final: bool) -> _BadByte | None:
        pending = len(decoder.getstate()[0])
        try:
            decoder.decode(piece, final)
        except UnicodeDecodeError as exc:
            # bytes pending from the previous piece belong to this row too: a line break
            # cannot sit inside a multi-byte character of UTF-8 or GBK
            offset = max(start - pending + exc.start, self.row_start)
            value = exc.object[exc.start] if exc.start < len(exc.object) else 0
            return _BadByte(self.row, offset - self.row_start, offset, value)
        return None

    def _classify_line(self, piece: bytes, final: bool) -> None:
        if not piece.isascii():
            self._line_ascii = False
        if self._line_ok:
            try:
                self._line.decode(piece, final or piece.endswith(b"\n"))
            except UnicodeDecodeError:
                self._line_ok = False
        if piece.endswith(b"\n") or final:
            if self._line_ok and not self._line_ascii:
                self.utf8_row = self.row
            self._line.reset()
            self._line_ok, self._line_ascii = True, True


def read_residents(info: FileInfo) -> Iterator[InputRow]:
    """Yield the residents of a scanned file one by one."""
    try:
        if info.format == "jsonl":
            yield from _read_jsonl(info)
        else:
            yield from _read_csv(info)
    except UnicodeDecodeError:  # scan_file checked every byte: the file changed since
        raise InputError(str(info.path), None, f"not valid {info.encoding} any more: the file "
                         "changed after it was scanned") from None


def _read_jsonl(info: FileInfo) -> Iterator[InputRow]:
    with info.path.open("r", encoding=info.encoding, newline="") as handle:
        for number, text in enumerate(handle, start=1):
            stripped = text.strip().lstrip("\ufeff")
            if not stripped:
                continue
            try:
                value = parse_json(stripped)
            except json.JSONDecodeError as exc:
                yield InputRow(number, problem=f"not valid JSON: {exc.msg} at column {exc.colno}")
                continue
            except ValueError as exc:  # too deep, an integer too long, a lone surrogate
                yield InputRow(number, problem=f"not usable JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield InputRow(number, problem=f"a JSON {type(value).__name__}, not an object")
                continue
            values = {str(k).strip(): v for k, v in value.items() if v is not None and v != ""}
            yield InputRow(number, values)


def _read_csv(info: FileInfo) -> Iterator[InputRow]:
    with info.path.open("r", encoding=info.encoding, newline="") as handle:
        sample = handle.read(4096)
        handle.seek(0)
        delimiter = _delimiter(sample)
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(str(info.path), 1, f"header is not valid CSV: {exc}") from None
        columns = [name.strip().lstrip("\ufeff") for name in header]
        _check_header(info, columns)
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise InputError(str(info.path), start, f"not valid CSV: {exc}") from None
            row, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(columns):
                yield InputRow(
                    row, problem=f"has {len(cells)} fields, the header has {len(columns)}"
                )
                continue
            values = {
                name: cell.strip() for name, cell in zip(columns, cells, strict=True)
                if cell.strip()
            }
            yield InputRow(row, values)


def _delimiter(sample: str) -> str:
    first_line = sample.split("\n", 1)[0]
    candidates = [",", "\t", ";", "|"]
    return max(candidates, key=first_line.count) if first_line else ","


def _check_header(info: FileInfo, columns: list[str]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(columns, start=1):
        if not name:
            raise InputError(str(info.path), 1, f"header column {index} has no name")
        if name in seen:
            raise InputError(str(info.path), 1, f"header column {name[:40]!r} appears twice")
        seen.add(name)
