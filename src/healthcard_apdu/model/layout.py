"""The national card layout as data: DFs, EFs, keys and the 385 data items.

The description lives in ``data/files.json`` (DFs, EFs, key inventory) and ``data/items.json``
(one row per data item); this module loads it into frozen dataclasses and offers look-ups.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, cast

from .errors import LayoutError

Fmt = Literal["cn", "ans", "b"]
Kind = Literal[
    "text",  # ans free text (GBK)
    "numeric_text",  # ans holding digits only (security code)
    "phone",  # ans phone number
    "id_number",  # ans 18-character resident ID number (GB 11643)
    "date",  # cn4 YYYYMMDD
    "datetime",  # cn7 YYYYMMDDhhmmss
    "code",  # code-table value (cn digits, ans, or b1 int)
    "number",  # cn digits (counts, days, organisation codes)
    "decimal",  # cn digits with an optional '.' (stored as nibble A; uncertain)
    "region",  # cn3 GB/T 2260 region code
    "flag",  # b1 T/F: 01 true, 00 false, FF not recorded
    "index_flag",  # b1 record-valid flag: 00 valid, FF invalid
    "binary",  # b raw bytes (certificates, signatures)
    "photo",  # b 2-byte length + JPEG
]
Structure = Literal["tlv_records", "transparent", "cyclic", "linear_fixed"]
Diversification = Literal["card", "card+city"]

STRUCTURES: tuple[Structure, ...] = ("tlv_records", "transparent", "cyclic", "linear_fixed")


@dataclass(frozen=True)
class Item:
    """One national data item and where it lives.

    Location: TLV record files use ``record`` (and ``tag`` = item number); cyclic, index and
    transparent files use ``offset`` inside the record or file (``record`` is None).
    """

    no: int
    tag: int | None
    code: str
    code_is_national: bool
    name: str
    name_zh: str
    fmt: Fmt
    length: int
    layout: str
    record: int | None
    offset: int | None
    kind: Kind
    table: str | None
    standard: str | None
    aliases: tuple[str, ...]

    @property
    def end(self) -> int:
        """Offset just past the item (offset-located items only)."""
        if self.offset is None:
            raise LayoutError(f"item {self.no} {self.code} is located by record, not offset")
        return self.offset + self.length

    @property
    def tlv_length(self) -> int:
        """Length of the item's TLV record: tag, length byte and the full fixed value."""
        return 2 + self.length

    def __repr__(self) -> str:
        return f"Item({self.no}, {self.code}, {self.name})"


@dataclass(frozen=True)
class DF:
    """A dedicated file (MF, DDF1, DF01-DF03)."""

    name: str
    fid: int
    parent: str | None
    role: str
    df_name: bytes
    df_name_certain: bool


@dataclass(frozen=True)
class EF:
    """An elementary file with its structure and access keys.

    ``read_key`` None means free read; ``write_key`` None means no rewrite after issuance.
    ``layout`` names the item layout (EE01-EE03 share "DF03/EE", ED01-ED05 share "DF03/ED").
    """

    path: str
    df: str
    fid: int
    name: str
    name_zh: str
    structure: Structure
    size: int | None
    record_count: int | None
    record_length: int | None
    data_length: int | None
    read_key: str | None
    write_key: str | None
    erase_key: str | None
    layout: str
    note: str | None

    @property
    def items(self) -> tuple[Item, ...]:
        return layout_items(self.layout)

    def record_lengths(self) -> dict[int, int]:
        """Record number -> record length (TLV files: 2 + item length)."""
        if self.structure == "tlv_records":
            return {i.record: i.tlv_length for i in self.items if i.record is not None}
        if self.record_count is not None and self.record_length is not None:
            return dict.fromkeys(range(1, self.record_count + 1), self.record_length)
        raise LayoutError(f"{self.path} is a transparent file and has no records")


@dataclass(frozen=True)
class Key:
    """One user-card key and the SAM key that computes its cryptograms
    (docs/reference/healthcard-layout.md §3.2)."""

    name: str
    df: str
    role: str
    card_key_ref: int
    sam_usage: int
    sam_key_index: int
    sam_p2_version_bits: bool
    diversification: Diversification
    key_count: int
    key_length: int
    note: str | None

    @property
    def uses_city_factor(self) -> bool:
        return self.diversification == "card+city"

    def sam_p2(self, version: int = 1) -> int:
        """P2 of the SAM ``80 DE`` command: ``(version << 5) | index``, or the bare index for
        the STK keys (trace form, see docs/reference/healthcard-layout.md §3.2,
        'The STK P2 conflict')."""
        if not 0 <= version <= 7:
            raise LayoutError(f"key {self.name}: key version must be 0..7, got {version}")
        if not self.sam_p2_version_bits:
            return self.sam_key_index
        return (version << 5) | self.sam_key_index


@dataclass(frozen=True)
class SamFileInfo:
    """A SAM/PSAM file (docs/reference/healthcard-layout.md §4.2); all are transparent and free to
    read."""

    path: str
    fid: int
    sfi: int
    size: int
    content: str


def _load_json(name: str) -> Any:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return json.loads(text)


def _hex_int(text: str) -> int:
    return int(text, 16)


def _load_items() -> tuple[Item, ...]:
    rows = _load_json("items.json")
    return tuple(
        Item(
            no=r["no"],
            tag=r["tag"],
            code=r["code"],
            code_is_national=r["code_is_national"],
            name=r["name"],
            name_zh=r["name_zh"],
            fmt=r["fmt"],
            length=r["len"],
            layout=r["file"],
            record=r["record"],
            offset=r["offset"],
            kind=r["kind"],
            table=r["table"],
            standard=r["standard"],
            aliases=tuple(r["aliases"]),
        )
        for r in rows
    )


_FILES = _load_json("files.json")

ITEMS: tuple[Item, ...] = _load_items()
"""All items, in item-number order."""

DFS: tuple[DF, ...] = tuple(
    DF(
        name=d["name"],
        fid=_hex_int(d["fid"]),
        parent=d["parent"],
        role=d["role"],
        df_name=bytes.fromhex(d["df_name"]),
        df_name_certain=d["df_name_certain"],
    )
    for d in _FILES["dfs"]
)

EFS: tuple[EF, ...] = tuple(
    EF(
        path=e["path"],
        df=e["path"].split("/")[0],
        fid=_hex_int(e["path"].split("/")[1]),
        name=e["name"],
        name_zh=e["name_zh"],
        structure=e["structure"],
        size=e.get("size"),
        record_count=e.get("record_count"),
        record_length=e.get("record_length"),
        data_length=e.get("data_length"),
        read_key=e["read_key"],
        write_key=e["write_key"],
        erase_key=e["erase_key"],
        layout=e["layout"],
        note=e["note"],
    )
    for e in _FILES["efs"]
)

KEYS: tuple[Key, ...] = tuple(
    Key(
        name=k["name"],
        df=k["df"],
        role=k["role"],
        card_key_ref=_hex_int(k["card_key_ref"]),
        sam_usage=_hex_int(k["sam_usage"]),
        sam_key_index=_hex_int(k["sam_key_index"]),
        sam_p2_version_bits=k["sam_p2_version_bits"],
        diversification=cast(Diversification, k["diversification"]),
        key_count=k["key_count"],
        key_length=16,
        note=k["note"],
    )
    for k in _FILES["keys"]
)

SAM_FILES: tuple[SamFileInfo, ...] = tuple(
    SamFileInfo(
        path=f["path"], fid=_hex_int(f["fid"]), sfi=f["sfi"], size=f["size"], content=f["content"]
    )
    for f in _FILES["sam_files"]
)

LAYOUTS: tuple[str, ...] = tuple(dict.fromkeys(e.layout for e in EFS))
"""Item layouts in card order: one per EF, except DF03/EE and DF03/ED shared by 3 and 5 files."""

_ITEM_INDEX: dict[int | str, Item] = {}
for _item in ITEMS:
    _keys: tuple[int | str, ...] = (_item.no, _item.code, _item.name, *_item.aliases)
    for _key in _keys:
        if _key in _ITEM_INDEX:
            raise LayoutError(f"duplicate item key {_key!r} in items.json")
        _ITEM_INDEX[_key] = _item

_BY_LAYOUT: dict[str, tuple[Item, ...]] = {
    name: tuple(
        sorted(
            (i for i in ITEMS if i.layout == name),
            key=lambda i: (i.record or 0, i.offset or 0),
        )
    )
    for name in LAYOUTS
}
_EF_INDEX: dict[str, EF] = {}
for _ef in EFS:
    for _key in (_ef.path, _ef.name, _ef.path.replace("/", "")):
        _EF_INDEX[_key.upper()] = _ef
_DF_INDEX = {d.name: d for d in DFS}
_KEY_INDEX = {k.name: k for k in KEYS}


def item(key: int | str) -> Item:
    """Look an item up by number, pinyin code (or alias) or English name."""
    try:
        return _ITEM_INDEX[key]
    except KeyError:
        raise LayoutError(f"no data item {key!r}") from None


def layout_items(layout: str) -> tuple[Item, ...]:
    """Items of one layout in file order (record number, then offset)."""
    try:
        return _BY_LAYOUT[layout]
    except KeyError:
        raise LayoutError(f"no item layout {layout!r}; known: {', '.join(LAYOUTS)}") from None


def ef(key: str) -> EF:
    """Look an EF up by path ("DF03/EE02"), compact path ("DF03EE02") or name ("inpatient_2")."""
    try:
        return _EF_INDEX[key.upper()]
    except KeyError:
        raise LayoutError(f"no elementary file {key!r}") from None


def df(name: str) -> DF:
    try:
        return _DF_INDEX[name.upper()]
    except KeyError:
        raise LayoutError(f"no dedicated file {name!r}") from None


def key(name: str) -> Key:
    try:
        return _KEY_INDEX[name]
    except KeyError:
        raise LayoutError(f"no key {name!r}") from None


def files_of_layout(layout: str) -> tuple[EF, ...]:
    """The EFs that use a layout (three for DF03/EE, five for DF03/ED, else one)."""
    files = tuple(e for e in EFS if e.layout == layout)
    if not files:
        raise LayoutError(f"no item layout {layout!r}")
    return files


def items_in_range(layout: str, pos: int, length: int) -> tuple[Item, ...]:
    """Items of a transparent layout covered by bytes ``pos .. pos+length-1``.

    The range must start and end on item boundaries (as the national ``nPos``/``nLen`` do).
    """
    if files_of_layout(layout)[0].structure != "transparent":
        raise LayoutError(f"layout {layout} is not a transparent file")
    items = [i for i in layout_items(layout) if i.offset is not None]
    end = pos + length
    starts = {i.offset for i in items}
    ends = {i.end for i in items}
    if length <= 0 or pos not in starts or end not in ends:
        raise LayoutError(
            f"{layout}: range pos={pos} len={length} does not start and end on item boundaries"
        )
    return tuple(i for i in items if i.offset is not None and pos <= i.offset and i.end <= end)


def iter_tree() -> Iterator[tuple[DF, tuple[EF, ...]]]:
    """DFs in card order with the EFs directly under each."""
    for d in DFS:
        yield d, tuple(e for e in EFS if e.df == d.name)
