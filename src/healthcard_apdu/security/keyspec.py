"""What the caller asks the security module for: a key role and the card's diversification factors.

The SAM key map (``STANDARD_KEY_SPECS``) is the key inventory of
docs/reference/healthcard-layout.md §3.2
(libzhouyb ``SAM_KEY_MAP`` checked against HDOS and traces). SAM P2 carries the key version in
bits 7-5 (``ver << 5 | index``) except for the STK keys, which the traces show without version
bits. The issuance master keys ``MK_*`` (FMCOS DF master key, KID 00, type 39) are our
choice; a real PSAM does not hold them, their SAM indices 17..1B are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from healthcard_apdu.security.errors import SecurityModuleError

__all__ = [
    "DEFAULT_ROLES",
    "FACTOR_LENGTH",
    "ISSUANCE_ROLES",
    "STANDARD_KEY_SPECS",
    "USER_CARD_ROLES",
    "CardFactors",
    "KeySpec",
    "card_factor_from_atr",
    "city_factor_from_region",
]

FACTOR_LENGTH = 8


@dataclass(frozen=True)
class KeySpec:
    """One master key as the SAM addresses it.

    ``levels`` is the diversification depth before the session factor: 1 = card factor,
    2 = card factor then city factor.
    """

    role: str
    sam_p1: int
    sam_p2: int
    levels: int
    version: int = 1

    def __post_init__(self) -> None:
        if not self.role:
            raise SecurityModuleError("KeySpec.role must not be empty")
        for label, value in (("sam_p1", self.sam_p1), ("sam_p2", self.sam_p2)):
            if not 0 <= value <= 0xFF:
                raise SecurityModuleError(f"KeySpec {self.role}: {label}={value} is not one byte")
        if self.levels not in (1, 2):
            raise SecurityModuleError(f"KeySpec {self.role}: levels {self.levels} is not 1 or 2")
        if not 0 <= self.version <= 0xFF:
            raise SecurityModuleError(f"KeySpec {self.role}: version {self.version} not one byte")


@dataclass(frozen=True)
class CardFactors:
    """Diversification factors of one user card: card factor and (for 2-level keys) city factor."""

    card: bytes
    city: bytes | None = None

    def __post_init__(self) -> None:
        for label, value in (("card", self.card), ("city", self.city)):
            if value is not None and len(value) != FACTOR_LENGTH:
                raise SecurityModuleError(
                    f"{label} factor must be {FACTOR_LENGTH} bytes, got {len(value)}"
                )

    def for_key(self, key: KeySpec) -> list[bytes]:
        """Factors for ``key`` in 80DE order: card factor, then city factor if 2-level."""
        if key.levels == 1:
            return [bytes(self.card)]
        if self.city is None:
            raise SecurityModuleError(f"key {key.role} is 2-level but no city factor was given")
        return [bytes(self.card), bytes(self.city)]


def city_factor_from_region(region_code: str) -> bytes:
    """City factor: ASCII of the first two digits of YYCSDM + "000000"
    (docs/reference/healthcard-layout.md §3.4)."""
    code = region_code.strip()
    if len(code) < 2 or not code[:2].isdigit() or not code[:2].isascii():
        raise SecurityModuleError(f"region code {region_code!r} does not start with two digits")
    return (code[:2] + "000000").encode("ascii")


def card_factor_from_atr(historical_bytes: bytes) -> bytes:
    """Card factor: the last 8 historical bytes of the user card's ATR
    (docs/reference/healthcard-layout.md §3.4)."""
    if len(historical_bytes) < FACTOR_LENGTH:
        raise SecurityModuleError(
            f"ATR has {len(historical_bytes)} historical bytes, the card factor needs 8"
        )
    return bytes(historical_bytes[-FACTOR_LENGTH:])


def _v(index: int, version: int = 1) -> int:
    return (version << 5) | index


_SPECS = (
    KeySpec("IRK_DDF1", 0x47, _v(0x01), 2),
    KeySpec("STK_DDF1", 0x28, 0x02, 1),
    KeySpec("STK_DF01", 0x28, 0x03, 1),
    KeySpec("STK_DF02", 0x48, 0x04, 2),
    KeySpec("STK_DF03", 0x48, 0x05, 2),
    KeySpec("LK_DF01", 0x27, _v(0x07), 1),
    KeySpec("LK_DF02", 0x27, _v(0x08), 1),
    KeySpec("LK_DF03", 0x27, _v(0x09), 1),
    KeySpec("UK1_DDF1", 0x27, _v(0x0A), 1),
    KeySpec("UK1_DF01", 0x27, _v(0x0B), 1),
    KeySpec("UK1_DF02", 0x47, _v(0x0C), 2),
    KeySpec("UK2_DF02", 0x47, _v(0x0D), 2),
    KeySpec("UK3_DF02", 0x47, _v(0x0E), 2),
    KeySpec("UK1_DF03", 0x47, _v(0x0F), 2),
    KeySpec("UK2_DF03", 0x27, _v(0x10), 1),
    KeySpec("RK1_DDF1", 0x47, _v(0x11), 2),
    KeySpec("RK1_DF01", 0x47, _v(0x12), 2),
    KeySpec("RK1_DF02", 0x47, _v(0x13), 2),
    KeySpec("RK1_DF03", 0x47, _v(0x14), 2),
    KeySpec("BK_MF", 0x27, _v(0x15), 1),
    KeySpec("STM_MF", 0x28, _v(0x16), 1),
    # Issuance master keys (our choice): one per DF, diversified with the card factor.
    KeySpec("MK_MF", 0x27, _v(0x17), 1),
    KeySpec("MK_DDF1", 0x27, _v(0x18), 1),
    KeySpec("MK_DF01", 0x27, _v(0x19), 1),
    KeySpec("MK_DF02", 0x27, _v(0x1A), 1),
    KeySpec("MK_DF03", 0x27, _v(0x1B), 1),
)

STANDARD_KEY_SPECS: Mapping[str, KeySpec] = MappingProxyType({s.role: s for s in _SPECS})
"""Role -> KeySpec for every key of the user card (docs/reference/healthcard-layout.md §3.2)
plus the MK_* keys."""

ISSUANCE_ROLES: tuple[str, ...] = ("MK_MF", "MK_DDF1", "MK_DF01", "MK_DF02", "MK_DF03")
USER_CARD_ROLES: tuple[str, ...] = tuple(s.role for s in _SPECS if s.role not in ISSUANCE_ROLES)
DEFAULT_ROLES: tuple[str, ...] = USER_CARD_ROLES + ISSUANCE_ROLES
