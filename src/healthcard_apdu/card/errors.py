"""Errors of the card layer.

Status-word failures keep their typed :class:`~healthcard_apdu.apdu.errors.CardError` class
(``AuthenticationFailed``, ``SecurityStatusNotSatisfied``, ``NotFound`` ...); the card layer
re-raises them with the file, record or key in the message (:func:`in_context`). Failures that
only the card layer can detect have their own classes below. No message contains key material.
"""

from __future__ import annotations

from typing import Any

from healthcard_apdu.apdu.errors import CardError, HealthCardError, NotFound

__all__ = [
    "CardOperationError",
    "ConnectOptionsError",
    "KeyNotPresent",
    "NotWritable",
    "RecordInvalid",
    "SignatureInvalid",
    "SignatureMissing",
    "in_context",
]


class CardOperationError(HealthCardError):
    """A card-layer operation failed; ``path`` is the EF ("DF03/EE02"), ``record`` the record."""

    def __init__(self, message: str, *, path: str | None = None, record: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.record = record


class RecordInvalid(CardOperationError):
    """The EE/ED record's index flag is FF (the national ``IRV_RCINVALID``, 112)."""


class SignatureInvalid(CardOperationError):
    """An EE/ED record's SM2 signature does not verify (or its certificate is unusable).

    ``record_value`` holds the decoded record when its bytes still decode (for inspection);
    it must not be trusted.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        record: int | None = None,
        record_value: Any = None,
    ) -> None:
        super().__init__(message, path=path, record=record)
        self.record_value = record_value


class SignatureMissing(SignatureInvalid):
    """An EE/ED record carries no signature while signatures are required
    (``require_signatures``; unsigned records are normal in the field otherwise)."""


class NotWritable(CardOperationError, ValueError):
    """The file cannot be written after issuance (DDF1/EF05, EF06) or through this call."""


class KeyNotPresent(NotFound):
    """EXTERNAL AUTHENTICATE answered ``6A88``: the card does not hold the key (a card family
    without RK keys exists). Not a refused authentication: no try was spent. ``key`` names it."""

    def __init__(
        self,
        sw: int,
        command: str,
        meaning: str,
        retries_left: int | None = None,
        *,
        key: str | None = None,
    ) -> None:
        super().__init__(sw, command, meaning, retries_left)
        self.key = key


class ConnectOptionsError(CardOperationError, ValueError):
    """Contradicting or missing connection options (reader, simulator, security module)."""


def in_context(exc: CardError, where: str) -> CardError:
    """A copy of ``exc`` (same class, SW and tries left) whose message starts with ``where``
    (once: not again when the command's own name already says it)."""
    command = exc.command if exc.command == where else f"{where}: {exc.command}"
    return type(exc)(exc.sw, command, exc.meaning, exc.retries_left)
