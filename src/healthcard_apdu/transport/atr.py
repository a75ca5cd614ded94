"""Answer-to-reset parsing (ISO/IEC 7816-3 §8): offered protocols, historical bytes, TCK.

Used to choose T=1 or T=0 from the ATR itself instead of leaving it to the PC/SC stack.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from healthcard_apdu.transport.base import TransportError


class AtrError(TransportError, ValueError):
    """Bytes that are not a well-formed ATR."""


@dataclass(frozen=True, slots=True)
class AtrInfo:
    """What an ATR says.

    ``interface`` maps names such as ``"TA1"`` or ``"TD2"`` to their byte. ``protocols`` lists the
    offered protocols in ATR order (T=0 when no TD1 is present). ``specific_protocol`` is set when
    TA2 puts the card in specific mode. ``tck_ok`` is ``None`` when the ATR carries no TCK.
    """

    raw: bytes
    ts: int
    protocols: tuple[int, ...]
    historical_bytes: bytes
    interface: dict[str, int] = field(default_factory=dict)
    tck: int | None = None
    tck_ok: bool | None = None
    specific_protocol: int | None = None

    @property
    def preferred_protocol(self) -> int:
        """T=1 when offered (unless TA2 fixes another), else the first offered protocol."""
        if self.specific_protocol is not None:
            return self.specific_protocol
        return 1 if 1 in self.protocols else self.protocols[0]

    @property
    def extended_length(self) -> bool:
        """Card capabilities (compact-TLV tag 7, 3rd byte bit 7) announce extended Lc/Le."""
        caps = _card_capabilities(self.historical_bytes)
        return len(caps) >= 3 and bool(caps[2] & 0x40)


def _card_capabilities(historical: bytes) -> bytes:
    """The card-capabilities data object of category-0x80 historical bytes, or b""."""
    if not historical or historical[0] != 0x80:
        return b""
    pos = 1
    while pos < len(historical):
        tag, length = historical[pos] >> 4, historical[pos] & 0x0F
        value = historical[pos + 1 : pos + 1 + length]
        if len(value) < length:
            return b""
        if tag == 0x7:
            return value
        pos += 1 + length
    return b""


def parse_atr(atr: bytes) -> AtrInfo:
    """Parse an ATR; raises :class:`AtrError` naming the missing or bad part."""
    atr = bytes(atr)
    if len(atr) < 2:
        raise AtrError(f"ATR {atr.hex().upper() or '(empty)'} is shorter than TS and T0")
    ts = atr[0]
    if ts not in (0x3B, 0x3F):
        raise AtrError(f"ATR TS byte {ts:02X} is neither 3B (direct) nor 3F (inverse)")
    t0 = atr[1]
    n_historical = t0 & 0x0F
    indicator = t0 >> 4  # presence bits of TAi..TDi, in the high nibble
    pos = 2
    level = 1
    interface: dict[str, int] = {}
    protocols: list[int] = []
    indicated: set[int] = set()  # every T in a TDi, including T=15 (global bytes)
    while True:
        for bit, letter in ((0x1, "A"), (0x2, "B"), (0x4, "C"), (0x8, "D")):
            if indicator & bit:
                if pos >= len(atr):
                    raise AtrError(f"ATR {atr.hex().upper()} ends before T{letter}{level}")
                interface[f"T{letter}{level}"] = atr[pos]
                pos += 1
        td = interface.get(f"TD{level}")
        if td is None:
            break
        protocol = td & 0x0F
        indicated.add(protocol)
        if protocol != 15 and protocol not in protocols:
            protocols.append(protocol)
        indicator = td >> 4
        level += 1
    if not protocols:
        protocols.append(0)
    historical = atr[pos : pos + n_historical]
    if len(historical) < n_historical:
        raise AtrError(
            f"ATR {atr.hex().upper()} announces {n_historical} historical bytes, "
            f"has {len(historical)}"
        )
    pos += n_historical
    needs_tck = bool(indicated - {0})
    tck: int | None = None
    tck_ok: bool | None = None
    if needs_tck:
        if pos >= len(atr):
            raise AtrError(f"ATR {atr.hex().upper()} offers T={protocols} but has no TCK")
        tck = atr[pos]
        check = 0
        for b in atr[1 : pos + 1]:
            check ^= b
        tck_ok = check == 0
        pos += 1
    if pos != len(atr):
        raise AtrError(f"ATR {atr.hex().upper()} has {len(atr) - pos} bytes after its end")
    specific = interface["TA2"] & 0x0F if "TA2" in interface else None
    return AtrInfo(atr, ts, tuple(protocols), historical, interface, tck, tck_ok, specific)
