"""What a read reports besides the data: items out of spec, the card-factor check, signatures.

"Read leniently": a real card may hold bytes our encoder would refuse (a cn item with a
non-decimal nibble, text that is not GBK ...). :class:`HealthCard` shows them as a best-effort
value and adds a :class:`CardNotice` naming the file, item and card bytes; ``healthcard read``
prints notices on stderr and in ``--json`` and still exits 0.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from healthcard_apdu.model import DecodeWarning

__all__ = ["CardNotice", "SignatureStatus"]


class SignatureStatus(enum.StrEnum):
    """The SM2 signature of an EE/ED record as read (docs/library.md §4)."""

    SIGNED_VALID = "signed-valid"
    """A signature and certificate are present and the signature verifies over the data."""
    UNSIGNED = "unsigned"
    """No signature (all 00 or FF): normal for records written by terminals in the field."""
    SIGNATURE_INVALID = "signature-invalid"
    """A signature is present and does not verify (or its certificate is unusable)."""
    NOT_CHECKED = "not-checked"
    """Read with verification off."""


@dataclass(frozen=True)
class CardNotice:
    """One notice of a card operation. ``kind`` is ``decode`` (an item out of spec: ``path``,
    ``record``, ``item``, ``code``, card bytes ``raw`` and the value ``shown``), ``factor``
    (the card-factor check followed a rule without confirmation, or another rule than the
    configured one was confirmed), ``signature`` (an EE/ED record's signature status) or
    ``unreadable`` (a file not read because the card lacks its read ``key``: ``path``)."""

    kind: str
    message: str
    path: str | None = None
    record: int | None = None
    item: int | None = None
    code: str | None = None
    raw: str | None = None
    shown: str | None = None
    key: str | None = None

    @classmethod
    def from_decode(cls, warning: DecodeWarning, path: str) -> CardNotice:
        """The notice of a model :class:`DecodeWarning` of the EF ``path``."""
        where = path if warning.record is None else f"{path} record {warning.record}"
        message = dataclasses.replace(warning, context=where).message
        return cls("decode", message, path, warning.record, warning.item.no, warning.item.code,
                   warning.raw.hex().upper(), warning.shown)

    def __str__(self) -> str:
        return self.message

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        for name in ("path", "record", "item", "code", "raw", "shown", "key"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
