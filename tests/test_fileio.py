"""The leaf file helper every layer writes through: atomic, durable, 0600; bounded parsing."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthcard_apdu import fileio
from healthcard_apdu.fileio import (
    InvalidText,
    create_private,
    open_private,
    parse_json,
    parse_toml,
    write_file,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual 022: without the helper, new files would be 0644."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_write_file_is_0600_atomic_and_fsyncs_file_and_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(fileio.os, "fsync", fsync)
    target = tmp_path / "keys.json"
    write_file(target, "secret")
    assert target.read_text() == "secret" and _mode(target) == 0o600
    assert synced == ["file", "dir"]
    write_file(target, b"public", mode=0o644, durable=False)
    assert target.read_bytes() == b"public" and _mode(target) == 0o644
    assert synced == ["file", "dir"]  # durable=False: no fsync
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]  # no temporary left


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "card.json"
    write_file(target, "old")

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        write_file(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_streamed_files_are_created_0600(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    trace.write_text("x")
    trace.chmod(0o644)
    with open_private(trace) as out:
        out.write("a\n")
    with open_private(trace, append=True) as out:
        out.write("b\n")
    assert trace.read_text() == "a\nb\n" and _mode(trace) == 0o600
    journal = tmp_path / "j.sqlite"
    assert create_private(journal) and not create_private(journal)
    assert _mode(journal) == 0o600 and journal.read_bytes() == b""


@pytest.mark.parametrize(("raw", "message"), [
    ("[" * 100_000, "nested too deeply"),
    ('{"a": ' + "9" * 5000 + "}", "more digits"),
    ('{"a": "\\ud800"}', "lone surrogate"),
    ('{"\\udfff": 1}', "lone surrogate"),
    (b'{"a": "\xff"}', "not UTF-8"),
])
def test_parse_json_turns_every_failure_into_value_error(raw: str | bytes,
                                                         message: str) -> None:
    with pytest.raises(InvalidText, match=message):
        parse_json(raw)


def test_parse_json_reads_what_json_reads() -> None:
    value = {"名": ["居民", 1, 2.5, None, True, {"x": "\U0001F600"}]}
    assert parse_json(json.dumps(value)) == value
    assert parse_json(json.dumps(value, ensure_ascii=False).encode("utf-16")) == value
    with pytest.raises(json.JSONDecodeError):
        parse_json("{")


def test_parse_toml_deep_arrays_are_a_value_error() -> None:
    with pytest.raises(InvalidText, match="nested too deeply"):
        parse_toml("a = " + "[" * 5000 + "]" * 5000)
    assert parse_toml('a = [[1], ["\u5c45"]]') == {"a": [[1], ["居"]]}
