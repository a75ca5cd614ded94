"""docs/national-api.md covers every function and error code of the national DLL
(docs/reference/healthcard-layout.md §5)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from healthcard_apdu import model

ROOT = Path(__file__).resolve().parents[1]
LAYOUT_MD = ROOT / "docs" / "reference" / "healthcard-layout.md"
NATIONAL_MD = ROOT / "docs" / "national-api.md"

_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|\-\s]+", line):
            rows.append([c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]])
    return rows


def _reference_section_5() -> str:
    text = LAYOUT_MD.read_text(encoding="utf-8")
    start = text.index("\n## 5. ")
    return text[start : text.index("\n## 6. ", start)]


def _expand_functions(cell: str) -> list[str]:
    """'iR_ / iW_DF03EDInfo, iR_ / iW_DF03ED_ALLInfo' -> the four function names, etc."""
    names: list[str] = []
    for part in cell.replace("`", "").split(", "):
        tokens = [t.strip() for t in part.split(" / ")]
        full = [t for t in tokens if not t.endswith("_") and not t.startswith("_")]
        stem_match = re.fullmatch(r"(i[A-Za-z]*_)(.+)", full[0])
        for token in tokens:
            if token.endswith("_"):  # "iR_" prefix sharing the stem of the next full name
                assert stem_match is not None
                names.append(token + stem_match.group(2))
            elif token.startswith("_"):  # "_Terminal" replaces the last segment
                names.append(full[0].rsplit("_", 1)[0] + token)
            else:
                names.append(token)
    return names


def _reference_functions() -> dict[str, str]:
    """Function name -> parameter cell (user-card table) or signature."""
    out: dict[str, str] = {}
    for cells in _table_rows(_reference_section_5()):
        if len(cells) < 2 or cells[0] in ("Function", "Code") or cells[0].isdigit():
            continue
        for name in _expand_functions(cells[0]):
            out[name] = cells[1]
    return out


def _reference_error_codes() -> dict[int, str]:
    return {
        int(cells[0]): cells[1]
        for cells in _table_rows(_reference_section_5())
        if cells and cells[0].isdigit()
    }


def _doc_rows() -> list[list[str]]:
    text = NATIONAL_MD.read_text(encoding="utf-8")
    return _table_rows(text[: text.index("## Vendor extensions")])


def _doc_functions() -> dict[str, str]:
    out: dict[str, str] = {}
    for cells in _doc_rows():
        m = re.fullmatch(r"`(\w+)`", cells[0])
        if m and not cells[0].startswith("`IRV_"):
            assert m.group(1) not in out, f"{m.group(1)} listed twice"
            out[m.group(1)] = cells[1]
    return out


def test_every_national_function_is_mapped() -> None:
    reference = set(_reference_functions())
    assert len(reference) >= 45  # sanity: the parse found all the tables (49 in 2024)
    documented = _doc_functions()
    assert sorted(reference - set(documented)) == []
    assert sorted(set(documented) - reference) == []
    for name, call in documented.items():
        assert re.search(r"`[\w.]+\(.*\)", call), f"{name}: no library call given"


def test_every_error_code_is_mapped() -> None:
    reference = _reference_error_codes()
    assert {c.value: c.name for c in model.IrvCode} == reference
    documented = {
        int(cells[0]): (cells[1].strip("`"), cells[2])
        for cells in _doc_rows()
        if len(cells) == 3 and cells[0].isdigit()
    }
    assert {code: name for code, (name, _) in documented.items()} == reference
    assert all(text for _, text in documented.values())


def test_nstyle_values_match_reference() -> None:
    found = dict(re.findall(r"(\w+_style) (0x[0-9A-F]{2})", _reference_section_5()))
    assert {k.upper(): int(v, 16) for k, v in found.items()} == {
        s.name: s.value for s in model.NStyle
    }


def _parameter_codes(cell: str) -> list[str]:
    codes: list[str] = []
    for token in re.sub(r"\(.*?\)", "", cell).split(","):
        word = token.strip().strip("`").split()[-1] if token.strip() else ""
        if m := re.fullmatch(r"([A-Z]+)(\d+) … \1(\d+)", token.strip()):
            codes += [f"{m.group(1)}{n}" for n in range(int(m.group(2)), int(m.group(3)) + 1)]
        elif re.fullmatch(r"[A-Z][A-Z0-9]*", word):
            codes.append(word)
    return codes


def test_file_function_parameters_follow_item_order() -> None:
    checked = 0
    documented = _doc_functions()
    for name, params in _reference_functions().items():
        m = re.fullmatch(r"i(?:R|W|Erase)_(DDF1|DF0\d)(EF0\d)Info", name)
        if not m:
            continue
        cls = model.file_class(f"{m.group(1)}/{m.group(2)}")
        codes = _parameter_codes(params)
        if name.startswith("iR_"):
            assert f"model.{cls.__name__}" in documented[name], name
        if not codes:  # iW_/iErase_DF03EF05Info take only a record number
            continue
        checked += 1
        if cls.slots()[0].item.kind == "index_flag":
            assert codes == [s.json_code for s in cls.slots()], name
        else:
            assert [model.item(c) for c in codes] == [s.item for s in cls.slots()], name
    assert checked >= 20


def test_all_info_strings_round_trip() -> None:
    card = model.sample_resident()
    inpatient, outpatient = card.inpatient[0], card.outpatient[0]
    assert inpatient is not None and outpatient is not None
    text = model.format_all_info(inpatient)
    assert text.count("|") == 210 - 64  # items 64..210
    assert text.startswith("示例市第一人民医院|4000012345|20230910|1|")
    assert model.parse_all_info(model.InpatientRecord, text) == inpatient
    assert model.parse_all_info(model.InpatientRecord, text + "|") == inpatient
    out_text = model.format_all_info(outpatient)
    assert out_text.count("|") == 382 - 213
    assert model.parse_all_info(model.OutpatientRecord, out_text) == outpatient
    with pytest.raises(model.SchemaError, match="147"):
        model.parse_all_info(model.InpatientRecord, "a|b")
    with pytest.raises(model.EncodeError, match=r"'\|'"):
        model.format_all_info(inpatient.replace(medical_record_number="A|B"))
    with pytest.raises(model.LayoutError):
        model.format_all_info(card.holder)
