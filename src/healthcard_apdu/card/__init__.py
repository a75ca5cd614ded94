"""Card layer: the user card (:class:`HealthCard`) and the SAM (:class:`Sam`) as typed objects.

``HealthCard`` reads and writes every file of the national layout through a channel and a
security module; ``Sam`` offers the national SAM functions. ``healthcard_apdu.app.connect``
builds both from connection options (PC/SC readers, key files or the simulator). See
docs/library.md.
"""

from __future__ import annotations

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

__all__ = [
    "DEFAULT_CHUNK",
    "CardOperationError",
    "CardSession",
    "ConnectOptionsError",
    "HealthCard",
    "NotWritable",
    "RecordInvalid",
    "Sam",
    "SignMode",
    "SignatureInvalid",
]

