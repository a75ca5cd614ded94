"""Signatures of the DF03 clinical records (EE0n items 211/212, ED0n items 383/384).

The SM2 signature covers the record's data bytes (EE 0..1638, ED 0..3012) and the SAM
certificate travels in the record (docs/keys.md §5, docs/spec-choices.md). Used by
:class:`~healthcard_apdu.card.HealthCard` on writes and by personalization.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from healthcard_apdu.model import FileValue, Slot
from healthcard_apdu.security import SecurityModule, sign_record, verify_record
from healthcard_apdu.security.errors import CertificateError

__all__ = ["signature_slots", "signed_record", "valid_signature"]

log = logging.getLogger(__name__)

R = TypeVar("R", bound=FileValue)

_SLOTS: dict[type[FileValue], tuple[Slot, Slot]] = {}  # per layout class, worked out once


def signature_slots(cls: type[FileValue]) -> tuple[Slot, Slot]:
    """The signature and SAM-certificate slots of an EE/ED layout (right after the data)."""
    found = _SLOTS.get(cls)
    if found is None:
        data_length = cls.data_length()
        by_offset = {s.item.offset: s for s in cls.slots()}
        signature = by_offset[data_length]
        found = _SLOTS[cls] = (signature, by_offset[signature.item.end])
    return found


def _blank(raw: bytes) -> bool:
    return not raw.strip(b"\x00") or not raw.strip(b"\xff")


def valid_signature(record: FileValue) -> bool:
    """True when the record carries a signature and certificate that verify over its data."""
    cls = type(record)
    raw = record.to_bytes()
    signature_slot, certificate_slot = signature_slots(cls)
    signature = raw[signature_slot.item.offset : signature_slot.item.end]
    certificate = raw[certificate_slot.item.offset : certificate_slot.item.end]
    if _blank(signature) or _blank(certificate):
        return False
    try:
        return verify_record(raw[: cls.data_length()], signature, certificate)
    except CertificateError:
        return False


def signed_record(record: R, security: SecurityModule, *, keep_valid: bool = True) -> R:
    """``record`` with its signature and SAM-certificate items filled by ``security``.

    With ``keep_valid`` a signature that already verifies over the data is kept as it is.
    Raises the security module's error when it cannot sign (no SM2 key or signer).
    """
    if keep_valid and valid_signature(record):
        return record
    cls = type(record)
    data = record.to_bytes()[: cls.data_length()]
    signature = sign_record(security, data)
    certificate = security.certificate()
    log.debug("signed a %s (%d data bytes) with %s", cls.__name__, len(data), security.name)
    signature_slot, certificate_slot = signature_slots(cls)
    return record.replace(**{signature_slot.field: signature, certificate_slot.field: certificate})
