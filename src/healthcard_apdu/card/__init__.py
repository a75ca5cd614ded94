"""Card layer: the user card (:class:`HealthCard`) and the SAM (:class:`Sam`) as typed objects.

``HealthCard`` reads and writes every file of the national layout through a channel and a
security module; ``Sam`` offers the national SAM functions; ``open_card`` builds both from
connection options (PC/SC readers, key files or the simulator). See docs/library.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from healthcard_apdu.card.errors import (
    CardOperationError,
    ConnectOptionsError,
    NotWritable,
    RecordInvalid,
    SignatureInvalid,
)
from healthcard_apdu.card.healthcard import DEFAULT_CHUNK, HealthCard, SignMode
from healthcard_apdu.card.sam import Sam
from healthcard_apdu.card.session import CardSession

if TYPE_CHECKING:
    from healthcard_apdu.card.connect import CardConnection, open_card

__all__ = [
    "DEFAULT_CHUNK",
    "CardConnection",
    "CardOperationError",
    "CardSession",
    "ConnectOptionsError",
    "HealthCard",
    "NotWritable",
    "RecordInvalid",
    "Sam",
    "SignMode",
    "SignatureInvalid",
    "open_card",
]


def __getattr__(name: str) -> Any:
    """``open_card`` / ``CardConnection`` are imported on use (they may load the simulator)."""
    if name in ("open_card", "CardConnection"):
        from healthcard_apdu.card import connect

        return getattr(connect, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
