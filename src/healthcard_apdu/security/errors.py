"""Errors of the security layer. Messages name roles, files and APDUs, never key material."""

from __future__ import annotations

from healthcard_apdu.apdu.errors import HealthCardError

__all__ = [
    "CertificateError",
    "KeyFileError",
    "SamCommandError",
    "SamPinError",
    "SecureMessagingFormatError",
    "SecurityModuleError",
    "UnknownKeyRole",
    "UnsupportedOperation",
]


class SecurityModuleError(HealthCardError):
    """Base of the security layer's errors."""


class UnsupportedOperation(SecurityModuleError):
    """The backend cannot do this (e.g. export a card key from a PSAM, SM4 in SoftHSM2)."""


class UnknownKeyRole(SecurityModuleError, KeyError):
    """The security module holds no master key for the requested role (or version)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class KeyFileError(SecurityModuleError):
    """An encrypted key file is unreadable, malformed, tampered with, or the passphrase is wrong."""


class SamPinError(SecurityModuleError):
    """The SAM PIN was refused; ``retries_left`` as reported by the SAM. Never retried."""

    def __init__(self, message: str, retries_left: int | None = None) -> None:
        super().__init__(message)
        self.retries_left = retries_left


class SecureMessagingFormatError(SecurityModuleError, ValueError):
    """A command cannot be protected (too long), or a protected command is malformed/wrong MAC."""


class CertificateError(SecurityModuleError, ValueError):
    """A SAM certificate (190-byte field) is malformed."""


class SamCommandError(SecurityModuleError):
    """The PSAM refused a command (status word in ``sw``; the typed CardError is the cause)."""

    def __init__(self, message: str, sw: int) -> None:
        super().__init__(message)
        self.sw = sw
