"""Every cited section exists, and no citation points outside the repository.

Citations look like ``docs/reference/healthcard-layout.md §3.4`` (also ``§1.2, §3.3``,
``§1.1–1.2``, ``§1–§3``) for the reference and ``docs/cos.md §7`` for the project's own documents.
They appear in code, docstrings, conformance ``reference=`` fields, docs, scripts and test vectors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"
SCANNED = ("src", "tests", "docs", "scripts", "bench", "test_vectors", "README.md")
SUFFIXES = {".py", ".md", ".toml", ".json", ".txt", ".sh", ".cfg", ".yml", ".yaml", ".html"}
REFERENCE_FILES = ("healthcard-layout", "cos-crypto", "ehealth-card", "anchors")

_NUMBER = r"\d+(?:\.\d+)*"
_ONE = rf"§\s?{_NUMBER}(?:\s*[–-]\s*§?{_NUMBER})?"
CITATION = re.compile(
    rf"(?<![\w/.-])`?(docs/(?:reference/)?[\w-]+\.md)`?"
    rf"((?:(?:\s*[,/;&]\s*|\s+and\s+|\s+)?{_ONE})*)"
)
SECTION = re.compile(rf"§\s?({_NUMBER})(?:\s*[–-]\s*§?({_NUMBER}))?")
HEADING = re.compile(rf"^#{{1,6}}\s+({_NUMBER})\.?\s", re.MULTILINE)

#: Old citation forms: the sibling folder, bare reference names, "reference §", the conventions
#: file (now docs/cos.md). Spelled in pieces so that a grep for them does not find this file.
_SIBLING, _CONVENTIONS = "shared", "conventions"
OLD_FORMS = {
    "sibling folder": re.compile(rf"\.\./{_SIBLING}|{_SIBLING}/reference|/work/{_SIBLING}"),
    "bare reference file name": re.compile(
        rf"(?<![\w/.-])(?:{'|'.join(REFERENCE_FILES)})\.md(?!\")"
    ),
    "bare 'cos-crypto §'": re.compile(r"(?<![\w/.-])cos-crypto\s*§"),
    "bare 'reference §'": re.compile(r"(?<![\w/.-])reference\s*§\s*\d"),
    "conventions file (now docs/cos.md)": re.compile(rf"{_CONVENTIONS}\.md"),
}


def _reference(name: str) -> Path:
    return REFERENCE / f"{name}.md"


def _scanned_files() -> Iterator[Path]:
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            yield path
            continue
        for file in sorted(path.rglob("*")):
            if file.is_file() and file.suffix in SUFFIXES and "__pycache__" not in file.parts:
                yield file


def _sections(document: Path) -> set[str]:
    return set(HEADING.findall(document.read_text(encoding="utf-8")))


def citation_problems(text: str, where: str) -> list[str]:
    """Problems of the citations in ``text``: missing documents or sections."""
    problems: list[str] = []
    sections_of: dict[Path, set[str]] = {}
    for match in CITATION.finditer(text):
        document = ROOT / match.group(1)
        line = text.count("\n", 0, match.start()) + 1
        if not document.is_file():
            problems.append(f"{where}:{line}: {match.group(1)} does not exist")
            continue
        if document not in sections_of:
            sections_of[document] = _sections(document)
        for first, last in SECTION.findall(match.group(2)):
            for number in (first, last):
                if number and number not in sections_of[document]:
                    problems.append(f"{where}:{line}: {match.group(1)} has no §{number}")
    return problems


def old_form_problems(text: str, where: str) -> list[str]:
    """Citations that still use a form from before the reference moved into docs/reference/."""
    problems = []
    for label, pattern in OLD_FORMS.items():
        for match in pattern.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"{where}:{line}: {label}: {match.group(0)!r}")
    return problems


def test_reference_documents_are_in_the_repository() -> None:
    for name in REFERENCE_FILES:
        assert _reference(name).is_file(), name
    assert (REFERENCE / "README.md").is_file()


def test_every_cited_section_exists() -> None:
    problems: list[str] = []
    checked = 0
    for file in _scanned_files():
        if file == Path(__file__).resolve():
            continue  # its examples cite missing sections on purpose
        text = file.read_text(encoding="utf-8")
        checked += len(CITATION.findall(text))
        problems += citation_problems(text, str(file.relative_to(ROOT)))
    assert problems == []
    assert checked > 100  # sanity: the scan found the citations (about 250 in 2025)


def test_no_citation_points_outside_the_repository() -> None:
    problems: list[str] = []
    for file in _scanned_files():
        if file == Path(__file__).resolve() or REFERENCE in file.parents:
            continue  # this file spells the old forms; the reference names its siblings
        problems += old_form_problems(
            file.read_text(encoding="utf-8"), str(file.relative_to(ROOT))
        )
    assert problems == []


def test_vector_rows_exist_in_the_reference_table() -> None:
    text = _reference("cos-crypto").read_text(encoding="utf-8")
    table = text[text.index("\n## 5. ") : text.index("\n## 6. ")]
    rows = {int(m) for m in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    cited: set[int] = set()
    for file in sorted((ROOT / "test_vectors").glob("*.json")):
        for vector in json.loads(file.read_text(encoding="utf-8")).get("vectors", []):
            cited.update(vector.get("ref_rows", []))
            if "ref_row" in vector:
                cited.add(vector["ref_row"])
    assert cited, "no vector cites a reference row"
    assert sorted(cited - rows) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see docs/reference/healthcard-layout.md §3.4", []),
        ("(docs/reference/healthcard-layout.md §1.2, §3.3)", []),
        ("docs/reference/healthcard-layout.md §1.1–1.2 and docs/cos.md §7", []),
        ("`docs/reference/healthcard-layout.md` §5", []),
        ("docs/reference/healthcard-layout.md §3.11", ["has no §3.11"]),
        ("`docs/reference/healthcard-layout.md` §3.11", ["has no §3.11"]),
        ("docs/reference/healthcard-layout.md §3.2, §3.5, §3.7, docs/cos.md §5–§6", []),
        ("docs/reference/healthcard-layout.md §3.2, §3.5, §3.7, docs/cos.md §5–§16", ["§16"]),
        ("docs/reference/healthcard-layout.md §1.2, §9.9", ["has no §9.9"]),
        ("docs/reference/cos-crypto.md §1–§8", ["has no §8"]),
        ("docs/cos.md §42", ["has no §42"]),
        (f"docs/reference/{_CONVENTIONS}.md §1", ["does not exist"]),
    ],
)
def test_citation_checker_finds_missing_sections(text: str, expected: list[str]) -> None:
    problems = citation_problems(text, "x")
    assert len(problems) == len(expected)
    for problem, wanted in zip(problems, expected, strict=True):
        assert wanted in problem


@pytest.mark.parametrize(
    "text",
    [
        f"../{_SIBLING}/reference/healthcard-layout" + ".md",
        'reference="healthcard-layout' + '.md §1.2"',
        "(cos-crypto §6.6)",
        "(reference §3.6)",
        f"raw FMCOS APDUs ({_CONVENTIONS}.md)",
    ],
)
def test_old_citation_forms_are_refused(text: str) -> None:
    assert old_form_problems(text, "x")


def test_reference_sections_parsed_by_the_model_tests_exist() -> None:
    layout = _sections(_reference("healthcard-layout"))
    assert {"1.2", "2.2", "2.3", "2.4", "3.2", "3.10", "5"} <= layout
    assert {"1.10", "2.5", "5", "6.6"} <= _sections(_reference("cos-crypto"))
