"""The layout description proven against docs/reference/healthcard-layout.md.

The reference tables are parsed at test time and compared item by item and file by file.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from healthcard_apdu import model
from healthcard_apdu.model import layout

LAYOUT_MD = Path(__file__).resolve().parents[1] / "docs" / "reference" / "healthcard-layout.md"

DASH = "[–-]"  # the reference uses en dashes in ranges


def _section(title_prefix: str) -> str:
    text = LAYOUT_MD.read_text(encoding="utf-8")
    start = text.index(f"\n{title_prefix}")
    level = title_prefix.split(" ")[0]
    nxt = re.search(rf"\n#{{2,{len(level)}}} ", text[start + 1 :])
    return text[start : start + 1 + nxt.start()] if nxt else text[start:]


def _rows(section: str) -> list[list[str]]:
    rows = []
    for line in section.splitlines():
        if not line.startswith("|") or re.fullmatch(r"[|\-\s]+", line):
            continue
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # drop the header row


def _range(text: str, base: int = 10) -> list[int]:
    m = re.fullmatch(rf"([0-9A-Fa-f]+){DASH}([0-9A-Fa-f]+)", text.strip())
    if m:
        return list(range(int(m.group(1), base), int(m.group(2), base) + 1))
    return [int(text.strip(), base)]


# --- §2.2 items 1-63 and the photo ------------------------------------------------------------


def _reference_items_1_63() -> dict[int, dict[str, object]]:
    """Item number -> attributes from the §2.2 table."""
    out: dict[int, dict[str, object]] = {}
    for cells in _rows(_section("### 2.2 ")):
        number, file, rec, api, zh, _en, fmt, length = cells[:8]
        if number == "—":  # the photo row (item 385 in the 华大 list)
            out[385] = {
                "file": file,
                "record": None,
                "tag": None,
                "code": api,
                "fmt": fmt,
                "len": int(length),
                "zh": zh,
            }
            continue
        m = re.fullmatch(r"(\d+) \((\d+)\)", number)
        if m:  # two raw fields of a cyclic record: "58 (59)"
            nos = [int(m.group(1)), int(m.group(2))]
            codes = [c.strip() for c in re.sub(r"\(.*?\)", "", api).split("+")]
            fmts = [f.strip() for f in fmt.split("+")]
            lens = [int(x) for x in length.split("+")]
            names = [z.strip() for z in zh.split("+")]
            offset = 0
            for no, code, f, ln, name in zip(nos, codes, fmts, lens, names, strict=True):
                out[no] = {
                    "file": file,
                    "record": None,
                    "tag": None,
                    "code": code,
                    "fmt": f,
                    "len": ln,
                    "zh": name,
                    "offset": offset,
                    "records": _range(rec[7:]),
                }
                offset += ln
            continue
        if "/" not in number:  # index flags "62": one item over records 1..n
            code = re.sub(r"\d*\.\.\d+$", "", api)
            out[int(number)] = {
                "file": file,
                "record": None,
                "tag": None,
                "code": code,
                "fmt": fmt,
                "len": int(length),
                "zh": zh,
                "records": _range(rec),
            }
            continue
        no_text, tag_text = (x.strip() for x in number.split("/"))
        nos, tags, recs = _range(no_text), _range(tag_text, 16), _range(rec)
        codes = [c.strip() for c in api.split(",")]
        fmts = fmt.split("/") if len(nos) > 1 else [fmt]
        lens = [int(x) for x in length.split("/")] if len(nos) > 1 else [int(length)]
        for i, no in enumerate(nos):
            out[no] = {
                "file": file,
                "record": recs[i],
                "tag": tags[i],
                "code": codes[i],
                "fmt": fmts[i],
                "len": lens[i],
                "zh": zh if len(nos) == 1 else None,
            }
    return out


def _reference_offset_items(section: str, layout_name: str) -> dict[int, dict[str, object]]:
    out: dict[int, dict[str, object]] = {}
    for cells in _rows(_section(section)):
        no, offset, length, fmt, zh = cells[:5]
        out[int(no)] = {
            "file": layout_name,
            "offset": int(offset),
            "len": int(length),
            "fmt": fmt,
            "zh": zh,
        }
    return out


def test_every_reference_item_is_described_once() -> None:
    tables = [
        _reference_items_1_63(),
        _reference_offset_items("### 2.3 ", "DF03/EE"),
        _reference_offset_items("### 2.4 ", "DF03/ED"),
    ]
    numbers = Counter(n for t in tables for n in t)
    assert [n for n, c in numbers.items() if c > 1] == []
    assert sorted(numbers) == list(range(1, 386))
    assert [i.no for i in model.ITEMS] == list(range(1, 386))


def test_items_1_to_63_match_reference_table() -> None:
    for no, ref in _reference_items_1_63().items():
        it = model.item(no)
        assert it.layout == ref["file"], no
        assert it.code == ref["code"] or ref["code"] in it.aliases, no
        assert it.code_is_national, no
        assert it.fmt == ref["fmt"], no
        assert it.length == ref["len"], no
        assert it.record == ref["record"], no
        assert it.tag == ref["tag"], no
        if ref["zh"] is not None:
            assert it.name_zh in str(ref["zh"]), no
        if "offset" in ref:
            assert it.offset == ref["offset"], no
        if "records" in ref:
            ef = model.files_of_layout(it.layout)[0]
            assert list(range(1, (ef.record_count or 0) + 1)) == ref["records"], no


@pytest.mark.parametrize(
    ("section", "layout_name", "size", "data_length"),
    [("### 2.3 ", "DF03/EE", 1893, 1639), ("### 2.4 ", "DF03/ED", 3267, 3013)],
)
def test_record_file_offsets_match_reference(
    section: str, layout_name: str, size: int, data_length: int
) -> None:
    ref = _reference_offset_items(section, layout_name)
    ours = {i.no: i for i in model.layout_items(layout_name)}
    assert sorted(ours) == sorted(ref)
    for no, r in ref.items():
        it = ours[no]
        assert (it.offset, it.length, it.fmt, it.name_zh) == (
            r["offset"],
            r["len"],
            r["fmt"],
            r["zh"],
        ), no
        assert not it.code_is_national and it.tag is None and it.record is None
    # The section header states the size, and the full read/write covers the data part.
    heading = _section(section).splitlines()[1]
    assert f"{size} bytes" in heading
    assert f"0..{data_length - 1} ({data_length} bytes)" in _section(section) or (
        f"0..{data_length - 1}" in _section(section)
    )
    for ef in model.files_of_layout(layout_name):
        assert (ef.size, ef.data_length) == (size, data_length)


@pytest.mark.parametrize("layout_name", model.LAYOUTS)
def test_offsets_add_up_and_nothing_overlaps(layout_name: str) -> None:
    ef = model.files_of_layout(layout_name)[0]
    items = model.layout_items(layout_name)
    if ef.structure == "tlv_records":
        assert [i.record for i in items] == list(range(1, len(items) + 1))
        assert ef.record_count == len(items)
        assert all(i.tag == i.no and i.offset is None for i in items)
        return
    position = 0
    for it in items:
        assert it.offset == position, (layout_name, it)
        position = it.end
    expected = ef.size if ef.structure == "transparent" else ef.record_length
    assert position == expected


def test_codes_names_and_flags_are_unique_and_well_formed() -> None:
    codes = [c for i in model.ITEMS for c in (i.code, *i.aliases)]
    names = [i.name for i in model.ITEMS]
    assert len(codes) == len(set(codes))
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"[A-Z][A-Z0-9]*", c) for c in codes)
    assert all(re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", n) for n in names)
    national = {i.no for i in model.ITEMS if i.code_is_national}
    assert national == set(range(1, 64)) | {385}
    for it in model.ITEMS:
        if it.table is not None:
            assert it.table in model.CODE_TABLES
            wanted = "int" if it.fmt == "b" else "str"
            assert model.code_table(it.table).value_type == wanted, it


def test_index_flag_items_cover_all_records() -> None:
    assert model.InpatientIndex.slots()[-1].json_code == "ZYJLBS3"
    assert model.OutpatientIndex.slots()[-1].json_code == "MZJLBS5"
    assert model.ef("DF03/EF05").record_count == 3
    assert model.ef("DF03/EF06").record_count == 5


# --- §1.2 file attributes ---------------------------------------------------------------------

_KEY = re.compile(r"(?:RK|UK)\d_D+F\d*")


def _reference_files() -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    previous: dict[str, object] = {}
    for cells in _rows(_section("### 1.2 ")):
        path, _name, structure, size, read, write = cells[:6]
        notes = cells[6] if len(cells) > 6 else ""
        df_name, efs = path.split("/")
        if m := re.fullmatch(rf"(E[EFD])(\d\d){DASH}E[EFD](\d\d)", efs):
            names = [f"{m.group(1)}{n:02d}" for n in range(int(m.group(2)), int(m.group(3)) + 1)]
        else:
            names = [efs]
        if "as EF05" in structure:
            structure = str(previous["structure"])
        sizes = [s.strip() for s in size.split(" / ")] if " / " in size else [size] * len(names)
        write_keys = _KEY.findall(write)
        for ef_name, ef_size in zip(names, sizes, strict=True):
            entry: dict[str, object] = {
                "structure": structure,
                "read": (_KEY.findall(read) or [None])[0],
                "write": write_keys[0] if write_keys else None,
                "erase": write_keys[1] if len(write_keys) > 1 else None,
                "notes": notes,
            }
            if m2 := re.fullmatch(r"(\d+) × (\d+) B.*", ef_size):
                entry["records"] = (int(m2.group(1)), int(m2.group(2)))
            elif m2 := re.fullmatch(r"(\d+) B.*", ef_size):
                entry["size"] = int(m2.group(1))
            else:
                entry["record_count"] = int(ef_size.split()[0])
            out[f"{df_name}/{ef_name}"] = entry
            previous = entry
    return out


def test_files_match_reference_attributes() -> None:
    ref = _reference_files()
    assert sorted(ref) == sorted(e.path for e in model.EFS)
    structures = {
        "TLV": "tlv_records",
        "transparent": "transparent",
        "cyclic": "cyclic",
        "linear fixed": "linear_fixed",
    }
    for path, r in ref.items():
        ef = model.ef(path)
        expected = next(v for k, v in structures.items() if str(r["structure"]).startswith(k))
        assert ef.structure == expected, path
        assert (ef.read_key, ef.write_key, ef.erase_key) == (r["read"], r["write"], r["erase"]), (
            path
        )
        if "records" in r:
            assert (ef.record_count, ef.record_length) == r["records"], path
        elif "size" in r:
            assert ef.size == r["size"], path
        else:
            assert ef.record_count == r["record_count"], path
        # EE/ED notes give the data/signature/certificate split
        if m := re.search(
            rf"0{DASH}(\d+) data, (\d+){DASH}(\d+) .*signature, (\d+){DASH}(\d+)", str(r["notes"])
        ):
            data_end, sig_start, sig_end, cert_start, cert_end = map(int, m.groups())
            sig, cert = model.layout_items(ef.layout)[-2:]
            assert ef.data_length == data_end + 1 == sig.offset == sig_start
            assert (sig.end, cert.offset, cert.end) == (sig_end + 1, cert_start, cert_end + 1)


def test_df_names_match_the_traced_fcis() -> None:
    text = LAYOUT_MD.read_text(encoding="utf-8").replace(" ", "")
    for d in model.DFS:
        assert d.df_name.hex().upper() in text, d.name  # FCI tag 84 or the tree's "DF name seen"
    assert model.df("DDF1").df_name == b"WS.SYS.DDF01"
    assert model.df("DDF1").df_name_certain
    assert not model.df("DF03").df_name_certain


# --- §3.2 key inventory -----------------------------------------------------------------------


def test_key_inventory_matches_reference() -> None:
    seen = set()
    for cells in _rows(_section("### 3.2 ")):
        name, _role, ref, p1, index, diversification = cells[:6]
        names = [name]
        if m := re.fullmatch(r"(LK_DF)(\d\d)/(\d\d)/(\d\d)", name):
            names = [f"{m.group(1)}{n}" for n in m.groups()[1:]]
        indexes = index.split()[0].split("/")
        for key_name, idx in zip(
            names, indexes if len(indexes) > 1 else indexes * len(names), strict=True
        ):
            k = model.key(key_name)
            seen.add(key_name)
            assert k.card_key_ref == int(ref.split()[0], 16), key_name
            assert k.sam_usage == int(p1, 16), key_name
            assert k.sam_key_index == int(idx, 16), key_name
            assert k.diversification == diversification.replace(" ", ""), key_name
            if m2 := re.search(r"→ `([0-9A-F]{2})`", index):
                assert k.sam_p2(1) == int(m2.group(1), 16), key_name
    assert seen == {k.name for k in model.KEYS}


def test_stk_keys_use_the_traced_p2_form() -> None:
    assert model.key("STK_DDF1").sam_p2(1) == 0x02
    assert model.key("RK1_DF03").sam_p2(1) == 0x34
    with pytest.raises(model.LayoutError):
        model.key("RK1_DF03").sam_p2(8)


def test_every_access_key_exists_and_belongs_to_the_files_df() -> None:
    for ef in model.EFS:
        for key_name in (ef.read_key, ef.write_key, ef.erase_key):
            if key_name is not None:
                assert model.key(key_name).df == ef.df, (ef.path, key_name)


def test_lookups() -> None:
    assert model.item("XM") is model.item(11) is model.item("name")
    assert model.item("GMWZFY") is model.item("GMFY")
    assert model.ef("DF03EE02") is model.ef("inpatient_2") is model.ef("df03/ee02")
    assert model.ef("DF03/EE02").layout == "DF03/EE"
    assert [e.path for e in model.files_of_layout("DF03/ED")][-1] == "DF03/ED05"
    assert [d.name for d, _ in layout.iter_tree()] == ["MF", "DDF1", "DF01", "DF02", "DF03"]
    for bad in (
        lambda: model.item("NOPE"),
        lambda: model.ef("DF09/EF01"),
        lambda: model.key("XX"),
        lambda: model.df("DF09"),
        lambda: model.layout_items("DF04/EF01"),
        lambda: model.code_table("x"),
    ):
        with pytest.raises(model.LayoutError):
            bad()


def test_items_in_range_needs_item_boundaries() -> None:
    assert [i.no for i in model.items_in_range("DF03/EE", 80, 4)] == [66]
    assert [i.no for i in model.items_in_range("DF03/EE", 0, 1639)] == list(range(64, 211))
    for pos, length in ((81, 4), (80, 5), (0, 0)):
        with pytest.raises(model.LayoutError):
            model.items_in_range("DF03/EE", pos, length)
    with pytest.raises(model.LayoutError):
        model.items_in_range("DDF1/EF05", 0, 1)


def test_record_lengths() -> None:
    assert model.ef("DDF1/EF05").record_lengths()[3] == 32  # tag, len, 30 bytes of FKJGMC
    assert model.ef("DF02/EF07").record_lengths() == {1: 120, 2: 120, 3: 120}
    with pytest.raises(model.LayoutError):
        model.ef("DF03/EE01").record_lengths()


def test_sam_files() -> None:
    assert [(f.fid, f.sfi, f.size) for f in model.SAM_FILES] == [
        (0x15, 21, 14),
        (0x16, 22, 6),
        (0x1A, 26, 25),
        (0x1B, 27, 180),
        (0x1C, 28, 190),
    ]
