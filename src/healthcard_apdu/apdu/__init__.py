"""APDU layer: immutable command/response types and status words mapped to typed exceptions."""

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import (
    ApduFormatError,
    ApplicationLocked,
    AuthenticationBlocked,
    AuthenticationFailed,
    CardError,
    CardWarning,
    ConditionsNotSatisfied,
    FileExists,
    HealthCardError,
    MemoryFailure,
    NotFound,
    NotSupported,
    SecureMessagingError,
    SecurityError,
    SecurityStatusNotSatisfied,
    WrongLength,
    WrongParameters,
)
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.apdu.status import SUCCESS, describe, error_for

__all__ = [
    "SUCCESS",
    "ApduFormatError",
    "ApplicationLocked",
    "AuthenticationBlocked",
    "AuthenticationFailed",
    "CardError",
    "CardWarning",
    "CommandApdu",
    "ConditionsNotSatisfied",
    "FileExists",
    "HealthCardError",
    "MemoryFailure",
    "NotFound",
    "NotSupported",
    "ResponseApdu",
    "SecureMessagingError",
    "SecurityError",
    "SecurityStatusNotSatisfied",
    "WrongLength",
    "WrongParameters",
    "describe",
    "error_for",
]
