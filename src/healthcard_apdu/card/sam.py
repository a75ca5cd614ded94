"""``Sam``: the SAM/PSAM functions of the national interface over a channel.

The crypto services (80DE/80FA, SM3, SM2, the certificate) are those of
:class:`~healthcard_apdu.security.psam.PsamSecurityModule`, which this object owns and exposes
as :attr:`Sam.security` (pass it to :class:`HealthCard`). The MF files EF0015/EF0016 are read
when the object is created, before the module selects DF01: selecting the MF later would reset
the SAM's PIN state under the module. PINs are verified once and never retried.
"""

from __future__ import annotations

import logging
from types import TracebackType

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import (
    AuthenticationBlocked,
    AuthenticationFailed,
    CardError,
    HealthCardError,
)
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.model import SAM_FILES, SamAppInfo, SamPublicInfo, SamTerminalInfo
from healthcard_apdu.security.errors import SamCommandError, SamPinError
from healthcard_apdu.security.psam import PsamSecurityModule, pin_to_bcd
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.channel import Channel

__all__ = ["Sam"]

log = logging.getLogger(__name__)

_MF = 0x3F00
_SIZES = {f.fid: f.size for f in SAM_FILES}
_PUBLIC, _TERMINAL, _APP, _ISSUER_CERT = 0x0015, 0x0016, 0x001A, 0x001B


class Sam:
    """A PSAM (real, or simulated) for the national SAM functions.

    ``pin`` (optional) is verified by the security module before its first service command,
    at the MF by default (``pin_at="df01"``: in DF01); :meth:`verify_pin` verifies one
    explicitly (the national ``iVerifyPIN`` / ``VerifyPin``).
    """

    def __init__(
        self,
        channel: Channel | Transport,
        *,
        pin: str | None = None,
        algorithm: BlockCipher = BlockCipher.SM4,
        name: str = "psam",
        pin_at: str = "mf",
    ) -> None:
        if isinstance(channel, Transport):
            channel = Channel(channel)
        self.channel = channel
        self.name = name
        self._mf_files: dict[int, bytes | HealthCardError] = {}
        for fid in (_PUBLIC, _TERMINAL):
            try:
                if not self._mf_files:
                    self._call(commands.select_fid(_MF), "SELECT MF")
                self._mf_files[fid] = self._read(fid)
            except HealthCardError as exc:
                self._mf_files[fid] = exc
        self.security = PsamSecurityModule(channel, pin=pin, algorithm=algorithm, name=name,
                                           pin_at=pin_at)

    def __repr__(self) -> str:
        return f"Sam({self.channel.transport.name})"

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, command: CommandApdu, label: str, *, secret: bool = False) -> bytes:
        try:
            return self.channel.call(command, secret=secret).data
        except CardError as exc:
            raise SamCommandError(f"SAM {self.name}: {label}: {exc}", exc.sw) from exc

    def _read(self, fid: int) -> bytes:
        size = _SIZES[fid]
        self._call(commands.select_fid(fid), f"SELECT EF{fid:04X}")
        data = self._call(commands.read_binary(0, size), f"READ BINARY EF{fid:04X}")
        if len(data) != size:
            raise SamCommandError(
                f"SAM {self.name}: EF{fid:04X} gave {len(data)} bytes, expected {size}", 0x9000
            )
        return data

    def _mf_file(self, fid: int) -> bytes:
        value = self._mf_files[fid]
        if isinstance(value, HealthCardError):
            raise value
        return value

    def _df01_file(self, fid: int) -> bytes:
        self.security.unlock()
        return self._read(fid)

    # -- PIN --------------------------------------------------------------------------------

    def verify_pin(self, pin: str) -> int | None:
        """VERIFY ``00 20 00 00`` in DF01; returns the tries left the SAM reports afterwards
        (``None`` when it does not say). A refusal raises :class:`SamPinError` with the tries
        left; the PIN is not retried."""
        bcd = pin_to_bcd(pin)
        self.security.unlock()
        try:
            self.channel.call(commands.verify_pin(0x00, bcd), secret=True)
        except AuthenticationBlocked:
            raise SamPinError(f"SAM {self.name}: PIN is blocked", 0) from None
        except AuthenticationFailed as exc:
            raise SamPinError(
                f"SAM {self.name}: PIN refused, {exc.retries_left} tries left (not retried)",
                exc.retries_left,
            ) from None
        except CardError as exc:
            raise SamCommandError(f"SAM {self.name}: VERIFY: {exc}", exc.sw) from exc
        log.debug("SAM %s PIN verified", self.name)
        return self.tries_left()

    def tries_left(self) -> int | None:
        """PIN tries left: an empty VERIFY, answered ``63Cx`` by the SAM (ISO 7816-4)."""
        self.security.unlock()
        response = self.channel.send(commands.verify_pin(0x00, b""))
        if response.sw & 0xFFF0 == 0x63C0:
            return response.sw & 0x0F
        if response.sw == 0x6983:
            return 0
        return None

    def change_pin(self, old_pin: str, new_pin: str) -> None:
        """``80 5E 01 00 old FF new`` (BCD); a wrong old PIN raises :class:`SamPinError`."""
        old, new = pin_to_bcd(old_pin), pin_to_bcd(new_pin)
        self.security.unlock()
        try:
            self.channel.call(commands.change_pin(0x00, old, new), secret=True)
        except AuthenticationBlocked:
            raise SamPinError(f"SAM {self.name}: PIN is blocked", 0) from None
        except AuthenticationFailed as exc:
            raise SamPinError(
                f"SAM {self.name}: old PIN refused, {exc.retries_left} tries left (not retried)",
                exc.retries_left,
            ) from None
        except CardError as exc:
            raise SamCommandError(f"SAM {self.name}: CHANGE PIN: {exc}", exc.sw) from exc

    # -- files ------------------------------------------------------------------------------

    def read_public_info(self) -> SamPublicInfo:
        """MF/EF0015 (14 bytes; read when the object was created)."""
        return SamPublicInfo.from_bytes(self._mf_file(_PUBLIC))

    def read_terminal_info(self) -> SamTerminalInfo:
        """MF/EF0016: the terminal number (read when the object was created)."""
        return SamTerminalInfo.from_bytes(self._mf_file(_TERMINAL))

    def read_app_info(self) -> SamAppInfo:
        """DF01/EF001A (25 bytes)."""
        return SamAppInfo.from_bytes(self._df01_file(_APP))

    def read_issuer_certificate(self) -> bytes:
        """DF01/EF001B: the health-card issuer certificate (180 bytes)."""
        return self._df01_file(_ISSUER_CERT)

    def read_certificate(self) -> bytes:
        """DF01/EF001C: the SAM certificate (190 bytes), copied into items 212/384 on signing."""
        return self.security.certificate()

    # -- algorithm services -----------------------------------------------------------------

    def sm3_digest(self, data: bytes) -> bytes:
        """SM3 of ``data`` computed in the SAM (32 bytes)."""
        return self.security.sm3(bytes(data))

    def sm2_sign_hash(self, digest: bytes) -> bytes:
        """SM2 signature r || s (64 bytes) of a 32-byte digest; needs the verified PIN."""
        return self.security.sign_digest(bytes(digest))

    # -- life cycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the security module (the channel belongs to the caller)."""
        self.security.close()

    def __enter__(self) -> Sam:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
