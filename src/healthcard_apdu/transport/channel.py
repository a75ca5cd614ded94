"""The APDU channel above a link: T=0 procedure handling, command chaining, size limits, tracing.

* ``61xx``: GET RESPONSE until the card stops saying "more", concatenating data; bounded by a
  round count and a byte total, so a card that answers ``61xx`` forever raises
  :class:`ProtocolError` instead of hanging.
* ``6Cxx``: the command is resent once with ``Le = xx``.
* Command data longer than ``max_command_data`` is sent as an ISO 7816-4 chain (CLA bit
  ``0x10`` on all parts but the last) when ``chaining`` is on and the command is not
  secure-messaging protected.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.transport.base import ProtocolError, Transport, TransportError
from healthcard_apdu.transport.trace import Range, Tracer, shift_ranges, wire_data_offset

SecretSpec = bool | Range | Sequence[Range]
"""Secret parts of a command's data: ``True`` (all), one ``(start, end)`` or several."""

_GET_RESPONSE = 0xC0
_CHAIN_BIT = 0x10
_SM_BITS = 0x0C
_SW_OK = b"\x90\x00"


def _secret_list(secret: SecretSpec, length: int) -> list[Range]:
    if isinstance(secret, bool):
        return [(0, length)] if secret else []
    if len(secret) == 2 and isinstance(secret[0], int) and isinstance(secret[1], int):
        return [(secret[0], secret[1])]
    out: list[Range] = []
    for item in secret:
        if isinstance(item, int):
            raise TypeError(f"secret must be True, (start, end) or ranges, got {secret!r}")
        out.append((int(item[0]), int(item[1])))
    return out


class Channel:
    """Sends :class:`CommandApdu` objects over a :class:`Transport`.

    Size limits come from the card or the profile: ``max_command_data`` (largest Lc the card
    takes in one APDU), ``max_response`` (largest Le). ``max_get_response`` bounds the GET RESPONSE
    rounds and ``max_response_bytes`` the total response data of one command.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        max_command_data: int = 255,
        max_response: int = 256,
        max_get_response: int = 256,
        max_response_bytes: int = 65536,
        chaining: bool = True,
        trace: Tracer | None = None,
    ) -> None:
        if max_command_data < 1 or max_response < 1 or max_get_response < 0:
            raise ValueError("channel limits must be positive")
        self.transport = transport
        self.max_command_data = max_command_data
        self.max_response = max_response
        self.max_get_response = max_get_response
        self.max_response_bytes = max_response_bytes
        self.chaining = chaining
        self.trace = trace
        if trace is not None:
            try:
                atr = transport.atr().hex().upper()
            except TransportError:
                atr = ""
            trace.event("open", transport=transport.name, atr=atr)

    # -- public API -------------------------------------------------------------------------

    def send(self, cmd: CommandApdu, *, secret: SecretSpec = ()) -> ResponseApdu:
        """Send ``cmd``; returns the final response (any status word), data reassembled."""
        if cmd.le is not None and cmd.le > self.max_response:
            raise ApduFormatError(
                f"{cmd.label}: Le {cmd.le} exceeds the maximum response "
                f"of {self.max_response} bytes"
            )
        ranges = self._secret_ranges(cmd, secret)
        if len(cmd.data) > self.max_command_data:
            response = self._send_chained(cmd, ranges)
        else:
            response = self._transceive(cmd, ranges)
        return self._collect(cmd, response)

    def call(self, cmd: CommandApdu, *, secret: SecretSpec = ()) -> ResponseApdu:
        """Like :meth:`send`, but a status word other than 9000 raises its typed CardError."""
        if (
            self.trace is None
            and len(cmd.data) <= self.max_command_data
            and (cmd.le is None or cmd.le <= self.max_response)
        ):
            # the hot path: one link exchange answered 9000 (anything else goes the long way)
            raw = self.transport.transmit(cmd.to_bytes())
            if raw[-2:] == _SW_OK:
                data = raw[:-2]
                return ResponseApdu.success(data if type(data) is bytes else bytes(data))
            return self._collect(cmd, self._answer(cmd, raw, ())).check(cmd.label, cmd.ins)
        return self.send(cmd, secret=secret).check(cmd.label, cmd.ins)

    def call_data(self, cmd: CommandApdu) -> bytes:
        """``call(cmd).data`` (no secret in the command): the reads' hot path, with no
        response object built when the card answers 9000 at once."""
        if (
            self.trace is None
            and len(cmd.data) <= self.max_command_data
            and (cmd.le is None or cmd.le <= self.max_response)
        ):
            raw = self.transport.transmit(cmd.to_bytes())
            if raw[-2:] == _SW_OK:
                return raw[:-2] if type(raw) is bytes else bytes(raw[:-2])
            return self._collect(cmd, self._answer(cmd, raw, ())).check(cmd.label, cmd.ins).data
        return self.send(cmd).check(cmd.label, cmd.ins).data

    def atr(self) -> bytes:
        return self.transport.atr()

    def reset(self, cold: bool = False) -> bytes:
        """Reset the card (power cycle when ``cold``); recorded in the trace. Returns the ATR."""
        atr = self.transport.reset(cold)
        if self.trace is not None:
            self.trace.event("reset", cold=cold, atr=atr.hex().upper())
        return atr

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _secret_ranges(self, cmd: CommandApdu, secret: SecretSpec) -> list[Range]:
        if self.trace is None:
            return []
        return self.trace.secret_ranges(cmd, _secret_list(secret, len(cmd.data)))

    def _exchange(self, cmd: CommandApdu, data_secret: Sequence[Range]) -> ResponseApdu:
        """One link round trip, traced; ``data_secret`` are ranges of ``cmd.data``."""
        raw = cmd.to_bytes()
        trace = self.trace
        if trace is None:
            return self._parse(cmd, self.transport.transmit(raw))
        wire_secret = shift_ranges(data_secret, wire_data_offset(cmd))
        start = time.perf_counter()
        try:
            response = self.transport.transmit(raw)
        except TransportError as exc:
            ms = (time.perf_counter() - start) * 1000
            trace.exchange(
                name=cmd.label, command=raw, response=None, ms=ms, secret=wire_secret, error=exc
            )
            raise
        ms = (time.perf_counter() - start) * 1000
        trace.exchange(name=cmd.label, command=raw, response=response, ms=ms, secret=wire_secret)
        return self._parse(cmd, response)

    def _parse(self, cmd: CommandApdu, response: bytes) -> ResponseApdu:
        if len(response) < 2:
            raise ProtocolError(
                f"{cmd.label}: response of {len(response)} bytes from {self.transport.name} "
                "has no status word"
            )
        return ResponseApdu.from_bytes(response)

    def _transceive(self, cmd: CommandApdu, data_secret: Sequence[Range]) -> ResponseApdu:
        """One command; on 6Cxx resend it once with the Le the card asked for."""
        return self._answer(cmd, None, data_secret)

    def _answer(
        self, cmd: CommandApdu, raw: bytes | None, data_secret: Sequence[Range]
    ) -> ResponseApdu:
        """The response to ``cmd`` (``raw`` when already exchanged); 6Cxx resends once."""
        response = self._exchange(cmd, data_secret) if raw is None else self._parse(cmd, raw)
        if response.sw1 == 0x6C:
            correct_le = response.sw2 or 256
            if correct_le <= self.max_response:
                response = self._exchange(cmd.with_le(correct_le), data_secret)
        return response

    def _collect(self, cmd: CommandApdu, response: ResponseApdu) -> ResponseApdu:
        """Follow 61xx with GET RESPONSE rounds, concatenating the data."""
        if response.sw1 != 0x61:
            return response
        data = bytearray()
        rounds = 0
        while response.sw1 == 0x61:
            data += response.data
            if rounds >= self.max_get_response:
                raise ProtocolError(
                    f"{cmd.label}: card still answers {response.sw:04X} after {rounds} "
                    f"GET RESPONSE rounds ({len(data)} bytes); giving up"
                )
            if len(data) > self.max_response_bytes:
                raise ProtocolError(
                    f"{cmd.label}: response exceeds {self.max_response_bytes} bytes "
                    f"after {rounds} GET RESPONSE rounds"
                )
            rounds += 1
            available = response.sw2 or 256
            get_response = CommandApdu(
                0x00,
                _GET_RESPONSE,
                0x00,
                0x00,
                le=min(available, self.max_response),
                name=f"GET RESPONSE ({cmd.label})",
            )
            response = self._transceive(get_response, ())
        if not rounds:
            return response
        data += response.data
        if len(data) > self.max_response_bytes:
            raise ProtocolError(f"{cmd.label}: response exceeds {self.max_response_bytes} bytes")
        return ResponseApdu(bytes(data), response.sw)

    def _send_chained(self, cmd: CommandApdu, data_secret: Sequence[Range]) -> ResponseApdu:
        size = self.max_command_data
        total = len(cmd.data)
        if not self.chaining:
            raise ApduFormatError(
                f"{cmd.label}: {total} bytes of data exceed the card's maximum of {size} "
                "and command chaining is off"
            )
        if cmd.cla & _SM_BITS:
            raise ApduFormatError(
                f"{cmd.label}: {total} bytes of data exceed the card's maximum of {size}; "
                f"CLA {cmd.cla:02X} is secure-messaging protected and is not chained"
            )
        if cmd.cla & _CHAIN_BIT:
            raise ApduFormatError(f"{cmd.label}: CLA {cmd.cla:02X} already has the chaining bit")
        parts = (total + size - 1) // size
        response = ResponseApdu(b"", 0x9000)
        for index in range(parts):
            start, end = index * size, min(total, (index + 1) * size)
            last = index == parts - 1
            part = CommandApdu(
                cmd.cla if last else cmd.cla | _CHAIN_BIT,
                cmd.ins,
                cmd.p1,
                cmd.p2,
                cmd.data[start:end],
                cmd.le if last else None,
                name=f"{cmd.label} [{index + 1}/{parts}]",
            )
            part_secret = shift_ranges(data_secret, -start, (start, end))
            response = (
                self._transceive(part, part_secret) if last else self._exchange(part, part_secret)
            )
            if not last and not response.ok:
                return response
        return response
