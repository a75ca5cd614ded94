"""Immutable ISO/IEC 7816-4 command APDUs: the four cases, short and extended length."""

from __future__ import annotations

from dataclasses import dataclass, field

from healthcard_apdu.apdu.errors import ApduFormatError

SHORT_MAX_LC = 255
SHORT_MAX_LE = 256
EXTENDED_MAX_LC = 65535
EXTENDED_MAX_LE = 65536


def _byte(name: str, value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ApduFormatError(f"{name} must be one byte (0..255), got {value}")


@dataclass(frozen=True, slots=True)
class CommandApdu:
    """A command APDU.

    ``le`` is ``None`` when no response data is expected (cases 1 and 3); otherwise the
    number of bytes expected, where 256 (short) or 65536 (extended) means "as many as there are".
    ``extended`` is chosen automatically when left ``None``. ``name`` labels the command in
    traces and errors and does not take part in equality.
    """

    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes = b""
    le: int | None = None
    extended: bool | None = None
    name: str = field(default="", compare=False)
    _wire: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (
            0 <= self.cla <= 0xFF and 0 <= self.ins <= 0xFF
            and 0 <= self.p1 <= 0xFF and 0 <= self.p2 <= 0xFF
        ):
            for label, value in zip(("CLA", "INS", "P1", "P2"), self.header_values, strict=True):
                _byte(label, value)
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))
        if len(self.data) > EXTENDED_MAX_LC:
            raise ApduFormatError(
                f"command data of {len(self.data)} bytes exceeds {EXTENDED_MAX_LC}"
            )
        if self.le is not None and not 1 <= self.le <= EXTENDED_MAX_LE:
            raise ApduFormatError(f"Le must be 1..{EXTENDED_MAX_LE}, got {self.le}")
        needs_extended = len(self.data) > SHORT_MAX_LC or (self.le or 0) > SHORT_MAX_LE
        if self.extended is None or (not self.data and self.le is None):
            # Case 1 has no length fields, so it is never "extended".
            object.__setattr__(self, "extended", needs_extended)
        elif not self.extended and needs_extended:
            raise ApduFormatError(
                f"{self.label}: data of {len(self.data)} bytes / Le {self.le} need extended length"
            )

    @property
    def header_values(self) -> tuple[int, int, int, int]:
        return (self.cla, self.ins, self.p1, self.p2)

    @property
    def label(self) -> str:
        """Name for messages: the given name, else the INS byte."""
        return self.name or f"INS {self.ins:02X}"

    @property
    def case(self) -> int:
        """ISO 7816-3 case: 1 (no data, no Le), 2 (Le), 3 (data), 4 (data and Le)."""
        if self.data:
            return 4 if self.le is not None else 3
        return 2 if self.le is not None else 1

    @property
    def header(self) -> bytes:
        return bytes((self.cla, self.ins, self.p1, self.p2))

    def to_bytes(self) -> bytes:
        """Encode to wire bytes (computed once per command object)."""
        wire = self._wire
        if wire is None:
            wire = self._encode()
            object.__setattr__(self, "_wire", wire)
        return wire

    def _encode(self) -> bytes:
        out = bytearray(self.header)
        if self.extended:
            if self.data:
                out += b"\x00" + len(self.data).to_bytes(2, "big") + self.data
            if self.le is not None:
                le = 0 if self.le == EXTENDED_MAX_LE else self.le
                out += (b"" if self.data else b"\x00") + le.to_bytes(2, "big")
        else:
            if self.data:
                out += bytes((len(self.data),)) + self.data
            if self.le is not None:
                out.append(0 if self.le == SHORT_MAX_LE else self.le)
        return bytes(out)

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def with_le(self, le: int | None) -> CommandApdu:
        """Copy with another Le (used for 6Cxx resends)."""
        return CommandApdu(self.cla, self.ins, self.p1, self.p2, self.data, le, None, self.name)

    def with_cla(self, cla: int) -> CommandApdu:
        return CommandApdu(
            cla, self.ins, self.p1, self.p2, self.data, self.le, self.extended, self.name
        )

    def with_data(self, data: bytes) -> CommandApdu:
        return CommandApdu(self.cla, self.ins, self.p1, self.p2, data, self.le, None, self.name)

    @classmethod
    def from_bytes(cls, raw: bytes, name: str = "") -> CommandApdu:
        """Parse wire bytes; every malformed length raises :class:`ApduFormatError`."""
        raw = bytes(raw)
        n = len(raw)
        if n < 4:
            raise ApduFormatError(f"command APDU of {n} bytes is shorter than its 4-byte header")
        cla, ins, p1, p2 = raw[0], raw[1], raw[2], raw[3]
        if n == 4:
            return cls(cla, ins, p1, p2, name=name)
        b4 = raw[4]
        if n == 5:
            return cls(cla, ins, p1, p2, le=b4 or SHORT_MAX_LE, extended=False, name=name)
        if b4 != 0:
            lc = b4
            if n == 5 + lc:
                return cls(cla, ins, p1, p2, raw[5:], extended=False, name=name)
            if n == 6 + lc:
                le = raw[5 + lc] or SHORT_MAX_LE
                return cls(cla, ins, p1, p2, raw[5 : 5 + lc], le, extended=False, name=name)
            raise ApduFormatError(f"short Lc={lc} does not match a {n}-byte command APDU")
        if n < 7:
            raise ApduFormatError(f"extended-length marker with only {n} bytes")
        value = int.from_bytes(raw[5:7], "big")
        if n == 7:
            return cls(cla, ins, p1, p2, le=value or EXTENDED_MAX_LE, extended=True, name=name)
        if value == 0:
            raise ApduFormatError("extended Lc of 0 is not allowed")
        lc = value
        if n == 7 + lc:
            return cls(cla, ins, p1, p2, raw[7:], extended=True, name=name)
        if n == 9 + lc:
            le = int.from_bytes(raw[7 + lc :], "big") or EXTENDED_MAX_LE
            return cls(cla, ins, p1, p2, raw[7 : 7 + lc], le, extended=True, name=name)
        raise ApduFormatError(f"extended Lc={lc} does not match a {n}-byte command APDU")

    def __repr__(self) -> str:
        # The data field may hold keys or PINs: show its length, never its bytes.
        le = "" if self.le is None else f" Le={self.le}"
        return f"CommandApdu({self.label}: {self.header.hex().upper()} data[{len(self.data)}]{le})"
