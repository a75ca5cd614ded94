"""The simulated PSAM: files, PIN, key diversification (80 DE), cipher/MAC (80 FA), SM3/SM2.

Master keys come from a SAM key file (JSON, format in docs/sim.md). The SAM answers like
a T=0 card: results with data come back as ``61 xx`` and are fetched with GET RESPONSE.
Commands (docs/sim.md "SAM commands"; docs/reference/healthcard-layout.md §4.2):

* ``00 A4 00 00 02 FID``: 3F00, DF01, 0015, 0016, 001A, 001B, 001C.
* ``00 B0``: read any file (free read); writes are refused (6982).
* ``00 20 00 00 Lc PIN`` / ``80 5E 01 00 Lc old FF new``: PIN of DF01.
* ``00 84 00 00 Le``: challenge.
* ``80 DE P1 P2 Lc f1..fn``: session key = diversify_levels(MK[P2], [f1..fn]); when the
  key declares its usage P1 must equal it; P1 high nibble 2 / 4 expects 2 / 3 factors.
* ``80 FA 00 00 Lc data``: ECB encryption with the session key.
  ``80 FA 05 00 Lc IV || data``: CBC-MAC over already padded data, left 4 bytes.
* ``80 F4 P1 P2 Lc data``: SM3. P1=00 more data follows, P1=01 last block (returns the
  32-byte digest). P2=01 on the first block prefixes Z_A of the SAM's SM2 key
  (user ID 1234567812345678), P2=00 hashes the data alone.
* ``80 F8 00 00 20 e``: SM2 signature r || s of the 32-byte digest e (needs the PIN).

80 DE / 80 FA / 80 F4 / 80 F8 need DF01 to be the current DF (6985 otherwise).
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.crypto import (
    DEFAULT_SM2_USER_ID,
    BlockCipher,
    CryptoError,
    diversify_levels,
    ecb_encrypt,
    key_check_value,
    mac_iso9797_alg1,
    mac_iso9797_alg3,
    sm2_encode_public,
    sm2_public_key,
    sm2_sign_digest,
    sm2_za,
    sm3,
)
from healthcard_apdu.sim.errors import ImageError
from healthcard_apdu.sim.faults import OpCost

FORMAT = "healthcard-sim-sam/1"
SAM_DF01 = 0xDF01
#: Files and sizes of the SAM (docs/reference/healthcard-layout.md §4.2).
SAM_FILE_SIZES = {"EF15": 14, "EF16": 6, "EF1A": 25, "EF1B": 180, "EF1C": 190}
_FILE_FIDS = {"EF15": 0x0015, "EF16": 0x0016, "EF1A": 0x001A, "EF1B": 0x001B, "EF1C": 0x001C}
_MF_FILES = ("EF15", "EF16")
_DF01_FILES = ("EF1A", "EF1B", "EF1C")
DEFAULT_PIN = "123456"
DEFAULT_PIN_TRIES = 3
DEFAULT_DF01_NAME = b"HEALTHCARD.PSAM"
MF_NAME = b"1PAY.SYS.DDF01"
SM3_LIMIT = 64 * 1024
OK = 0x9000


@dataclass
class SamKey:
    """A master key addressed by its 80DE P2 byte (``ver << 5 | index``)."""

    index: int
    value: bytes = field(repr=False)
    usage: int | None = None
    role: str = ""
    cipher: BlockCipher = BlockCipher.SM4


@dataclass
class SamState:
    """Everything a SAM is configured with (read from the key file)."""

    serial: bytes
    keys: dict[int, SamKey]
    pin: bytes = field(repr=False)
    pin_tries: int = DEFAULT_PIN_TRIES
    sm2_private: int | None = field(default=None, repr=False)
    files: dict[str, bytes] = field(default_factory=dict)
    df01_name: bytes = DEFAULT_DF01_NAME


def pin_to_bcd(digits: str) -> bytes:
    """'123456' -> 12 34 56; an odd count is padded with F ('12345' -> 12 34 5F)."""
    if not digits.isdigit() or not 4 <= len(digits) <= 16:
        raise ImageError(f"SAM PIN must be 4..16 decimal digits, got {len(digits)} characters")
    if len(digits) % 2:
        digits += "F"
    return bytes.fromhex(digits)


def default_certificate(serial: bytes, sm2_private: int | None) -> bytes:
    """Test-only SAM certificate (EF1C, 190 B): 01 || serial(10) || 04 X Y || 10 || ID || 00..

    The national certificate format is not public (docs/sim.md).
    """
    body = b"\x01" + serial
    if sm2_private is not None:
        body += sm2_encode_public(sm2_public_key(sm2_private))
        body += bytes((len(DEFAULT_SM2_USER_ID),)) + DEFAULT_SM2_USER_ID
    return body + bytes(SAM_FILE_SIZES["EF1C"] - len(body))


def _default_files(serial: bytes, sm2_private: int | None) -> dict[str, bytes]:
    return {
        "EF15": serial + b"\x01\x01\x01\x00",
        "EF16": bytes(6),
        "EF1A": bytes(25),
        "EF1B": bytes(180),
        "EF1C": default_certificate(serial, sm2_private),
    }


def _hex_field(obj: dict[str, Any], name: str, where: str) -> bytes:
    try:
        return bytes.fromhex(obj[name])
    except (KeyError, ValueError, TypeError) as exc:
        raise ImageError(f"{where}: field {name!r} missing or not hex") from exc


def _cipher_field(value: object, where: str) -> BlockCipher:
    try:
        return BlockCipher[str(value).upper().replace("3DES", "TDES")]
    except KeyError as exc:
        raise ImageError(f"{where}: unknown algorithm {value!r} (SM4 or TDES)") from exc


def sam_state_from_json(obj: dict[str, Any], where: str = "SAM key file") -> SamState:
    """Parse a SAM key file (see docs/sim.md); any malformed field raises :class:`ImageError`."""
    try:
        return _sam_state_from_json(obj, where)
    except (ValueError, TypeError, AttributeError) as exc:
        # The message of int()/fromhex() may quote the bad text, e.g. a private key: omit it.
        raise ImageError(
            f"{where}: malformed field ({type(exc).__name__}; see docs/sim.md)"
        ) from None


def _sam_state_from_json(obj: dict[str, Any], where: str) -> SamState:
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise ImageError(f"{where}: not a {FORMAT} key file")
    default_cipher = _cipher_field(obj.get("algorithm", "SM4"), where)
    serial = bytes.fromhex(obj.get("serial", "00000000000000000001"))
    if len(serial) != 10:
        raise ImageError(f"{where}: serial must be 10 bytes, got {len(serial)}")
    keys: dict[int, SamKey] = {}
    for i, entry in enumerate(obj.get("keys", [])):
        kw = f"{where}: keys[{i}]"
        try:
            index = int(entry["index"], 16)
        except (KeyError, ValueError, TypeError) as exc:
            raise ImageError(f"{kw}: 'index' missing or not hex") from exc
        value = _hex_field(entry, "key", kw)
        cipher = _cipher_field(entry.get("algorithm", default_cipher.name), kw)
        if len(value) not in ((16,) if cipher is BlockCipher.SM4 else (8, 16, 24)):
            raise ImageError(f"{kw}: {cipher.name} key of {len(value)} bytes")
        kcv = entry.get("kcv")
        if kcv is not None and key_check_value(cipher, value).hex().upper() != str(kcv).upper():
            raise ImageError(f"{kw}: key check value does not match the key")
        usage = entry.get("usage")
        if index in keys:
            raise ImageError(f"{kw}: index {index:02X} appears twice")
        keys[index] = SamKey(index, value, None if usage is None else int(usage, 16),
                             str(entry.get("role", "")), cipher)
    sm2_hex = obj.get("sm2_private_key")
    try:
        sm2_private = int(sm2_hex, 16) if sm2_hex else None
    except (ValueError, TypeError):
        raise ImageError(f"{where}: sm2_private_key is not hex") from None
    try:
        if sm2_private is not None:
            sm2_public_key(sm2_private)
    except CryptoError as exc:
        raise ImageError(f"{where}: sm2_private_key is not a valid SM2 private key") from exc
    files = _default_files(serial, sm2_private)
    for name, value in dict(obj.get("files", {})).items():
        if name not in SAM_FILE_SIZES:
            raise ImageError(f"{where}: unknown file {name!r} (one of {list(SAM_FILE_SIZES)})")
        content = bytes.fromhex(value)
        if len(content) != SAM_FILE_SIZES[name]:
            raise ImageError(
                f"{where}: {name} is {len(content)} bytes, must be {SAM_FILE_SIZES[name]}"
            )
        files[name] = content
    tries = int(obj.get("pin_tries", DEFAULT_PIN_TRIES))
    if not 1 <= tries <= 15:
        raise ImageError(f"{where}: pin_tries must be 1..15, got {tries}")
    df01_name = bytes.fromhex(obj["df01_name"]) if "df01_name" in obj else DEFAULT_DF01_NAME
    return SamState(serial, keys, pin_to_bcd(str(obj.get("pin", DEFAULT_PIN))), tries,
                    sm2_private, files, df01_name)


def sam_state_to_json(state: SamState, pin: str) -> dict[str, Any]:
    """A complete key file for ``state`` (``pin`` as digits; the state keeps only BCD)."""
    return {
        "format": FORMAT,
        "serial": state.serial.hex().upper(),
        "pin": pin,
        "pin_tries": state.pin_tries,
        "df01_name": state.df01_name.hex().upper(),
        "keys": [
            {"index": f"{k.index:02X}", "role": k.role, "key": k.value.hex().upper(),
             "algorithm": k.cipher.name,
             **({"usage": f"{k.usage:02X}"} if k.usage is not None else {})}
            for k in state.keys.values()
        ],
        "sm2_private_key": None if state.sm2_private is None else f"{state.sm2_private:064X}",
        "files": {name: value.hex().upper() for name, value in state.files.items()},
    }


def load_sam_keys(path: Path) -> SamState:
    try:
        obj = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ImageError(f"{path}: cannot read SAM key file ({exc.strerror})") from exc
    except ValueError as exc:
        raise ImageError(f"{path}: not JSON ({exc})") from exc
    return sam_state_from_json(obj, str(path))


class SamOS:
    """Command interpreter of the simulated PSAM."""

    def __init__(self, state: SamState, *, rng: Callable[[int], bytes] = os.urandom) -> None:
        self.state = state
        self.rng = rng
        self.cost = OpCost()
        self.tries_left = state.pin_tries
        self.reset_session()

    def reset_session(self) -> None:
        self.in_df01 = False
        self.current_file: str | None = None
        self.pin_ok = False
        self.session: tuple[BlockCipher, bytes] | None = None
        self.sm3_buffer: bytearray | None = None

    def execute(self, cmd: CommandApdu) -> tuple[bytes, int]:
        handler = {
            (0x00, 0xA4): self._select, (0x00, 0xB0): self._read_binary,
            (0x00, 0xD6): self._update_binary, (0x00, 0x20): self._verify,
            (0x80, 0x5E): self._change_pin, (0x00, 0x84): self._get_challenge,
            (0x80, 0xDE): self._diversify, (0x80, 0xFA): self._cipher,
            (0x80, 0xF4): self._sm3, (0x80, 0xF8): self._sm2_sign,
        }.get((cmd.cla, cmd.ins))
        if handler is None:
            known = {0xA4, 0xB0, 0xD6, 0x20, 0x5E, 0x84, 0xDE, 0xFA, 0xF4, 0xF8}
            return b"", 0x6E00 if cmd.ins in known else 0x6D00
        return handler(cmd)

    # --- files ---------------------------------------------------------------------------

    def _select(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if cmd.p1 != 0x00 or cmd.p2 not in (0x00, 0x0C):
            return b"", 0x6A86
        if len(cmd.data) != 2:
            return b"", 0x6700
        fid = int.from_bytes(cmd.data, "big")
        if fid == 0x3F00:
            self.in_df01, self.current_file, self.pin_ok = False, None, False
            return self._fci(MF_NAME, cmd), OK
        if fid == SAM_DF01:
            self.in_df01, self.current_file, self.pin_ok = True, None, False
            return self._fci(self.state.df01_name, cmd), OK
        visible = _DF01_FILES if self.in_df01 else _MF_FILES
        for name in visible:
            if _FILE_FIDS[name] == fid:
                self.current_file = name
                return b"", OK
        return b"", 0x6A82

    @staticmethod
    def _fci(name: bytes, cmd: CommandApdu) -> bytes:
        if cmd.p2 == 0x0C:
            return b""
        body = b"\x84" + bytes((len(name),)) + name
        return b"\x6f" + bytes((len(body),)) + body

    def _read_binary(self, cmd: CommandApdu) -> tuple[bytes, int]:
        name = self.current_file
        offset = (cmd.p1 << 8) | cmd.p2
        if cmd.p1 & 0x80:
            sfi, offset = cmd.p1 & 0x1F, cmd.p2
            visible = _DF01_FILES if self.in_df01 else _MF_FILES
            name = next((n for n in visible if _FILE_FIDS[n] == sfi), None)
            if name is None:
                return b"", 0x6A82
            self.current_file = name
        if name is None:
            return b"", 0x6986
        content = self.state.files[name]
        if offset >= len(content):
            return b"", 0x6B00
        le = 256 if cmd.le is None else cmd.le
        return content[offset : offset + le], OK

    def _update_binary(self, cmd: CommandApdu) -> tuple[bytes, int]:
        return b"", 0x6982

    # --- PIN -----------------------------------------------------------------------------

    def _check_pin(self, given: bytes) -> int:
        if self.tries_left == 0:
            return 0x6983
        if hmac.compare_digest(given, self.state.pin):
            self.tries_left = self.state.pin_tries
            return OK
        self.tries_left -= 1
        return 0x63C0 | self.tries_left

    def _verify(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if cmd.p1 or cmd.p2:
            return b"", 0x6A86
        if not self.in_df01:
            return b"", 0x6A88
        if not cmd.data:
            return b"", (0x63C0 | self.tries_left) if self.tries_left else 0x6983
        sw = self._check_pin(cmd.data)
        self.pin_ok = sw == OK
        return b"", sw

    def _change_pin(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if cmd.p1 != 0x01 or cmd.p2 != 0x00:
            return b"", 0x6A86
        if not self.in_df01:
            return b"", 0x6A88
        sep = cmd.data.find(b"\xff")
        if sep <= 0 or sep == len(cmd.data) - 1:
            return b"", 0x6A80
        sw = self._check_pin(cmd.data[:sep])
        if sw != OK:
            return b"", sw
        new = cmd.data[sep + 1 :]
        if not 2 <= len(new) <= 8:
            return b"", 0x6700
        self.state.pin = new
        return b"", OK

    def _get_challenge(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if cmd.p1 or cmd.p2:
            return b"", 0x6A86
        le = 8 if cmd.le in (None, 256) else cmd.le
        if le not in (4, 8, 16):
            return b"", 0x6700
        return self.rng(le), OK

    # --- crypto services -----------------------------------------------------------------

    def _diversify(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if not self.in_df01:
            return b"", 0x6985
        self.session = None
        key = self.state.keys.get(cmd.p2)
        if key is None:
            return b"", 0x6A88
        if key.usage is not None and key.usage != cmd.p1:
            return b"", 0x6A86
        data = cmd.data
        if not data or len(data) % 8 or len(data) > 32:
            return b"", 0x6700
        factors = [data[i : i + 8] for i in range(0, len(data), 8)]
        expected = {0x2: 2, 0x4: 3}.get(cmd.p1 >> 4)
        if expected is not None and len(factors) != expected:
            return b"", 0x6700
        self.session = (key.cipher, diversify_levels(key.cipher, key.value, factors))
        self.cost.cipher_blocks += 2 * len(factors)
        return b"", OK

    def _cipher(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if not self.in_df01 or self.session is None:
            return b"", 0x6985
        if cmd.p2 != 0x00:
            return b"", 0x6A86
        cipher, key = self.session
        bs, data = cipher.block_size, cmd.data
        if cmd.p1 == 0x00:
            if not data or len(data) % bs:
                return b"", 0x6700
            self.cost.cipher_blocks += len(data) // bs
            return ecb_encrypt(cipher, key, data), OK
        if cmd.p1 == 0x05:
            if len(data) < 2 * bs or len(data) % bs:
                return b"", 0x6700
            iv, body = data[:bs], data[bs:]
            self.cost.cipher_blocks += len(body) // bs
            if cipher is BlockCipher.TDES and len(key) == 16:
                mac = mac_iso9797_alg3(key, body, iv, pad=False)
            else:
                mac = mac_iso9797_alg1(cipher, key, body, iv, pad=False)
            return mac[:4], OK
        return b"", 0x6A86

    def _sm3(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if not self.in_df01:
            return b"", 0x6985
        if cmd.p1 not in (0x00, 0x01) or cmd.p2 not in (0x00, 0x01):
            return b"", 0x6A86
        if self.sm3_buffer is None:
            self.sm3_buffer = bytearray()
            if cmd.p2 == 0x01:
                if self.state.sm2_private is None:
                    self.sm3_buffer = None
                    return b"", 0x6A88
                self.sm3_buffer += sm2_za(sm2_public_key(self.state.sm2_private))
        elif cmd.p2 == 0x01:
            return b"", 0x6A86
        if len(self.sm3_buffer) + len(cmd.data) > SM3_LIMIT:
            self.sm3_buffer = None
            return b"", 0x6A84
        self.sm3_buffer += cmd.data
        if cmd.p1 == 0x00:
            return b"", OK
        message, self.sm3_buffer = bytes(self.sm3_buffer), None
        self.cost.hash_blocks += len(message) // 64 + 1
        return sm3(message), OK

    def _sm2_sign(self, cmd: CommandApdu) -> tuple[bytes, int]:
        if not self.in_df01:
            return b"", 0x6985
        if cmd.p1 or cmd.p2:
            return b"", 0x6A86
        if len(cmd.data) != 32:
            return b"", 0x6700
        if self.state.sm2_private is None:
            return b"", 0x6A88
        if not self.pin_ok:
            return b"", 0x6982
        self.cost.signatures += 1
        return sm2_sign_digest(self.state.sm2_private, cmd.data), OK
