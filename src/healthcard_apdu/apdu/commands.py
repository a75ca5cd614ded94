"""Typed builders for the commands the health card, its issuance and the SAM use.

Each builder returns a named :class:`CommandApdu`; names appear in traces and errors.
References: docs/reference/healthcard-layout.md §4 (user card and SAM),
docs/reference/cos-crypto.md §2 (FMCOS issuance).
"""

from __future__ import annotations

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError


def _fid(fid: int) -> bytes:
    if not 0 <= fid <= 0xFFFF:
        raise ApduFormatError(f"file identifier {fid:#x} is not two bytes")
    return fid.to_bytes(2, "big")


def select_fid(fid: int, *, fci: bool = False) -> CommandApdu:
    """SELECT by 2-byte FID (``00 A4 00 00 02 FID``); ``fci`` adds Le=00 for the FCI."""
    return CommandApdu(0x00, 0xA4, 0x00, 0x00, _fid(fid), 256 if fci else None,
                       name=f"SELECT {fid:04X}")


def select_name(name: bytes) -> CommandApdu:
    """SELECT by DF name (``00 A4 04 00 Ln name 00``)."""
    return CommandApdu(0x00, 0xA4, 0x04, 0x00, name, 256, name="SELECT by name")


def read_binary(offset: int, length: int) -> CommandApdu:
    if not 0 <= offset <= 0x7FFF:
        raise ApduFormatError(f"READ BINARY offset {offset} out of 0..32767")
    return CommandApdu(0x00, 0xB0, offset >> 8, offset & 0xFF, le=length, name="READ BINARY")


def update_binary(offset: int, data: bytes, *, cla: int = 0x00) -> CommandApdu:
    if not 0 <= offset <= 0x7FFF:
        raise ApduFormatError(f"UPDATE BINARY offset {offset} out of 0..32767")
    return CommandApdu(cla, 0xD6, offset >> 8, offset & 0xFF, data, name="UPDATE BINARY")


def read_record(number: int, length: int = 256) -> CommandApdu:
    """READ RECORD by number (P2=04)."""
    return CommandApdu(0x00, 0xB2, number, 0x04, le=length, name=f"READ RECORD {number}")


def read_record_by_tag(tag: int, length: int) -> CommandApdu:
    """READ RECORD by identifier: first record whose tag is P1 (P2=00), as in the traces."""
    return CommandApdu(0x00, 0xB2, tag, 0x00, le=length, name=f"READ RECORD tag {tag:02X}")


def update_record(number: int, data: bytes, *, cla: int = 0x00, p2: int = 0x04) -> CommandApdu:
    """UPDATE RECORD; P2=04 addresses record ``number``, P2=03 a new record in a cyclic file."""
    return CommandApdu(cla, 0xDC, number, p2, data, name=f"UPDATE RECORD {number}")


def append_record(data: bytes) -> CommandApdu:
    return CommandApdu(0x00, 0xE2, 0x00, 0x00, data, name="APPEND RECORD")


def write_record_flag(number: int) -> CommandApdu:
    """Health-card WRITE RECORD of a DF03 index flag to 00 (``84 D2 rr 04 00``)."""
    return CommandApdu(0x84, 0xD2, number, 0x04, le=256, name=f"WRITE RECORD flag {number}")


def erase_record_flag(number: int) -> CommandApdu:
    """Health-card ERASE RECORD of a DF03 index flag to FF (``84 0C rr 04 00``)."""
    return CommandApdu(0x84, 0x0C, number, 0x04, le=256, name=f"ERASE RECORD flag {number}")


def get_challenge(length: int = 8) -> CommandApdu:
    return CommandApdu(0x00, 0x84, 0x00, 0x00, le=length, name="GET CHALLENGE")


def external_authenticate(key_ref: int, data: bytes) -> CommandApdu:
    """EXTERNAL AUTHENTICATE: health-card form (17 bytes) or FMCOS form (8/16 bytes)."""
    return CommandApdu(0x00, 0x82, 0x00, key_ref, data, name=f"EXTERNAL AUTHENTICATE {key_ref:02X}")


def internal_authenticate(key_ref: int, data: bytes, *, p1: int = 0x00) -> CommandApdu:
    return CommandApdu(0x00, 0x88, p1, key_ref, data, le=256,
                       name=f"INTERNAL AUTHENTICATE {key_ref:02X}")


def get_response(length: int) -> CommandApdu:
    return CommandApdu(0x00, 0xC0, 0x00, 0x00, le=length or 256, name="GET RESPONSE")


def verify_pin(key_ref: int, pin: bytes) -> CommandApdu:
    return CommandApdu(0x00, 0x20, 0x00, key_ref, pin, name="VERIFY")


def change_pin(key_ref: int, old: bytes, new: bytes) -> CommandApdu:
    """FMCOS CHANGE PIN ``80 5E 01 KID Lc old FF new`` (plaintext)."""
    return CommandApdu(0x80, 0x5E, 0x01, key_ref, old + b"\xff" + new, name="CHANGE PIN")


def erase_df() -> CommandApdu:
    return CommandApdu(0x80, 0x0E, 0x00, 0x00, le=256, name="ERASE DF")


def create_file(fid: int, attributes: bytes) -> CommandApdu:
    """FMCOS CREATE FILE ``80 E0 FID Lc attributes``."""
    return CommandApdu(0x80, 0xE0, fid >> 8, fid & 0xFF, attributes, name=f"CREATE FILE {fid:04X}")


def write_key(p1: int, key_id: int, data: bytes, *, cla: int = 0x80) -> CommandApdu:
    """FMCOS WRITE KEY: ``80 D4 01 KID`` plaintext add, ``84 D4 type KID`` ciphertext+MAC."""
    return CommandApdu(cla, 0xD4, p1, key_id, data, name=f"WRITE KEY {key_id:02X}")


def sam_diversify(p1: int, p2: int, factors: bytes) -> CommandApdu:
    """SAM ``80 DE P1 P2``: set up a diversified (session) key from factors."""
    return CommandApdu(0x80, 0xDE, p1, p2, factors, name=f"SAM DIVERSIFY {p1:02X}{p2:02X}")


def sam_cipher(data: bytes, *, mac: bool = False) -> CommandApdu:
    """SAM ``80 FA``: P1=00 encrypt, P1=05 MAC (data = IV(16) || padded input)."""
    return CommandApdu(0x80, 0xFA, 0x05 if mac else 0x00, 0x00, data,
                       name="SAM MAC" if mac else "SAM ENCRYPT")
