"""Errors raised by the simulator itself (card answers are status words, not exceptions)."""

from __future__ import annotations

from healthcard_apdu.apdu.errors import HealthCardError


class SimError(HealthCardError):
    """Base of simulator errors."""


class ImageError(SimError):
    """A card image or SAM key file that cannot be read or is malformed."""


class CardMuteError(SimError, ConnectionError):
    """The card does not answer: removed, not powered, or torn (power lost mid-command).

    Subclasses ``ConnectionError`` so that transports can treat it like a lost link.
    """
