"""Value formats of the national DLL interface (居民健康卡应用接口技术规范,
docs/reference/healthcard-layout.md §5).

Only formats live here; the function-by-function mapping is in docs/national-api.md.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from .base import FileValue
from .codec import Value, from_dll_string, to_dll_string
from .errors import EncodeError, LayoutError, SchemaError

R = TypeVar("R", bound=FileValue)


class NStyle(enum.IntEnum):
    """``nStyle`` of iR_/iW_DF03EEInfo / EDInfo partial access."""

    NO_STYLE = 0x00
    AN_STYLE = 0x01
    CN_STYLE = 0x0F
    B_STYLE = 0xFF


class IrvCode(enum.IntEnum):
    """Return codes of the national DLL."""

    IRV_OK = 0
    IRV_PARA_ERR = 101
    IRV_NO_FILE = 102
    IRV_RD_RCDERR = 103
    IRV_CARD_ERR = 104
    IRV_PSAM_ERR = 105
    IRV_IRK_VERR = 106
    IRV_RD_BINERR = 107
    IRV_WR_RCDERR = 108
    IRV_WR_BINERR = 109
    IRV_W_DF03EF05ERR = 110
    IRV_ER_DF03EF05ERR = 111
    IRV_RCINVALID = 112
    IRV_DDF1EF07_DATAERR = 113


def _data_slots(record: type[FileValue]) -> list[str]:
    if record.LAYOUT not in ("DF03/EE", "DF03/ED"):
        raise LayoutError(f"ALLInfo strings exist only for DF03/EE and DF03/ED: {record.LAYOUT}")
    limit = record.data_length()
    return [s.field for s in record.slots() if (s.item.offset or 0) < limit]


def format_all_info(record: FileValue) -> str:
    """iR_DF03EE_ALLInfo / ED_ALLInfo text: data items (no signature or certificate) in item
    order joined with '|'; ans as text, cn as digits, b as hex (e.g. flags "01")."""
    fields = _data_slots(type(record))
    slots = {s.field: s for s in record.slots()}
    parts = []
    for f in fields:
        text = to_dll_string(slots[f].item, getattr(record, f))
        if "|" in text:
            raise EncodeError(slots[f].item, text, "'|' cannot be carried in an ALLInfo string")
        parts.append(text)
    return "|".join(parts)


def parse_all_info(record_cls: type[R], text: str) -> R:
    """Inverse of :func:`format_all_info` (one trailing '|' is tolerated)."""
    fields = _data_slots(record_cls)
    parts = text.split("|")
    if len(parts) == len(fields) + 1 and parts[-1] == "":
        parts.pop()
    if len(parts) != len(fields):
        raise SchemaError(
            None,
            len(parts),
            f"ALLInfo needs {len(fields)} '|'-separated values",
            context=record_cls.LAYOUT,
        )
    slots = {s.field: s for s in record_cls.slots()}
    values: dict[str, Value] = {
        f: from_dll_string(slots[f].item, p) for f, p in zip(fields, parts, strict=True)
    }
    return record_cls(**values)
