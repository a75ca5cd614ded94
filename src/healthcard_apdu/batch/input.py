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

    Without ``encoding``: UTF-8 (with or without BOM) when every byte decodes as UTF-8, else GBK
    when every byte decodes as GBK, else :class:`InputError` naming the line of the first bad
    byte. JSON Lines files are always UTF-8 (RFC 8259), so only that is tried for them.
    """
    path = Path(path)
    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise InputError(str(path), None, f"unknown encoding {encoding!r}") from None
    digest = hashlib.sha256()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    gbk = codecs.getincrementaldecoder("gbk")()
    utf8_bad: int | None = None  # line of the first byte that is not UTF-8
    gbk_bad: int | None = None
    line = 1
    size = 0
    head = b""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(str(path), None, f"cannot open: {exc.strerror or exc}") from None
    with handle:
        while chunk := handle.read(_CHUNK):
            if not head:
                head = chunk[:64]
            digest.update(chunk)
            size += len(chunk)
            if encoding is None:
                if utf8_bad is None:
                    utf8_bad = _feed(utf8, chunk, line)
                if gbk_bad is None:
                    gbk_bad = _feed(gbk, chunk, line)
            line += chunk.count(b"\n")
        if encoding is None:
            utf8_bad = utf8_bad if utf8_bad is not None else _feed(utf8, b"", line, final=True)
            gbk_bad = gbk_bad if gbk_bad is not None else _feed(gbk, b"", line, final=True)
    file_format = fmt or _guess_format(path, head)
    if encoding is None:
        if utf8_bad is None:
            encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
        elif file_format == "jsonl":
            raise InputError(str(path), utf8_bad, "JSON Lines file is not valid UTF-8")
        elif gbk_bad is None:
            encoding = "gbk"
        else:
            raise InputError(
                str(path), max(utf8_bad, gbk_bad),
                "neither UTF-8 nor GBK (give the encoding with --encoding)",
            )
    return FileInfo(path, size, digest.hexdigest(), encoding, file_format)


def _feed(decoder: codecs.IncrementalDecoder, chunk: bytes, line: int, final: bool = False
          ) -> int | None:
    """Decode a chunk; on failure return the line number of the offending byte."""
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError as exc:
        return line + chunk[: exc.start].count(b"\n")
    return None


def read_residents(info: FileInfo) -> Iterator[InputRow]:
    """Yield the residents of a scanned file one by one."""
    if info.format == "jsonl":
        yield from _read_jsonl(info)
    else:
        yield from _read_csv(info)


def _read_jsonl(info: FileInfo) -> Iterator[InputRow]:
    with info.path.open("r", encoding=info.encoding, newline="") as handle:
        for number, text in enumerate(handle, start=1):
            stripped = text.strip().lstrip("\ufeff")
            if not stripped:
                continue
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError as exc:
                yield InputRow(number, problem=f"not valid JSON: {exc.msg} at column {exc.colno}")
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
            raise InputError(str(info.path), 1, f"header column {name!r} appears twice")
        seen.add(name)
