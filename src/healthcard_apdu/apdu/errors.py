"""Errors of the APDU layer: malformed bytes, and card status words as typed exceptions."""

from __future__ import annotations


class HealthCardError(Exception):
    """Base of every error this library raises."""


class ApduFormatError(HealthCardError, ValueError):
    """Bytes that are not a well-formed command or response APDU."""


class CardError(HealthCardError):
    """The card answered a command with a status word other than success."""

    def __init__(
        self, sw: int, command: str, meaning: str, retries_left: int | None = None
    ) -> None:
        self.sw = sw
        self.command = command
        self.meaning = meaning
        self.retries_left = retries_left
        text = f"{command}: SW {sw:04X} {meaning}"
        if retries_left is not None:
            text += f" ({retries_left} tries left)"
        super().__init__(text)


class WrongLength(CardError):
    """6700 / 6Cxx: Lc or Le is wrong; ``correct_le`` is set for 6Cxx."""

    @property
    def correct_le(self) -> int | None:
        return (self.sw & 0xFF or 256) if self.sw >> 8 == 0x6C else None


class SecurityError(CardError):
    """Access refused for security reasons."""


class SecurityStatusNotSatisfied(SecurityError):
    """6982: the DF security state does not meet the access right."""


class AuthenticationFailed(SecurityError):
    """63Cx: a key or PIN check failed; ``retries_left`` tells how many tries remain."""


class AuthenticationBlocked(SecurityError):
    """6983: the key or PIN is blocked."""


class SecureMessagingError(SecurityError):
    """6900 / 6987 / 6988 / 9302 / 9406: the command's protection is missing or wrong."""


class ConditionsNotSatisfied(CardError):
    """6985 / 6901: conditions of use not satisfied (no challenge, wrong state ...)."""


class NotFound(CardError):
    """6A82 / 6A83 / 6A88 / 9403: file, record or key not found."""


class FileExists(CardError):
    """6A86 on CREATE FILE (FMCOS) or 6A89: the file already exists."""


class WrongParameters(CardError):
    """6A80 / 6A86 / 6B00 / 6F00 and other parameter or data errors."""


class NotSupported(CardError):
    """6A81 / 6D00 / 6E00: function, instruction or class not supported."""


class MemoryFailure(CardError):
    """6581 / 6A84: EEPROM write failure or no space."""


class ApplicationLocked(CardError):
    """9303 / 6A81 after a block: the application or card is locked."""


class CardWarning(CardError):
    """62xx / 63xx (other than 63Cx): a warning the caller asked to treat as an error."""
