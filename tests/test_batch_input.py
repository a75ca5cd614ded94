"""Resident file readers: encodings, headers, JSON Lines, row numbers, streaming."""

from __future__ import annotations

import codecs
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from healthcard_apdu.batch.errors import InputError
from healthcard_apdu.batch.input import read_residents, scan_file

HEADER = "XM,XB,SFZH\n"


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_utf8_csv_rows_and_line_numbers(tmp_path: Path) -> None:
    text = HEADER + "张三,1,110105198503171231\n\n李四,2,110105198503171231\n"
    info = scan_file(_write(tmp_path / "r.csv", text.encode()))
    assert info.encoding == "utf-8"
    assert info.format == "csv"
    assert info.fingerprint == hashlib.sha256(text.encode()).hexdigest()
    rows = list(read_residents(info))
    assert [r.row for r in rows] == [2, 4]  # the blank line 3 is skipped, numbering is kept
    assert rows[0].values == {"XM": "张三", "XB": "1", "SFZH": "110105198503171231"}


def test_utf8_bom_is_detected_and_stripped(tmp_path: Path) -> None:
    data = codecs.BOM_UTF8 + (HEADER + "张三,1,X\n").encode()
    info = scan_file(_write(tmp_path / "r.csv", data))
    assert info.encoding == "utf-8-sig"
    (row,) = read_residents(info)
    assert set(row.values) == {"XM", "XB", "SFZH"}


def test_gbk_csv_is_detected(tmp_path: Path) -> None:
    data = (HEADER + "欧阳娜娜,2,110105198503171231\n").encode("gbk")
    info = scan_file(_write(tmp_path / "r.csv", data))
    assert info.encoding == "gbk"
    (row,) = read_residents(info)
    assert row.values["XM"] == "欧阳娜娜"


def test_explicit_encoding_wins(tmp_path: Path) -> None:
    data = (HEADER + "张三,1,X\n").encode("gb18030")
    info = scan_file(_write(tmp_path / "r.csv", data), encoding="gb18030")
    assert info.encoding == "gb18030"
    assert next(iter(read_residents(info))).values["XM"] == "张三"


def test_unknown_encoding_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown encoding"):
        scan_file(_write(tmp_path / "r.csv", b"XM\n"), encoding="no-such-codec")


def test_neither_utf8_nor_gbk_names_the_line(tmp_path: Path) -> None:
    data = (HEADER + "a,1,2\n").encode() + b"\x80\x20,1,2\n"
    with pytest.raises(InputError) as info:
        scan_file(_write(tmp_path / "r.csv", data))
    assert info.value.row == 3
    assert "--encoding" in str(info.value)


def test_a_file_mixing_utf8_and_gbk_lines_is_refused(tmp_path: Path) -> None:
    """4 UTF-8 rows and one GBK row are valid GBK as a whole: decoded so, 居民0 became
    灞呮皯0 on the cards. Refused before anything is read, naming both rows."""
    utf8 = "".join(f"居民{i},1,X\n" for i in range(4)).encode()
    data = HEADER.encode() + utf8 + "居民4,2,X\n".encode("gbk")
    data.decode("gbk")  # the trap: the whole file is valid GBK
    with pytest.raises(InputError) as info:
        scan_file(_write(tmp_path / "r.csv", data))
    assert info.value.row == 6
    assert "mixes encodings: row 2 is UTF-8" in str(info.value)
    assert f"file offset {len(HEADER) + len(utf8)})" in str(info.value)
    assert "byte 0x{:02X} at byte 0 of the row".format("居".encode("gbk")[0]) in str(info.value)


def test_a_gbk_row_that_happens_to_be_ascii_is_no_mix(tmp_path: Path) -> None:
    data = (HEADER + "Li Si,1,X\n欧阳娜娜,2,X\n").encode("gbk")
    assert scan_file(_write(tmp_path / "r.csv", data)).encoding == "gbk"


@pytest.mark.parametrize("encoding", ["gbk", "ascii"])
def test_a_forced_encoding_still_refuses_bytes_invalid_in_it(tmp_path: Path,
                                                               encoding: str) -> None:
    """``--encoding gbk`` / ``ascii`` on a UTF-8 file: an input error with row and byte
    position, found by the scan (before the journal is touched), not a UnicodeDecodeError."""
    data = (HEADER + "Zhang,1,X\n" + "王五丽,2,X\n").encode()
    with pytest.raises(InputError) as info:
        scan_file(_write(tmp_path / "r.csv", data), encoding=encoding)
    assert info.value.row == 3
    assert f"not valid {encoding}: byte 0x" in str(info.value)
    assert "of the row (file offset" in str(info.value)


def test_a_forced_encoding_is_used_for_a_mixed_file(tmp_path: Path) -> None:
    data = HEADER.encode() + "居民0,1,X\n".encode() + "居民4,2,X\n".encode("gbk")
    info = scan_file(_write(tmp_path / "r.csv", data), encoding="gbk")
    assert info.encoding == "gbk"  # the operator's explicit choice


def test_a_file_changed_after_the_scan_is_an_input_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", (HEADER + "a,1,X\n").encode())
    info = scan_file(path)
    path.write_bytes((HEADER + "a,1,X\n").encode() + b"\xff\xfe,1,X\n")
    with pytest.raises(InputError, match="changed after it was scanned"):
        list(read_residents(info))


def test_a_non_text_codec_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown encoding"):
        scan_file(_write(tmp_path / "r.csv", b"XM\n"), encoding="base64")


@pytest.mark.parametrize(("line", "message"), [
    ('{"XM": ' + "1" * 5000 + "}", "more digits than can be converted"),
    ('{"XM": "\\ud800"}', "lone surrogate"),
    ("[" * 100_000, "nested too deeply"),
])
def test_jsonl_rows_that_json_cannot_use_are_row_problems(tmp_path: Path, line: str,
                                                          message: str) -> None:
    path = _write(tmp_path / "r.jsonl", (line + "\n" + '{"XM": "ok"}\n').encode())
    bad, good = read_residents(scan_file(path))
    assert bad.row == 1 and bad.problem is not None and message in bad.problem
    assert bad.problem.isascii()  # nothing of the bad value (no surrogate) is echoed
    assert good.values == {"XM": "ok"}


def test_english_header_quoted_multiline_and_field_count(tmp_path: Path) -> None:
    text = ('name,sex,resident_id_number\n"Wang\nWu",1,X\n'
            "only,two\n"
            "a,1,b\n")
    info = scan_file(_write(tmp_path / "r.csv", text.encode()))
    rows = list(read_residents(info))
    assert rows[0].row == 2 and rows[0].values["name"] == "Wang\nWu"
    assert rows[1].row == 4 and rows[1].problem == "has 2 fields, the header has 3"
    assert rows[2].row == 5 and rows[2].values == {"name": "a", "sex": "1",
                                                  "resident_id_number": "b"}


def test_semicolon_and_tab_delimiters(tmp_path: Path) -> None:
    for sep in (";", "\t"):
        text = f"XM{sep}XB\n张三{sep}1\n"
        info = scan_file(_write(tmp_path / f"r{ord(sep)}.csv", text.encode()))
        assert next(iter(read_residents(info))).values == {"XM": "张三", "XB": "1"}


@pytest.mark.parametrize("header, message", [
    ("XM,,SFZH\n", "column 2 has no name"),
    ("XM,XB,XM\n", "appears twice"),
])
def test_bad_headers(tmp_path: Path, header: str, message: str) -> None:
    info = scan_file(_write(tmp_path / "r.csv", (header + "a,b,c\n").encode()))
    with pytest.raises(InputError, match=message):
        list(read_residents(info))


def test_jsonl_rows_problems_and_nulls(tmp_path: Path) -> None:
    lines = [
        json.dumps({"XM": "张三", "XB": 1, "MZ": None}, ensure_ascii=False),
        "",
        "{not json",
        "[1, 2]",
        json.dumps({"holder": {"name": "李四"}}, ensure_ascii=False),
    ]
    info = scan_file(_write(tmp_path / "r.jsonl", "\n".join(lines).encode()))
    assert info.format == "jsonl"
    rows = list(read_residents(info))
    assert [r.row for r in rows] == [1, 3, 4, 5]
    assert rows[0].values == {"XM": "张三", "XB": 1}
    assert rows[1].problem is not None and rows[1].problem.startswith("not valid JSON")
    assert rows[2].problem == "a JSON list, not an object"
    assert rows[3].values == {"holder": {"name": "李四"}}


def test_jsonl_must_be_utf8(tmp_path: Path) -> None:
    data = json.dumps({"XM": "张三"}, ensure_ascii=False).encode("gbk")
    with pytest.raises(InputError, match="not valid UTF-8"):
        scan_file(_write(tmp_path / "r.jsonl", data))


def test_format_sniffed_without_suffix(tmp_path: Path) -> None:
    assert scan_file(_write(tmp_path / "r.dat", b'{"XM": "a"}\n')).format == "jsonl"
    assert scan_file(_write(tmp_path / "s.dat", b"XM\na\n")).format == "csv"


def test_reader_is_lazy(tmp_path: Path) -> None:
    """Rows are produced one at a time: a bad line late in the file does not stop early rows."""
    body = "".join(f"n{i},1,X\n" for i in range(1000))
    info = scan_file(_write(tmp_path / "r.csv", (HEADER + body + '"unterminated').encode()))
    stream = read_residents(info)
    first = next(stream)
    assert first.row == 2
    rest = list(stream)
    assert len(rest) == 1000  # the unterminated quote ends the file as one last record


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="张三李四王五赵六abcXYZ019 ", min_size=1, max_size=12),
                min_size=1, max_size=20),
       st.sampled_from(["utf-8", "gbk"]))
def test_csv_round_trip(tmp_path_factory: pytest.TempPathFactory, names: list[str],
                        encoding: str) -> None:
    path = tmp_path_factory.mktemp("rt") / "r.csv"
    lines = ["XM,XB"] + [f'"{name}",1' for name in names]
    data = ("\n".join(lines) + "\n").encode(encoding)
    if encoding == "gbk":
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            assume(False)  # GBK bytes that are also valid UTF-8 cannot be told apart
    path.write_bytes(data)
    info = scan_file(path)
    assert info.encoding == encoding
    got = [row.values.get("XM", "") for row in read_residents(info)]
    assert got == [name.strip() for name in names]
