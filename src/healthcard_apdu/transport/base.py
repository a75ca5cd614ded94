"""The link interface every transport implements, and the transport errors.

A transport moves raw APDU bytes to a card and back; it knows nothing about status words,
T=0 procedure bytes or chaining (that is :mod:`healthcard_apdu.transport.channel`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

from healthcard_apdu.apdu.errors import HealthCardError


class TransportError(HealthCardError):
    """The link to the card failed."""


class NoReaderError(TransportError):
    """No reader, or not the reader asked for."""


class ServiceUnavailableError(NoReaderError):
    """The PC/SC service (pcscd) does not answer."""


class NoCardError(TransportError):
    """The reader holds no card."""


class CardRemovedError(TransportError):
    """The card was removed (or reset by someone else) while in use."""


class ReaderBusyError(TransportError):
    """Another application holds the reader (exclusive connect refused)."""


class ProtocolError(TransportError):
    """The card broke the transmission procedure (endless 61xx, truncated R-APDU, ...)."""


class ReplayMismatch(TransportError):
    """A replayed exchange differs from the transcript.

    ``step`` is the 1-based exchange number; ``expected`` and ``got`` are hex strings in which
    secret positions are masked with ``*``.
    """

    def __init__(self, step: int, expected: str, got: str, reason: str = "command differs") -> None:
        self.step = step
        self.expected = expected
        self.got = got
        super().__init__(
            f"replay step {step}: {reason}: expected {expected or '-'}, got {got or '-'}"
        )


class Transport(ABC):
    """A link that sends raw command APDUs and returns raw responses (data || SW1 SW2)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """Short description for traces and messages, e.g. ``pcsc:Virtual PCD 00 00``."""

    @property
    def protocol(self) -> str | None:
        """Active transmission protocol (``"T=0"``/``"T=1"``) when the link knows it."""
        return None

    @abstractmethod
    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU, return the raw response including the status word."""

    @abstractmethod
    def atr(self) -> bytes:
        """The card's answer to reset."""

    @abstractmethod
    def reset(self, cold: bool = False) -> bytes:
        """Warm reset (or power cycle when ``cold``); returns the new ATR."""

    @abstractmethod
    def close(self) -> None:
        """Release the card and reader. Idempotent."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ForwardingTransport(Transport):
    """A transport that passes everything to ``inner``; subclasses override what they watch.

    ``close`` closes the inner transport unless ``owns_inner`` is False (the caller keeps it).
    """

    def __init__(self, inner: Transport, *, owns_inner: bool = True) -> None:
        self.inner = inner
        self.owns_inner = owns_inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def protocol(self) -> str | None:
        return self.inner.protocol

    def transmit(self, apdu: bytes) -> bytes:
        return self.inner.transmit(apdu)

    def atr(self) -> bytes:
        return self.inner.atr()

    def reset(self, cold: bool = False) -> bytes:
        return self.inner.reset(cold)

    def close(self) -> None:
        if self.owns_inner:
            self.inner.close()
