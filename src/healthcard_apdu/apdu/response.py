"""Immutable response APDUs."""

from __future__ import annotations

from dataclasses import dataclass

from healthcard_apdu.apdu.errors import ApduFormatError
from healthcard_apdu.apdu.status import SUCCESS, error_for

_new = object.__new__
_set = object.__setattr__


@dataclass(frozen=True, slots=True)
class ResponseApdu:
    """Response data plus the two status bytes."""

    data: bytes
    sw: int

    def __post_init__(self) -> None:
        if not 0 <= self.sw <= 0xFFFF:
            raise ApduFormatError(f"status word {self.sw} is not two bytes")
        if not isinstance(self.data, bytes):
            object.__setattr__(self, "data", bytes(self.data))

    @property
    def sw1(self) -> int:
        return self.sw >> 8

    @property
    def sw2(self) -> int:
        return self.sw & 0xFF

    @property
    def ok(self) -> bool:
        return self.sw == SUCCESS

    @classmethod
    def success(cls, data: bytes) -> ResponseApdu:
        """A 9000 response holding ``data`` (bytes), without re-checking (the hot path)."""
        response = _new(cls)
        _set(response, "data", data)
        _set(response, "sw", SUCCESS)
        return response

    @classmethod
    def from_bytes(cls, raw: bytes) -> ResponseApdu:
        if len(raw) < 2:
            raise ApduFormatError(f"response APDU of {len(raw)} bytes has no status word")
        return cls(bytes(raw[:-2]), int.from_bytes(raw[-2:], "big"))

    def to_bytes(self) -> bytes:
        return self.data + self.sw.to_bytes(2, "big")

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def check(self, command: str = "", ins: int | None = None) -> ResponseApdu:
        """Return self on 9000, else raise the typed :class:`CardError` for the SW."""
        if self.sw != SUCCESS:
            raise error_for(self.sw, command, ins)
        return self

    def __repr__(self) -> str:
        return f"ResponseApdu({self.data.hex().upper()} {self.sw:04X})"
