"""In-process transport: any object that answers APDUs (the simulator, test doubles)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.base import (
    CardRemovedError,
    NoCardError,
    ProtocolError,
    Transport,
    TransportError,
)


@runtime_checkable
class CardLike(Protocol):
    """What a card object offers; the simulator implements it structurally (no import needed).

    ``process`` takes a command APDU and returns data || SW1 SW2. ``present`` turning false
    models a removed card. An optional ``reset()`` method is used for warm resets when present,
    an optional ``protocol`` attribute (``"T=0"`` / ``"T=1"``: the mode the card answers in)
    for :attr:`InProcessTransport.protocol`.
    """

    @property
    def present(self) -> bool: ...

    def atr(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes: ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...


_PROTOCOLS = ("T=0", "T=1")


class InProcessTransport(Transport):
    """Transport to a card object living in this process; powers it on when opened."""

    def __init__(self, card: CardLike, *, name: str = "inprocess") -> None:
        self._card = card
        self._name = name
        self._open = False
        if not card.present:
            raise NoCardError(f"{name}: no card present")
        card.power_on()
        self._open = True

    @property
    def name(self) -> str:
        return self._name

    @property
    def card(self) -> CardLike:
        return self._card

    @property
    def protocol(self) -> str | None:
        """The card's own ``protocol`` (the simulator's T=0 / T=1 mode) when it has one, else
        what a PC/SC reader would pick from the ATR (T=1 when offered, else T=0); None when
        neither tells (no card, an unparsable ATR)."""
        own = getattr(self._card, "protocol", None)
        if own in _PROTOCOLS:
            return str(own)
        if not self._open or not self._card.present:
            return None
        try:
            return f"T={parse_atr(bytes(self._card.atr())).preferred_protocol}"
        except AtrError:
            return None

    def _check(self) -> None:
        if not self._open:
            raise TransportError(f"{self._name}: transport is closed")
        if not self._card.present:
            raise CardRemovedError(f"{self._name}: card removed")

    def transmit(self, apdu: bytes) -> bytes:
        self._check()
        try:
            response = bytes(self._card.process(bytes(apdu)))
        except ConnectionError as exc:  # a simulated card that lost power or was pulled goes mute
            raise CardRemovedError(f"{self._name}: card went mute ({exc})") from None
        if len(response) < 2:
            raise ProtocolError(
                f"{self._name}: response of {len(response)} bytes has no status word"
            )
        return response

    def atr(self) -> bytes:
        self._check()
        return bytes(self._card.atr())

    def reset(self, cold: bool = False) -> bytes:
        self._check()
        warm = getattr(self._card, "reset", None)
        if not cold and callable(warm):
            warm()
        else:
            self._card.power_off()
            self._card.power_on()
        return bytes(self._card.atr())

    def close(self) -> None:
        if self._open:
            self._open = False
            if self._card.present:
                self._card.power_off()
