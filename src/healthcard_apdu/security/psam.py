"""PSAM security module: a real or simulated SAM over a :class:`Channel` (80DE / 80FA).

The SAM keeps the master keys; the host sends ``80 DE P1 P2 cardF [cityF] R`` to set up the
session key and ``80 FA`` to encrypt (P1=00) or MAC (P1=05) with it. The SAM holds one
session key at a time: a :class:`PsamSession` re-sends its ``80DE`` when another session was
set up in between (one ``80DE`` then encrypt and MAC, as the logged real exchange did). The SAM
PIN is verified once and then forgotten: by default **at the MF** (``SELECT 3F00``, ``VERIFY``,
then ``SELECT DF01``), as real PSAMs took it in public reader logs; ``pin_at="df01"`` verifies
after selecting DF01 (libzhouyb's order). A refused PIN raises :class:`SamPinError` with the
tries left and is never retried -- later calls fail fast without sending it again. The host
never looks at the SAM's FCIs (real ones differ in length). The module assumes it owns the SAM
channel.
"""

from __future__ import annotations

import logging
from typing import NoReturn

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import (
    AuthenticationBlocked,
    AuthenticationFailed,
    CardError,
    HealthCardError,
)
from healthcard_apdu.crypto import BlockCipher, pad_iso9797_m2
from healthcard_apdu.security.errors import (
    SamCommandError,
    SamPinError,
    SecurityModuleError,
    UnsupportedOperation,
)
from healthcard_apdu.security.keyspec import CardFactors, KeySpec
from healthcard_apdu.security.module import SecurityModule, check_challenge
from healthcard_apdu.security.session import MAC_LENGTH
from healthcard_apdu.transport.channel import Channel

__all__ = ["PsamSecurityModule", "PsamSession", "pin_to_bcd"]

log = logging.getLogger(__name__)

SAM_APPLICATION_FID = 0xDF01
SAM_CERTIFICATE_FID = 0x001C
CERTIFICATE_LENGTH = 190
_MAX_LC = 255
_SM3_INS = 0xF4
_SM2_SIGN_INS = 0xF8
SAM_MF_FID = 0x3F00
#: Where the SAM PIN is verified: at the MF (default, real PSAMs) or in DF01.
PIN_PLACES = ("mf", "df01")


def pin_to_bcd(pin: str) -> bytes:
    """Decimal PIN -> BCD bytes, padded with F for an odd length ("12345" -> 12 34 5F)."""
    if not (pin.isascii() and pin.isdigit() and 2 <= len(pin) <= 16):
        raise SecurityModuleError("SAM PIN must be 2..16 decimal digits")
    if len(pin) % 2:
        pin += "F"
    return bytes.fromhex(pin)


Setup = tuple[int, int, bytes]


class PsamSession:
    """A session key inside the SAM, addressed by its 80DE set-up."""

    def __init__(self, module: PsamSecurityModule, setup: Setup, role: str) -> None:
        self._module = module
        self._setup = setup
        self.role = role

    @property
    def cipher(self) -> BlockCipher:
        return self._module.algorithm

    def encrypt(self, data: bytes) -> bytes:
        block = self.cipher.block_size
        if not data or len(data) % block:
            raise SecurityModuleError(
                f"SAM encrypt: {len(data)} bytes are not whole {block}-byte blocks"
            )
        chunk = self._module.max_data // block * block
        out = bytearray()
        for start in range(0, len(data), chunk):
            out += self._cipher(bytes(data[start : start + chunk]), mac=False)
        return bytes(out)

    def mac(self, data: bytes, iv: bytes | None = None) -> bytes:
        block = self.cipher.block_size
        chain = bytes(block) if iv is None else bytes(iv)
        if len(chain) != block:
            raise SecurityModuleError(f"SAM MAC IV must be {block} bytes, got {len(chain)}")
        padded = pad_iso9797_m2(bytes(data), block)
        room = (self._module.max_data - block) // block * block
        if len(padded) > room:
            if self.cipher is not BlockCipher.SM4:
                raise SecurityModuleError(
                    f"SAM MAC: {len(data)} bytes exceed the {room - 1}-byte limit of one "
                    f"80FA 05 command (3DES retail MAC cannot be split)"
                )
            # SM4 CBC-MAC: chain the leading blocks through 80FA 00 (ECB, one block each).
            head, padded = padded[: len(padded) - room], padded[len(padded) - room :]
            for start in range(0, len(head), block):
                part = bytes(a ^ b for a, b in zip(chain, head[start : start + block], strict=True))
                chain = self._cipher(part, mac=False)
        result = self._cipher(chain + padded, mac=True)
        if len(result) < MAC_LENGTH:
            raise SecurityModuleError(f"SAM MAC: answer of {len(result)} bytes, expected 4")
        return result[:MAC_LENGTH]

    def _cipher(self, data: bytes, *, mac: bool) -> bytes:
        self._module._activate(self._setup, self.role)
        response = self._module._sam(commands.sam_cipher(data, mac=mac))
        if not mac and len(response) != len(data):
            raise SecurityModuleError(
                f"SAM ENCRYPT: {len(response)} bytes back for {len(data)} bytes sent"
            )
        return response

    def __repr__(self) -> str:
        p1, p2, _ = self._setup
        return f"PsamSession({self.role}, P1={p1:02X} P2={p2:02X})"


class PsamSecurityModule(SecurityModule):
    """SAM over a channel; ``algorithm`` is the SAM's block cipher for these keys (SM4 default)."""

    def __init__(
        self,
        channel: Channel,
        *,
        pin: str | None,
        algorithm: BlockCipher = BlockCipher.SM4,
        application_fid: int = SAM_APPLICATION_FID,
        certificate_fid: int = SAM_CERTIFICATE_FID,
        max_data: int = 240,
        name: str = "psam",
        pin_at: str = "mf",
    ) -> None:
        if not 32 <= max_data <= _MAX_LC:
            raise SecurityModuleError(f"max_data must be 32..255, got {max_data}")
        if pin_at not in PIN_PLACES:
            raise SecurityModuleError(f"pin_at must be one of {PIN_PLACES}, got {pin_at!r}")
        self.pin_at = pin_at
        self.name = name
        self.channel = channel
        self.max_data = max_data
        self._algorithm = algorithm
        self._application_fid = application_fid
        self._certificate_fid = certificate_fid
        self._pin = None if pin is None else pin_to_bcd(pin)
        self._pin_given = pin is not None
        self._ready = False
        self._failure: SamPinError | None = None
        self._current: Setup | None = None
        self._certificate: bytes | None = None

    @property
    def algorithm(self) -> BlockCipher:
        return self._algorithm

    @property
    def pin_state(self) -> str:
        """``verified``, ``not verified yet``, ``no PIN given`` or why it was refused."""
        if self._failure is not None:
            return f"refused: {self._failure}"
        if not self._pin_given:
            return "no PIN given"
        return "verified" if self._ready else "not verified yet"

    # -- channel helpers ---------------------------------------------------------------------

    def _call(self, command: CommandApdu, *, secret: bool = False) -> bytes:
        return self.channel.call(command, secret=secret).data

    def _sam(self, command: CommandApdu) -> bytes:
        """A SAM service command; a refusal becomes :class:`SamCommandError`."""
        try:
            return self._call(command)
        except CardError as exc:
            raise SamCommandError(f"SAM {self.name}: {exc}", exc.sw) from exc

    def unlock(self) -> None:
        """Verify the PIN (once; never retried) at the MF or in DF01 (``pin_at``) and leave
        the SAM application DF01 selected."""
        if self._failure is not None:
            raise SamPinError(str(self._failure), self._failure.retries_left)
        if self._ready:
            return
        at_mf = self._pin is not None and self.pin_at == "mf"
        self._sam(commands.select_fid(SAM_MF_FID if at_mf else self._application_fid))
        if self._pin is not None:
            pin, self._pin = self._pin, None
            try:
                self._call(commands.verify_pin(0x00, pin), secret=True)
            except AuthenticationBlocked:
                self._fail(f"SAM {self.name}: PIN is blocked", 0)
            except AuthenticationFailed as exc:
                self._fail(
                    f"SAM {self.name}: PIN refused, {exc.retries_left} tries left "
                    "(not retried; fix the PIN before the next attempt)",
                    exc.retries_left,
                )
            except HealthCardError as exc:
                self._fail(
                    f"SAM {self.name}: PIN verification did not complete "
                    f"({type(exc).__name__}: {exc}); not retried"
                )
            except BaseException:
                # whatever happened, the PIN was sent at most once and is gone: never go on
                # without it as if it had been verified
                self._failure = SamPinError(
                    f"SAM {self.name}: PIN verification was interrupted; not retried"
                )
                raise
        if at_mf:
            self._sam(commands.select_fid(self._application_fid))  # the MF's PIN state holds
        self._ready = True
        log.debug("SAM %s unlocked", self.name)

    def _fail(self, message: str, retries_left: int | None = None) -> NoReturn:
        self._failure = SamPinError(message, retries_left)
        raise SamPinError(message, retries_left) from None

    def _activate(self, setup: Setup, role: str) -> None:
        self.unlock()
        if self._current == setup:
            return
        p1, p2, data = setup
        self._current = None
        self._sam(commands.sam_diversify(p1, p2, data))
        self._current = setup
        log.debug("SAM %s session key set for %s (P1=%02X P2=%02X)", self.name, role, p1, p2)

    # -- SecurityModule --------------------------------------------------------------------

    def session(self, key: KeySpec, factors: CardFactors, challenge: bytes) -> PsamSession:
        data = b"".join([*factors.for_key(key), check_challenge(challenge)])
        setup: Setup = (key.sam_p1, key.sam_p2, data)
        self._activate(setup, key.role)
        return PsamSession(self, setup, key.role)

    def derive_card_key(self, key: KeySpec, factors: CardFactors) -> bytes:
        raise UnsupportedOperation(
            f"PSAM cannot export the card key of {key.role}; personalization (WRITE KEY) "
            "needs the software or PKCS#11 backend"
        )

    def key_check_values(self) -> dict[str, str]:
        raise UnsupportedOperation("PSAM keys cannot be read, so it has no key check values")

    def sm3(self, data: bytes) -> bytes:
        """SM3 in the SAM: ``80 F4 P1 00`` in chunks, P1=00 for all but the last, 01 last."""
        self.unlock()
        chunk = self.max_data
        parts = [bytes(data[i : i + chunk]) for i in range(0, len(data), chunk)] or [b""]
        digest = b""
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            command = CommandApdu(
                0x80,
                _SM3_INS,
                0x01 if last else 0x00,
                0x00,
                part,
                le=256 if last else None,
                name="SAM SM3",
            )
            digest = self._sam(command)
        if len(digest) != 32:
            raise SecurityModuleError(f"SAM SM3: {len(digest)}-byte digest, expected 32")
        return digest

    def sign_digest(self, digest: bytes) -> bytes:
        """SM2 signature of a 32-byte digest: ``80 F8 00 00 20 e`` -> r || s."""
        if len(digest) != 32:
            raise SecurityModuleError(f"SM2 digest must be 32 bytes, got {len(digest)}")
        self.unlock()
        signature = self._sam(
            CommandApdu(0x80, _SM2_SIGN_INS, 0x00, 0x00, bytes(digest), le=256, name="SAM SM2 SIGN")
        )
        if len(signature) != 64:
            raise SecurityModuleError(f"SAM SM2 SIGN: {len(signature)}-byte signature, expected 64")
        return signature

    def certificate(self) -> bytes:
        """The SAM certificate (DF01/EF1C, 190 bytes), read once and cached."""
        if self._certificate is None:
            self.unlock()
            self._sam(commands.select_fid(self._certificate_fid))
            data = self._sam(commands.read_binary(0, CERTIFICATE_LENGTH))
            if len(data) != CERTIFICATE_LENGTH:
                raise SecurityModuleError(
                    f"SAM certificate EF{self._certificate_fid:04X}: {len(data)} bytes, not 190"
                )
            self._certificate = data
        return self._certificate

    def close(self) -> None:
        self._pin = None
        self._current = None
        log.debug("SAM %s released", self.name)
