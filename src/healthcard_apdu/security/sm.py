"""Secure messaging of UPDATE RECORD / UPDATE BINARY (docs/reference/healthcard-layout.md §3.6,
docs/cos.md §6).

E   = ECB_SK(pad_line_encryption(plain, block))      (LD || plain || 80 00.. only if unaligned)
MAC = session MAC over header' || E, IV = zero block  (session.mac pads with method 2)
      header' = CLA' INS P1 P2 Lc', CLA' = CLA with bit 3 (0x04) set, Lc' = len(E) + 4
APDU = CLA' INS P1 P2 Lc' E || MAC

``protect_update`` works with any :class:`SessionOps` (software, PKCS#11 or PSAM session);
``unprotect`` checks and decodes a protected command with a software session (tests,
conformance suite).
"""

from __future__ import annotations

import hmac

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.crypto import CryptoError, pad_line_encryption, unpad_line_encryption
from healthcard_apdu.security.errors import SecureMessagingFormatError
from healthcard_apdu.security.session import MAC_LENGTH, DecryptingSession, SessionOps

__all__ = [
    "MAX_PLAINTEXT",
    "max_plaintext",
    "protect_update",
    "protect_update_binary",
    "protect_update_record",
    "unprotect",
]

SM_CLA_BIT = 0x04
_MAX_LC = 255
MAX_PLAINTEXT = 0xEF
"""Longest plaintext that fits a short APDU with SM4 (239 bytes; 3DES allows 247)."""


def max_plaintext(block_size: int) -> int:
    """Longest plaintext whose E || MAC fits Lc <= 255 for this block size."""
    longest_e = (_MAX_LC - MAC_LENGTH) // block_size * block_size
    return longest_e - 1  # LD byte


def protect_update(
    session: SessionOps, cla: int, ins: int, p1: int, p2: int, plaintext: bytes, *, name: str = ""
) -> CommandApdu:
    """Encrypt and MAC ``plaintext`` into a protected command (CLA | 04)."""
    block = session.cipher.block_size
    limit = max_plaintext(block)
    if len(plaintext) > limit:
        raise SecureMessagingFormatError(
            f"{name or f'INS {ins:02X}'}: plaintext of {len(plaintext)} bytes exceeds the "
            f"{limit}-byte limit of a protected short APDU"
        )
    encrypted = session.encrypt(pad_line_encryption(bytes(plaintext), block))
    cla_sm = cla | SM_CLA_BIT
    lc = len(encrypted) + MAC_LENGTH
    mac = session.mac(bytes((cla_sm, ins, p1, p2, lc)) + encrypted)
    return CommandApdu(cla_sm, ins, p1, p2, encrypted + mac, name=name or f"SM INS {ins:02X}")


def protect_update_record(
    session: SessionOps, record: int, plaintext: bytes, *, p2: int = 0x04
) -> CommandApdu:
    """``04 DC rr 04 Lc' E || MAC`` (trace form; P2=04 addresses record ``rr``)."""
    return protect_update(
        session, 0x00, 0xDC, record, p2, plaintext, name=f"UPDATE RECORD {record} (SM)"
    )


def protect_update_binary(session: SessionOps, offset: int, plaintext: bytes) -> CommandApdu:
    """``04 D6 offH offL Lc' E || MAC``."""
    if not 0 <= offset <= 0x7FFF:
        raise SecureMessagingFormatError(f"UPDATE BINARY offset {offset} out of 0..32767")
    return protect_update(
        session,
        0x00,
        0xD6,
        offset >> 8,
        offset & 0xFF,
        plaintext,
        name=f"UPDATE BINARY {offset} (SM)",
    )


def unprotect(session: DecryptingSession, command: CommandApdu) -> CommandApdu:
    """Check the MAC of a protected command and decrypt it.

    Returns the plain command (CLA without bit 04, data = plaintext). Raises
    :class:`SecureMessagingFormatError` naming the command on a bad layout or a wrong MAC.
    """
    label = command.label
    block = session.cipher.block_size
    if not command.cla & SM_CLA_BIT:
        raise SecureMessagingFormatError(f"{label}: CLA {command.cla:02X} has no SM bit (04)")
    data = command.data
    encrypted, mac = data[:-MAC_LENGTH], data[-MAC_LENGTH:]
    if len(data) <= MAC_LENGTH or len(data) > _MAX_LC or len(encrypted) % block:
        raise SecureMessagingFormatError(
            f"{label}: {len(data)} data bytes are not ciphertext ({block}-byte blocks) + 4-byte MAC"
        )
    header = bytes((command.cla, command.ins, command.p1, command.p2, len(data)))
    if not hmac.compare_digest(session.mac(header + encrypted), mac):
        raise SecureMessagingFormatError(f"{label}: MAC does not verify")
    try:
        plain = unpad_line_encryption(session.decrypt(encrypted), block_size=block)
    except CryptoError as exc:
        raise SecureMessagingFormatError(f"{label}: {exc}") from None
    return CommandApdu(
        command.cla & ~SM_CLA_BIT & 0xFF,
        command.ins,
        command.p1,
        command.p2,
        plain,
        name=command.name,
    )
