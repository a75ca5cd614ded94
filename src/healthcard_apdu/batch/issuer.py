"""The narrow interface the batch runner needs from a personalization engine.

The runner never talks to a card's file system itself: it asks a :class:`CardIssuer` who the
card is, to issue it, or to erase it. The real personalizer (``perso``) is adapted to this
protocol; tests use a small issuer that writes a few files with raw APDUs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from healthcard_apdu.transport.base import Transport


@dataclass(frozen=True, slots=True)
class CardIdentity:
    """What a card says about itself before the runner decides what to do with it.

    ``chip_serial`` identifies the physical chip (hex, upper case), ``card_factor`` is the
    8-byte diversification factor as hex, ``issued`` tells whether the card holds a finished
    issuance (its last step was done), and ``card_number`` is the card number (KH) written on
    it, when issued. The versions, when the card tells them, are journaled when a half-done
    row is found complete on its card.
    """

    chip_serial: str
    card_factor: str
    issued: bool
    card_number: str | None = None
    profile_version: str | None = None
    keys_version: str | None = None


@dataclass(frozen=True, slots=True)
class IssueOutcome:
    """What an issuance used: versions only, never key values."""

    profile_version: str
    keys_version: str


@runtime_checkable
class CardIssuer(Protocol):
    """Personalizes one card at a time over a transport. Must be safe to use from one thread
    per reader (one call at a time per transport)."""

    def inspect(self, transport: Transport) -> CardIdentity:
        """Identify the card without writing to it."""
        ...

    def issue(self, transport: Transport, resident: Mapping[str, Any]) -> IssueOutcome:
        """Personalize a blank card for ``resident`` (items keyed by pinyin code); raises on
        any failure (card errors, transport errors)."""
        ...

    def erase(self, transport: Transport) -> None:
        """Return a partly or fully personalized card to the blank state."""
        ...


@runtime_checkable
class RecordCheckingIssuer(Protocol):
    """An issuer that can tell, without a card, why it could not issue a record (optional:
    when the issuer has it, the batch validation runs it on every valid row)."""

    def check_record(self, resident: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(field, reason)`` for each problem (field: item code or file key); empty when
        the record can be issued."""
        ...
