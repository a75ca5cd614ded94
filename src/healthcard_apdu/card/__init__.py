"""Card layer: the user card (:class:`HealthCard`) and the SAM (:class:`Sam`) as typed objects.

``HealthCard`` reads and writes every file of the national layout through a channel and a
security module; ``Sam`` offers the national SAM functions. ``healthcard_apdu.app.connect``
builds both from connection options (PC/SC readers, key files or the simulator). The
card-factor confirmation and INTERNAL AUTHENTICATE helpers are :mod:`healthcard_apdu.card.factor`.
See docs/library.md.
"""

from __future__ import annotations

from healthcard_apdu.card.errors import (
    CardOperationError,
    ConnectOptionsError,
    KeyNotPresent,
    NotWritable,
    RecordInvalid,
    SignatureInvalid,
    SignatureMissing,
)
from healthcard_apdu.card.factor import (
    INTERNAL_KEY,
    CardNotGenuine,
    FactorConfirmation,
    FactorNotConfirmed,
    FactorStatus,
    FactorTry,
    InternalAuthentication,
    confirm_card_factor,
    internal_authenticate,
)
from healthcard_apdu.card.healthcard import DEFAULT_CHUNK, HealthCard, SignMode
from healthcard_apdu.card.notices import CardNotice, SignatureStatus
from healthcard_apdu.card.sam import Sam
from healthcard_apdu.card.session import CardSession

__all__ = [
    "DEFAULT_CHUNK",
    "INTERNAL_KEY",
    "CardNotGenuine",
    "CardNotice",
    "CardOperationError",
    "CardSession",
    "ConnectOptionsError",
    "FactorConfirmation",
    "FactorNotConfirmed",
    "FactorStatus",
    "FactorTry",
    "HealthCard",
    "InternalAuthentication",
    "KeyNotPresent",
    "NotWritable",
    "RecordInvalid",
    "Sam",
    "SignMode",
    "SignatureInvalid",
    "SignatureMissing",
    "SignatureStatus",
    "confirm_card_factor",
    "internal_authenticate",
]
