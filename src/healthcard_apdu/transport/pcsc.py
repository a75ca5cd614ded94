"""PC/SC transport through pyscard's low-level ``smartcard.scard`` API.

pyscard is imported lazily, so the rest of the library works without it (or without pcscd).
The protocol is chosen from the parsed ATR (T=1 when offered, else T=0); readers are opened
EXCLUSIVE by default. Errors name the reader.

``python -m healthcard_apdu.transport.pcsc`` lists the readers, card presence and ATRs.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.base import (
    CardRemovedError,
    NoCardError,
    NoReaderError,
    ReaderBusyError,
    ServiceUnavailableError,
    Transport,
    TransportError,
)

_PROTOCOL_NAMES = {1: "T=0", 2: "T=1"}


def _scard() -> Any:
    try:
        from smartcard import scard
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise TransportError(
            "PC/SC needs pyscard (pip install pyscard) and libpcsclite; it is not importable"
        ) from exc
    return scard


def _code(hr: int) -> int:
    return hr & 0xFFFFFFFF


def _error(scard: Any, hr: int, action: str, reader: str = "") -> TransportError:
    """The typed error for a failed SCard call."""
    code = _code(hr)
    where = f" on reader {reader!r}" if reader else ""
    text = f"{action}{where}: {scard.SCardGetErrorMessage(hr)} (0x{code:08X})"

    def same(name: str) -> bool:
        return code == _code(getattr(scard, name))

    if same("SCARD_E_NO_SERVICE") or same("SCARD_E_SERVICE_STOPPED"):
        return ServiceUnavailableError(f"{text}; is pcscd running?")
    if same("SCARD_E_NO_READERS_AVAILABLE") or same("SCARD_E_UNKNOWN_READER"):
        return NoReaderError(text)
    if same("SCARD_E_READER_UNAVAILABLE"):
        return NoReaderError(f"{text}; the reader was removed")
    if same("SCARD_E_NO_SMARTCARD"):
        return NoCardError(text)
    if same("SCARD_W_REMOVED_CARD"):
        return CardRemovedError(text)
    if same("SCARD_W_RESET_CARD"):
        return CardRemovedError(f"{text}; another application reset the card")
    if same("SCARD_E_SHARING_VIOLATION"):
        return ReaderBusyError(f"{text}; another application holds the reader")
    return TransportError(text)


class _Context:
    """An SCard context, released on close."""

    def __init__(self) -> None:
        self.scard = _scard()
        hr, self.handle = self.scard.SCardEstablishContext(self.scard.SCARD_SCOPE_USER)
        if hr != self.scard.SCARD_S_SUCCESS:
            raise _error(self.scard, hr, "SCardEstablishContext")
        self.closed = False

    def readers(self) -> list[str]:
        hr, readers = self.scard.SCardListReaders(self.handle, [])
        if _code(hr) == _code(self.scard.SCARD_E_NO_READERS_AVAILABLE):
            return []
        if hr != self.scard.SCARD_S_SUCCESS:
            raise _error(self.scard, hr, "SCardListReaders")
        return list(readers)

    def state(
        self, reader: str, current: int | None = None, timeout_ms: int = 0
    ) -> tuple[int, bytes]:
        """(event state, ATR) of ``reader``; waits up to ``timeout_ms`` for a change."""
        scard = self.scard
        hr, states = scard.SCardGetStatusChange(
            self.handle,
            timeout_ms,
            [(reader, scard.SCARD_STATE_UNAWARE if current is None else current)],
        )
        if _code(hr) == _code(scard.SCARD_E_TIMEOUT):
            return current or 0, b""
        if hr != scard.SCARD_S_SUCCESS:
            raise _error(scard, hr, "SCardGetStatusChange", reader)
        _, event, atr = states[0]
        if event & scard.SCARD_STATE_UNKNOWN:
            raise NoReaderError(f"reader {reader!r} is unknown; readers: {self.readers()}")
        return int(event), bytes(atr)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.scard.SCardReleaseContext(self.handle)


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    """A reader and what is in it."""

    name: str
    present: bool
    atr: bytes
    in_use: bool
    exclusive: bool


def list_readers() -> list[str]:
    """Names of the PC/SC readers; raises :class:`ServiceUnavailableError` without pcscd."""
    context = _Context()
    try:
        return context.readers()
    finally:
        context.close()


def reader_statuses() -> list[ReaderStatus]:
    """Every reader with card presence and ATR."""
    context = _Context()
    scard = context.scard
    try:
        out = []
        for name in context.readers():
            event, atr = context.state(name)
            out.append(
                ReaderStatus(
                    name,
                    bool(event & scard.SCARD_STATE_PRESENT),
                    atr,
                    bool(event & scard.SCARD_STATE_INUSE),
                    bool(event & scard.SCARD_STATE_EXCLUSIVE),
                )
            )
        return out
    finally:
        context.close()


def reader_status() -> list[dict[str, object]]:
    """Rows for listings (CLI ``healthcard readers``): index, reader, card, atr, protocols."""
    rows: list[dict[str, object]] = []
    for index, status in enumerate(reader_statuses()):
        protocols = ""
        if status.present:
            try:
                protocols = ",".join(f"T={p}" for p in parse_atr(status.atr).protocols)
            except AtrError:
                protocols = "?"
        rows.append(
            {
                "index": index,
                "reader": status.name,
                "card": "present" if status.present else "absent",
                "atr": status.atr.hex().upper(),
                "protocols": protocols,
                "exclusive": status.exclusive,
            }
        )
    return rows


def wait_for_card(reader: str, *, present: bool = True, timeout: float = 10.0) -> bytes:
    """Wait until pcscd sees a card in (or, with ``present=False``, gone from) ``reader``.

    Returns the ATR (``b""`` when waiting for absence). Raises :class:`NoCardError` (or
    :class:`TransportError` when waiting for removal) after ``timeout`` seconds.
    """
    context = _Context()
    scard = context.scard
    deadline = time.monotonic() + timeout
    try:
        current: int | None = None
        while True:
            remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
            event, atr = context.state(reader, current, 0 if current is None else remaining_ms)
            if bool(event & scard.SCARD_STATE_PRESENT) == present:
                return atr if present else b""
            if time.monotonic() >= deadline:
                if present:
                    raise NoCardError(f"no card in reader {reader!r} after {timeout:g} s")
                raise TransportError(f"card still in reader {reader!r} after {timeout:g} s")
            current = event
    finally:
        context.close()


def _choose_reader(readers: list[str], reader: str | int | None, context: _Context) -> str:
    if not readers:
        raise NoReaderError("no PC/SC reader found")
    if isinstance(reader, int):
        if not 0 <= reader < len(readers):
            raise NoReaderError(f"no reader number {reader}; readers: {readers}")
        return readers[reader]
    if reader is None:
        for name in readers:
            event, _ = context.state(name)
            if event & context.scard.SCARD_STATE_PRESENT:
                return name
        raise NoCardError(f"no card in any reader; readers: {readers}")
    if reader in readers:
        return reader
    matches = [name for name in readers if reader.lower() in name.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise NoReaderError(f"reader {reader!r} is ambiguous: {matches}")
    raise NoReaderError(f"no reader {reader!r}; readers: {readers}")


class PcscTransport(Transport):
    """A card in a PC/SC reader.

    ``reader`` is a name (exact, or a unique case-insensitive part), an index into
    :func:`list_readers`, or ``None`` for the first reader holding a card. ``protocol`` forces
    0 (T=0) or 1 (T=1); by default it comes from the ATR. ``disposition`` is what happens to the
    card on close: ``"reset"`` (default: clears the security state), ``"unpower"`` or ``"leave"``.
    The ATR is asked of pcscd once after connecting and after each :meth:`reset`; :meth:`atr`
    returns it without another round trip.
    """

    def __init__(
        self,
        reader: str | int | None = None,
        *,
        exclusive: bool = True,
        protocol: int | None = None,
        disposition: str = "reset",
    ) -> None:
        self._context = _Context()
        scard = self._scard = self._context.scard
        self._handle: Any = None
        self._transmit: Any = None
        self._atr = b""
        try:
            self._reader = _choose_reader(self._context.readers(), reader, self._context)
            self._share = scard.SCARD_SHARE_EXCLUSIVE if exclusive else scard.SCARD_SHARE_SHARED
            self._disposition = {
                "reset": scard.SCARD_RESET_CARD,
                "unpower": scard.SCARD_UNPOWER_CARD,
                "leave": scard.SCARD_LEAVE_CARD,
            }[disposition]
            event, atr = self._context.state(self._reader)
            if not event & scard.SCARD_STATE_PRESENT:
                raise NoCardError(f"no card in reader {self._reader!r}")
            if event & scard.SCARD_STATE_MUTE:
                raise NoCardError(f"the card in reader {self._reader!r} does not answer reset")
            self._protocols = self._wanted_protocols(atr, protocol)
            hr, self._handle, active = scard.SCardConnect(
                self._context.handle, self._reader, self._share, self._protocols
            )
            if _code(hr) == _code(scard.SCARD_E_PROTO_MISMATCH) and protocol is None:
                self._protocols = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
                hr, self._handle, active = scard.SCardConnect(
                    self._context.handle, self._reader, self._share, self._protocols
                )
            if hr != scard.SCARD_S_SUCCESS:
                self._handle = None
                raise _error(scard, hr, "SCardConnect", self._reader)
            self._active = int(active)
            self._transmit = scard.SCardTransmit
            self._atr = self._status_atr()
        except BaseException:
            if self._handle is not None:
                scard.SCardDisconnect(self._handle, scard.SCARD_LEAVE_CARD)
                self._handle = None
            self._context.close()
            raise

    def _wanted_protocols(self, atr: bytes, forced: int | None) -> int:
        scard = self._scard
        by_number = {0: scard.SCARD_PROTOCOL_T0, 1: scard.SCARD_PROTOCOL_T1}
        if forced is not None:
            if forced not in by_number:
                raise TransportError(f"protocol T={forced} is not supported (use 0 or 1)")
            return int(by_number[forced])
        try:
            preferred = parse_atr(atr).preferred_protocol
        except AtrError:
            preferred = -1
        return int(by_number.get(preferred, scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1))

    @property
    def name(self) -> str:
        return f"pcsc:{self._reader}"

    @property
    def reader(self) -> str:
        return self._reader

    @property
    def protocol(self) -> str | None:
        return _PROTOCOL_NAMES.get(self._active)

    def _live_handle(self) -> Any:
        if self._handle is None:
            raise TransportError(f"reader {self._reader!r}: transport is closed")
        return self._handle

    def transmit(self, apdu: bytes) -> bytes:
        handle = self._handle
        if handle is None:
            handle = self._live_handle()  # raises: the transport is closed
        hr, response = self._transmit(handle, self._active, list(apdu))
        if hr:  # not SCARD_S_SUCCESS (0)
            raise _error(self._scard, hr, "SCardTransmit", self._reader)
        return bytes(response)

    def atr(self) -> bytes:
        """The ATR of the card as connected or last reset (asked of pcscd then, not again)."""
        self._live_handle()
        return self._atr

    def _status_atr(self) -> bytes:
        hr, _reader, _state, _protocol, atr = self._scard.SCardStatus(self._live_handle())
        if hr != self._scard.SCARD_S_SUCCESS:
            raise _error(self._scard, hr, "SCardStatus", self._reader)
        return bytes(atr)

    def reset(self, cold: bool = False) -> bytes:
        handle = self._live_handle()
        scard = self._scard
        how = scard.SCARD_UNPOWER_CARD if cold else scard.SCARD_RESET_CARD
        hr, active = scard.SCardReconnect(handle, self._share, self._protocols, how)
        if hr != scard.SCARD_S_SUCCESS:
            raise _error(scard, hr, "SCardReconnect", self._reader)
        self._active = int(active)
        self._atr = self._status_atr()
        return self._atr

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._scard.SCardDisconnect(handle, self._disposition)
        self._context.close()


def main(argv: list[str] | None = None) -> int:
    """Print the readers, whether a card is in each, its ATR and protocols."""
    del argv
    try:
        statuses = reader_statuses()
    except TransportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if not statuses:
        print("no PC/SC readers")
    for status in statuses:
        line = f"{status.name}: "
        if not status.present:
            line += "no card"
        else:
            line += f"card, ATR {status.atr.hex().upper()}"
            try:
                protocols = ", ".join(f"T={p}" for p in parse_atr(status.atr).protocols)
                line += f" ({protocols})"
            except AtrError as exc:
                line += f" (unparsable ATR: {exc})"
            if status.exclusive:
                line += ", in exclusive use"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
