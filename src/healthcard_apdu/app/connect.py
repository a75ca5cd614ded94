"""Open a :class:`HealthCard` from connection options (what the CLI's options describe).

User card: a PC/SC reader (``reader``; ``None`` = the first reader holding a card) or a
simulated card image file (``sim_card``; in-process, writes are saved to the image).
Security module (exactly one): a PSAM in a PC/SC reader (``sam_reader``), a software key file
(``keys`` + passphrase) or a simulated SAM key file (``sim_sam``, in-process).

It lives in ``app`` (the composition root) because it opens the simulator too.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from healthcard_apdu.card.errors import ConnectOptionsError
from healthcard_apdu.card.healthcard import HealthCard
from healthcard_apdu.card.sam import Sam
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.security import SecurityModule, SoftwareSecurityModule
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.channel import Channel
from healthcard_apdu.transport.inprocess import InProcessTransport
from healthcard_apdu.transport.trace import Tracer

__all__ = ["CardConnection", "Secret", "open_card"]

Secret = str | Callable[[], str] | None
"""A passphrase or PIN, or a function that asks for it only when it is needed."""


def _resolve(secret: Secret) -> str | None:
    return secret() if callable(secret) else secret


@dataclass
class CardConnection:
    """An open user card with its security module (and SAM); closes everything it opened."""

    card: HealthCard
    security: SecurityModule
    sam: Sam | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list, repr=False)

    def close(self) -> None:
        """Close the card and SAM links (iDClosePort). Idempotent."""
        closers, self._closers = self._closers, []
        for closer in reversed(closers):
            closer()

    def __enter__(self) -> CardConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _pcsc(reader: str | int | None) -> Transport:
    from healthcard_apdu.transport.pcsc import PcscTransport

    return PcscTransport(reader)


def _sim_card(path: Path) -> Transport:
    from healthcard_apdu.sim import SimCard

    return InProcessTransport(SimCard.open(path), name=f"sim:{path}")


def _sim_sam(path: Path) -> Transport:
    from healthcard_apdu.sim import SimSam

    return InProcessTransport(SimSam.from_key_file(path), name=f"sim-sam:{path}")


def open_card(
    *,
    reader: str | int | None = None,
    sim_card: str | os.PathLike[str] | None = None,
    sam_reader: str | int | None = None,
    keys: str | os.PathLike[str] | None = None,
    sim_sam: str | os.PathLike[str] | None = None,
    passphrase: Secret = None,
    sam_pin: Secret = None,
    sam_algorithm: BlockCipher = BlockCipher.SM4,
    trace: Tracer | None = None,
    **card_options: Any,
) -> CardConnection:
    """Connect to the user card and the security module (the national ``iDOpenPort``).

    ``passphrase`` unlocks ``keys``; ``sam_pin`` is verified on the PSAM before its first
    service command (reading works without it on SAMs that allow it; signing needs it).
    ``card_options`` go to :class:`HealthCard`. Errors in the options raise
    :class:`ConnectOptionsError` before anything is opened.
    """
    if reader is not None and sim_card is not None:
        raise ConnectOptionsError("give either a reader or a simulated card image, not both")
    chosen = [
        name
        for name, value in (("sam_reader", sam_reader), ("keys", keys), ("sim_sam", sim_sam))
        if value is not None
    ]
    if len(chosen) != 1:
        raise ConnectOptionsError(
            "give exactly one security module: a PSAM reader, a key file or a simulated SAM"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    closers: list[Callable[[], None]] = []
    try:
        sam: Sam | None = None
        security: SecurityModule
        if keys is not None:
            secret = _resolve(passphrase)
            if not secret:
                raise ConnectOptionsError(f"key file {keys}: no passphrase given")
            security = SoftwareSecurityModule.from_file(keys, secret)
            closers.append(security.close)
        else:
            link = _pcsc(sam_reader) if sim_sam is None else _sim_sam(Path(sim_sam))
            closers.append(link.close)
            sam_channel = Channel(link, trace=trace)
            sam = Sam(sam_channel, pin=_resolve(sam_pin), algorithm=sam_algorithm)
            closers.append(sam.close)
            security = sam.security
        card_link = _pcsc(reader) if sim_card is None else _sim_card(Path(sim_card))
        closers.append(card_link.close)
        card = HealthCard(Channel(card_link, trace=trace), security, **card_options)
    except BaseException:
        for closer in reversed(closers):
            closer()
        raise
    return CardConnection(card, security, sam, closers)
