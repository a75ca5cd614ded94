"""Key-file entries of the simulated COS (FMCOS 2.0 WRITE KEY layouts,
docs/reference/cos-crypto.md §2.3).

A key is stored as its WRITE KEY header plus value: ``type use change b3 b4 value``.
``b3``/``b4`` mean follow-up state / error counter for authentication-type keys
(39 external auth, 3A PIN, 36 line protection, 37 unblock, 38 reload) and key version /
algorithm id for the others. Keys are looked up by (base type, KID), so different types
may share a KID (FMCOS does this too). Key values never appear in reprs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Base types (low six bits of the type byte; 0x40 / 0x80 are protection bits).
TYPE_DES_ENCRYPT = 0x30
TYPE_DES_DECRYPT = 0x31
TYPE_DES_MAC = 0x32
TYPE_INTERNAL = 0x34
TYPE_LINE_PROTECTION = 0x36
TYPE_UNBLOCK = 0x37
TYPE_RELOAD = 0x38
TYPE_EXTERNAL = 0x39
TYPE_PIN = 0x3A

#: Types whose byte 4 is an error counter ``XY`` (X = maximum tries, Y = tries left).
COUNTER_TYPES = frozenset(
    {TYPE_LINE_PROTECTION, TYPE_UNBLOCK, TYPE_RELOAD, TYPE_EXTERNAL, TYPE_PIN}
)
#: Types whose byte 3 is a follow-up state loaded into the SSR on success.
FOLLOW_UP_TYPES = frozenset({TYPE_EXTERNAL, TYPE_PIN})
#: Key type bits that force ciphertext + MAC WRITE KEY after issuance.
PROTECTED_BITS = 0xC0
#: Each key takes its WRITE KEY data (5-byte header + value) plus one length byte.
KEY_OVERHEAD = 6


def base_type(type_byte: int) -> int:
    return type_byte & 0x3F


@dataclass(eq=False)
class Key:
    """One key record; ``value`` is secret and never shown."""

    type_byte: int
    kid: int
    use_ac: int
    change_ac: int
    b3: int
    b4: int
    value: bytes = field(repr=False)

    @property
    def base(self) -> int:
        return base_type(self.type_byte)

    @property
    def has_counter(self) -> bool:
        return self.base in COUNTER_TYPES

    @property
    def follow_up(self) -> int:
        return self.b3 & 0x0F

    @property
    def max_tries(self) -> int:
        return self.b4 >> 4

    @property
    def tries_left(self) -> int:
        return self.b4 & 0x0F

    @property
    def blocked(self) -> bool:
        return self.has_counter and self.tries_left == 0

    def record_failure(self) -> int:
        """Decrement the tries left (not below 0); return what is left."""
        left = max(self.tries_left - 1, 0)
        self.b4 = (self.b4 & 0xF0) | left
        return left

    def record_success(self) -> bool:
        """Restore tries left to the maximum; True when the counter changed."""
        if self.tries_left == self.max_tries:
            return False
        self.b4 = (self.b4 & 0xF0) | self.max_tries
        return True

    @property
    def space(self) -> int:
        return 5 + len(self.value) + 1

    def __repr__(self) -> str:
        return (
            f"Key(type={self.type_byte:02X}, kid={self.kid:02X}, use={self.use_ac:02X}, "
            f"change={self.change_ac:02X}, b3={self.b3:02X}, b4={self.b4:02X}, "
            f"len={len(self.value)})"
        )


@dataclass(eq=False)
class KeyFile:
    """The key file of a DF (CREATE FILE type 3F): size, SFI byte, add right, keys."""

    size: int
    sfi_byte: int
    add_ac: int
    reserved: bytes = b"\xff\xff"
    keys: list[Key] = field(default_factory=list)

    def find(self, base: int, kid: int) -> Key | None:
        for key in self.keys:
            if key.base == base and key.kid == kid:
                return key
        return None

    def find_type(self, type_byte: int, kid: int) -> Key | None:
        """The key with exactly this type byte (WRITE KEY modify: P1 = current type)."""
        for key in self.keys:
            if key.type_byte == type_byte and key.kid == kid:
                return key
        return None

    def first_of(self, base: int) -> Key | None:
        for key in self.keys:
            if key.base == base:
                return key
        return None

    @property
    def used(self) -> int:
        return sum(k.space for k in self.keys)
