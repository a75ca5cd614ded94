"""A tiny card for testing links and channels (in-process, through pcscd+vpcd, benchmarks).

:class:`TinyCard` implements :class:`~healthcard_apdu.transport.inprocess.CardLike`. It knows
SELECT, GET CHALLENGE, GET DATA (answers ``6Cxx`` to a wrong Le), READ/UPDATE BINARY,
GET RESPONSE and ISO command chaining. In ``t0`` mode every response with data is announced with
``61xx`` and fetched by GET RESPONSE in chunks of ``t0_chunk`` bytes; ``endless_61`` makes GET
RESPONSE never finish. It is not the simulator (``healthcard_apdu.sim``) and knows no security.
"""

from __future__ import annotations

import os
import threading

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError

T1_ATR = bytes.fromhex("3B800181")  # TD1 = 01: T=1 only; TCK 81
T0_ATR = bytes.fromhex("3B00")  # no interface bytes: T=0

_OK = b"\x90\x00"


def _sw(sw: int) -> bytes:
    return sw.to_bytes(2, "big")


class TinyCard:
    """A small scripted card. Attributes can be changed while it is served (thread-safe)."""

    def __init__(
        self,
        *,
        t0: bool = False,
        t0_chunk: int = 256,
        endless_61: bool = False,
        binary: bytes | None = None,
        data_object: bytes = bytes(range(0x20, 0x34)),
        max_command_data: int = 255,
        files: tuple[int, ...] = (0x3F00, 0x0001, 0xDF01),
    ) -> None:
        self.t0 = t0
        self.t0_chunk = t0_chunk
        self.endless_61 = endless_61
        self.binary = bytearray(binary if binary is not None else bytes(range(256)) * 2)
        self.data_object = data_object
        self.max_command_data = max_command_data
        self.files = files
        self.present = True
        self.powered = False
        self.power_ons = 0
        self.received: list[bytes] = []
        self._pending = b""
        self._chain = b""
        self._lock = threading.Lock()

    # -- CardLike ---------------------------------------------------------------------------

    def atr(self) -> bytes:
        return T0_ATR if self.t0 else T1_ATR

    def power_on(self) -> None:
        with self._lock:
            self.powered = True
            self.power_ons += 1
            self._pending = self._chain = b""

    def power_off(self) -> None:
        with self._lock:
            self.powered = False
            self._pending = self._chain = b""

    def reset(self) -> None:
        self.power_off()
        self.power_on()

    def process(self, apdu: bytes) -> bytes:
        with self._lock:
            self.received.append(bytes(apdu))
            try:
                cmd = CommandApdu.from_bytes(apdu)
            except ApduFormatError:
                return _sw(0x6700)
            return self._process(cmd)

    # -- commands ---------------------------------------------------------------------------

    def _process(self, cmd: CommandApdu) -> bytes:
        if cmd.ins == 0xC0:
            return self._get_response(cmd)
        self._pending = b""
        if len(cmd.data) > self.max_command_data:
            return _sw(0x6700)
        if cmd.cla & 0x10:
            self._chain += cmd.data
            return _OK
        if self._chain:
            cmd = cmd.with_data(self._chain + cmd.data)
            self._chain = b""
        handler = {
            0xA4: self._select,
            0x84: self._get_challenge,
            0xCA: self._get_data,
            0xB0: self._read_binary,
            0xD6: self._update_binary,
        }.get(cmd.ins)
        if handler is None:
            return _sw(0x6D00)
        return handler(cmd)

    def _answer(self, data: bytes) -> bytes:
        if data and (self.t0 or self.endless_61):
            self._pending = data
            return bytes((0x61, len(data) & 0xFF))
        return data + _OK

    def _get_response(self, cmd: CommandApdu) -> bytes:
        if self.endless_61:
            return b"\x00\x61\x01"
        if not self._pending:
            return _sw(0x6985)
        size = min(cmd.le or 256, self.t0_chunk, len(self._pending))
        chunk, self._pending = self._pending[:size], self._pending[size:]
        if self._pending:
            return chunk + bytes((0x61, len(self._pending) & 0xFF))
        return chunk + _OK

    def _select(self, cmd: CommandApdu) -> bytes:
        if cmd.p1 == 0x04:
            name = bytes((0x84, len(cmd.data))) + cmd.data
            fci = bytes((0x6F, len(name))) + name
        elif cmd.p1 == 0x00 and len(cmd.data) == 2:
            fid = int.from_bytes(cmd.data, "big")
            if fid not in self.files:
                return _sw(0x6A82)
            fci = b"\x6f\x04\x83\x02" + cmd.data
        else:
            return _sw(0x6A86)
        return self._answer(fci) if cmd.le is not None else _OK

    def _get_challenge(self, cmd: CommandApdu) -> bytes:
        if cmd.le is None:
            return _sw(0x6700)
        return self._answer(os.urandom(cmd.le))

    def _get_data(self, cmd: CommandApdu) -> bytes:
        if cmd.le != len(self.data_object):
            return bytes((0x6C, len(self.data_object) & 0xFF))
        return self._answer(self.data_object)

    def _read_binary(self, cmd: CommandApdu) -> bytes:
        offset = (cmd.p1 << 8) | cmd.p2
        if offset >= len(self.binary):
            return _sw(0x6B00)
        return self._answer(bytes(self.binary[offset : offset + (cmd.le or 256)]))

    def _update_binary(self, cmd: CommandApdu) -> bytes:
        offset = (cmd.p1 << 8) | cmd.p2
        if offset + len(cmd.data) > len(self.binary):
            return _sw(0x6B00)
        self.binary[offset : offset + len(cmd.data)] = cmd.data
        return _OK
