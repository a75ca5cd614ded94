"""Errors of the electronic-health-card layer. Messages name the field and never hold keys.

* :class:`EhcInputError` (exit 2): a value the caller gave is not acceptable -- a person field,
  a QR text that is none of the known forms, a use-record code. ``field`` names it.
* :class:`QrRejected` (exit 1): a well-formed code that does not verify. ``reason`` is one of
  :data:`REJECT_REASONS` (expired, forged, revoked-card, replayed, ...).
* :class:`RegistryError` (exit 2): the local registry refused or is unreachable.
"""

from __future__ import annotations

from typing import Final, Literal

from healthcard_apdu.apdu.errors import HealthCardError

__all__ = [
    "REJECT_REASONS",
    "EhcError",
    "EhcInputError",
    "QrFormatError",
    "QrRejected",
    "RegistryConflict",
    "RegistryError",
    "RejectReason",
]

RejectReason = Literal[
    "expired",
    "not-yet-valid",
    "validity-too-long",
    "bad-validity",
    "forged",
    "unknown-issuer",
    "key-not-valid",
    "revoked-key",
    "revoked-card",
    "revoked-code",
    "replayed",
    "unknown-card",
    "identity-mismatch",
    "unverifiable",
]
REJECT_REASONS: Final[tuple[RejectReason, ...]] = (
    "expired",
    "not-yet-valid",
    "validity-too-long",
    "bad-validity",
    "forged",
    "unknown-issuer",
    "key-not-valid",
    "revoked-key",
    "revoked-card",
    "revoked-code",
    "replayed",
    "unknown-card",
    "identity-mismatch",
    "unverifiable",
)
"""Why a code was rejected (docs/ehc.md §6 says what each one means)."""


class EhcError(HealthCardError):
    """Base of the ehc layer's errors."""


class EhcInputError(EhcError, ValueError):
    """A value given by the caller is not acceptable; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class QrFormatError(EhcInputError):
    """A QR text that is none of the known forms (national static/dynamic, provincial, EHC1)."""


class QrRejected(EhcError):
    """A well-formed code that does not verify (``reason`` in :data:`REJECT_REASONS`)."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        self.reason: RejectReason = reason
        self.detail = message
        super().__init__(f"{reason}: {message}")


class RegistryError(EhcError):
    """The local e-card registry is unreachable, too new, or refused a change."""


class RegistryConflict(RegistryError):
    """The change contradicts the registry (identity registered under another e-card, a card
    number linked to another e-card, a revoked e-card re-issued)."""
