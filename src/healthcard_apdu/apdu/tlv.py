"""BER-TLV (ISO/IEC 7816-4 §5.2, ISO/IEC 8825-1) and the FCI a SELECT returns.

Real cards differ in their FCIs: one family answers SELECT of the MF with a bare ``9000``, one
has no ``A5`` template in DDF1's FCI, MF names are 15 or 16 bytes (docs/spec-choices.md). So a
host parses what is there as BER-TLV -- multi-byte tags (``1F``, ``5F 2D`` ...) and lengths
(``81 xx``, ``82 xx xx``) -- and never requires an FCI: :func:`parse_fci` of empty data is None.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from healthcard_apdu.apdu.errors import ApduFormatError

__all__ = ["FCI_TEMPLATES", "Fci", "TlvError", "parse_ber_tlv", "parse_fci"]

#: FCI (6F), FCP (62) and FMD (64) templates (ISO/IEC 7816-4 Table 10).
FCI_TEMPLATES = frozenset({0x6F, 0x62, 0x64})
_DF_NAME = 0x84


class TlvError(ApduFormatError):
    """Bytes that are not well-formed BER-TLV; the message names the offset."""


def _tag(data: bytes, pos: int) -> tuple[int, int, bool]:
    """(tag, next position, constructed) of the tag at ``pos``."""
    first = data[pos]
    tag, pos = first, pos + 1
    if first & 0x1F == 0x1F:
        while True:
            if pos >= len(data):
                raise TlvError(f"BER-TLV tag at offset {pos - 1} is cut off")
            byte = data[pos]
            tag, pos = (tag << 8) | byte, pos + 1
            if not byte & 0x80:
                break
            if tag > 0xFFFFFF:
                raise TlvError(f"BER-TLV tag longer than 3 bytes at offset {pos}")
    return tag, pos, bool(first & 0x20)


def _length(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise TlvError(f"BER-TLV length missing at offset {pos}")
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    count = first & 0x7F
    if count == 0 or count > 3:
        raise TlvError(f"BER-TLV length byte {first:02X} at offset {pos} is not supported")
    if pos + 1 + count > len(data):
        raise TlvError(f"BER-TLV length at offset {pos} is cut off")
    return int.from_bytes(data[pos + 1 : pos + 1 + count], "big"), pos + 1 + count


def parse_ber_tlv(data: bytes) -> list[tuple[int, bytes]]:
    """The data objects of ``data`` in order, as ``(tag, value)``; constructed values are not
    descended into. ``00``/``FF`` padding between objects is skipped. :class:`TlvError` for
    malformed data."""
    data = bytes(data)
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):
            pos += 1
            continue
        start = pos
        tag, pos, _ = _tag(data, pos)
        size, pos = _length(data, pos)
        if pos + size > len(data):
            raise TlvError(
                f"BER-TLV object {tag:X} at offset {start}: length {size}, "
                f"{len(data) - pos} bytes present"
            )
        out.append((tag, data[pos : pos + size]))
        pos += size
    return out


@dataclass(frozen=True)
class Fci:
    """A parsed FCI: the template tag and its data objects (first occurrence of each tag)."""

    template: int
    objects: dict[int, bytes] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def df_name(self) -> bytes | None:
        """DO 84, the DF name (None when absent)."""
        return self.objects.get(_DF_NAME)

    @property
    def proprietary(self) -> bytes | None:
        """DO A5, the proprietary template (None when absent: a card family without it)."""
        return self.objects.get(0xA5)

    def get(self, tag: int) -> bytes | None:
        return self.objects.get(tag)


def parse_fci(data: bytes) -> Fci | None:
    """Parse a SELECT response. Empty data (a bare ``9000``) gives None: a card may answer
    SELECT without an FCI. Otherwise the data must be one FCI/FCP/FMD template
    (:class:`TlvError` naming the problem)."""
    data = bytes(data)
    if not data:
        return None
    objects = parse_ber_tlv(data)
    if not objects:
        return None
    if len(objects) != 1:
        raise TlvError(f"FCI: {len(objects)} top-level objects, expected one template")
    template, body = objects[0]
    if template not in FCI_TEMPLATES:
        raise TlvError(f"FCI must be a 6F/62/64 template, got tag {template:X}")
    found: dict[int, bytes] = {}
    for tag, value in parse_ber_tlv(body):
        found.setdefault(tag, value)
    return Fci(template, found, data)
