"""SAM/PSAM public files (docs/reference/healthcard-layout.md §4.2): layouts and decoders.

All SAM files are transparent and free to read. Field meanings come from the interface
spec's appendix A; the byte encodings of the terminal number and dates are not specified
there, so they are kept as raw bytes / hex digits.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DecodeError
from .layout import SAM_FILES, SamFileInfo

__all__ = ["SAM_FILES", "SamAppInfo", "SamFileInfo", "SamPublicInfo", "SamTerminalInfo"]


def _check(raw: bytes, size: int, context: str) -> bytes:
    raw = bytes(raw)
    if len(raw) != size:
        raise DecodeError(None, raw, f"needs {size} bytes, got {len(raw)}", context=context)
    return raw


@dataclass(frozen=True)
class SamPublicInfo:
    """MF/EF0015 (14 bytes)."""

    serial_number: bytes
    sam_version: int
    key_card_type: int
    command_set_version: int
    issuer_fci: int

    @classmethod
    def from_bytes(cls, raw: bytes) -> SamPublicInfo:
        raw = _check(raw, 14, "SAM MF/EF0015")
        return cls(raw[:10], raw[10], raw[11], raw[12], raw[13])

    def to_bytes(self) -> bytes:
        return self.serial_number + bytes(
            (self.sam_version, self.key_card_type, self.command_set_version, self.issuer_fci)
        )


@dataclass(frozen=True)
class SamTerminalInfo:
    """MF/EF0016 (6 bytes): the terminal number."""

    province: int
    city: int
    issuer: int
    serial: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> SamTerminalInfo:
        raw = _check(raw, 6, "SAM MF/EF0016")
        return cls(raw[0], raw[1], raw[2], raw[3:])

    def to_bytes(self) -> bytes:
        return bytes((self.province, self.city, self.issuer)) + self.serial

    @property
    def terminal_number(self) -> str:
        """The 6 bytes as 12 upper-case hex digits."""
        return self.to_bytes().hex().upper()


@dataclass(frozen=True)
class SamAppInfo:
    """DF01/EF001A (25 bytes): health-card application public info."""

    key_index: int
    issuer_id: bytes
    receiver_id: bytes
    start_date: str
    expiry_date: str

    @classmethod
    def from_bytes(cls, raw: bytes) -> SamAppInfo:
        raw = _check(raw, 25, "SAM DF01/EF001A")
        return cls(raw[0], raw[1:9], raw[9:17], raw[17:21].hex().upper(), raw[21:25].hex().upper())

    def to_bytes(self) -> bytes:
        return (
            bytes((self.key_index,))
            + self.issuer_id
            + self.receiver_id
            + bytes.fromhex(self.start_date)
            + bytes.fromhex(self.expiry_date)
        )
