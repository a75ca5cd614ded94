"""Code tables with Chinese and English labels (sex, ethnicity, marital status, ...).

Loaded from ``data/code_tables.json``. Codes of cn items are digit strings as stored ("01" for
汉族, "10" for 未婚); codes of b1 items (sex, ABO blood group) are ints.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Literal

from .errors import LayoutError

CodeValue = str | int


@dataclass(frozen=True)
class CodeEntry:
    code: CodeValue
    zh: str
    en: str


@dataclass(frozen=True)
class CodeTable:
    """One code table. ``certain`` is False where the reference marks the values as conflicting
    or inferred (card category, education, ID document type)."""

    name: str
    title: str
    standard: str
    value_type: Literal["str", "int"]
    certain: bool
    entries: tuple[CodeEntry, ...]

    @property
    def codes(self) -> tuple[CodeValue, ...]:
        return tuple(e.code for e in self.entries)

    def __contains__(self, code: object) -> bool:
        return any(e.code == code and type(e.code) is type(code) for e in self.entries)

    def entry(self, code: CodeValue) -> CodeEntry:
        for e in self.entries:
            if e.code == code and type(e.code) is type(code):
                return e
        raise LayoutError(f"code table {self.name}: no code {code!r}")

    def label(self, code: CodeValue, lang: Literal["zh", "en"] = "zh") -> str:
        e = self.entry(code)
        return e.zh if lang == "zh" else e.en


def _load() -> Mapping[str, CodeTable]:
    text = resources.files(__package__).joinpath("data", "code_tables.json").read_text("utf-8")
    raw = json.loads(text)
    tables: dict[str, CodeTable] = {}
    for name, t in raw.items():
        entries = tuple(CodeEntry(code=e["code"], zh=e["zh"], en=e["en"]) for e in t["entries"])
        wanted = int if t["value_type"] == "int" else str
        if any(type(e.code) is not wanted for e in entries):
            raise LayoutError(f"code table {name}: codes must all be {t['value_type']}")
        tables[name] = CodeTable(
            name=name,
            title=t["title"],
            standard=t["standard"],
            value_type=t["value_type"],
            certain=t["certain"],
            entries=entries,
        )
    return MappingProxyType(tables)


CODE_TABLES: Mapping[str, CodeTable] = _load()


def code_table(name: str) -> CodeTable:
    try:
        return CODE_TABLES[name]
    except KeyError:
        raise LayoutError(f"no code table {name!r}") from None
