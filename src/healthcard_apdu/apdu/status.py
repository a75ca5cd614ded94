"""Status words: ISO/IEC 7816-4 meanings plus the FMCOS 2.0 specifics
(docs/reference/cos-crypto.md §2.5)."""

from __future__ import annotations

from healthcard_apdu.apdu import errors as e

SUCCESS = 0x9000

# SW -> (meaning, exception type)
_TABLE: dict[int, tuple[str, type[e.CardError]]] = {
    0x6281: ("data may be corrupt", e.CardWarning),
    0x6283: ("selected file invalid / key checksum error", e.CardWarning),
    0x6400: ("state of non-volatile memory unchanged", e.CardError),
    0x6581: ("EEPROM write failed", e.MemoryFailure),
    0x6700: ("wrong length", e.WrongLength),
    0x6900: ("CLA does not match the line-protection requirement", e.SecureMessagingError),
    0x6901: ("invalid state", e.ConditionsNotSatisfied),
    0x6981: ("command incompatible with file structure", e.WrongParameters),
    0x6982: ("security status not satisfied", e.SecurityStatusNotSatisfied),
    0x6983: ("key or PIN blocked", e.AuthenticationBlocked),
    0x6984: ("referenced data invalidated", e.ConditionsNotSatisfied),
    0x6985: ("conditions of use not satisfied", e.ConditionsNotSatisfied),
    0x6986: ("command not allowed (no current EF)", e.ConditionsNotSatisfied),
    0x6987: ("secure messaging data objects missing", e.SecureMessagingError),
    0x6988: ("secure messaging data incorrect", e.SecureMessagingError),
    0x6A80: ("incorrect data field", e.WrongParameters),
    0x6A81: ("function not supported / card or application locked", e.NotSupported),
    0x6A82: ("file not found", e.NotFound),
    0x6A83: ("record not found", e.NotFound),
    0x6A84: ("not enough memory space", e.MemoryFailure),
    0x6A86: ("incorrect P1/P2", e.WrongParameters),
    0x6A88: ("key or referenced data not found", e.NotFound),
    0x6A89: ("file already exists", e.FileExists),
    0x6B00: ("offset outside the file", e.WrongParameters),
    0x6D00: ("instruction not supported", e.NotSupported),
    0x6E00: ("class not supported", e.NotSupported),
    0x6F00: ("no precise diagnosis / invalid data", e.WrongParameters),
    0x9302: ("MAC error", e.SecureMessagingError),
    0x9303: ("application permanently locked", e.ApplicationLocked),
    0x9401: ("insufficient balance", e.ConditionsNotSatisfied),
    0x9403: ("key not found", e.NotFound),
    0x9406: ("MAC not available", e.SecureMessagingError),
}

# Command-specific meanings: (INS, SW) -> (meaning, type)
_BY_INS: dict[tuple[int, int], tuple[str, type[e.CardError]]] = {
    (0xE0, 0x6A86): ("file already exists (FMCOS CREATE FILE)", e.FileExists),
    (0xE0, 0x6982): ("create right not satisfied", e.SecurityStatusNotSatisfied),
    (0x0E, 0x6982): ("erase right not satisfied", e.SecurityStatusNotSatisfied),
}


def describe(sw: int, ins: int | None = None) -> str:
    """Human meaning of a status word (optionally for a given instruction)."""
    return _classify(sw, ins)[0]


def _classify(sw: int, ins: int | None) -> tuple[str, type[e.CardError]]:
    if ins is not None and (ins, sw) in _BY_INS:
        return _BY_INS[(ins, sw)]
    if sw in _TABLE:
        return _TABLE[sw]
    sw1, sw2 = sw >> 8, sw & 0xFF
    if sw1 == 0x63 and sw2 & 0xF0 == 0xC0:
        return ("verification failed", e.AuthenticationFailed)
    if sw1 == 0x6C:
        return (f"wrong Le, card has {sw2 or 256} bytes", e.WrongLength)
    if sw1 == 0x61:
        return (f"{sw2 or 256} response bytes available", e.CardError)
    if sw1 in (0x62, 0x63):
        return ("warning", e.CardWarning)
    return ("unknown status", e.CardError)


def error_for(sw: int, command: str = "", ins: int | None = None) -> e.CardError:
    """The typed exception for a non-success status word."""
    meaning, kind = _classify(sw, ins)
    retries = sw & 0x0F if sw & 0xFFF0 == 0x63C0 else None
    if sw == 0x6983:
        retries = 0
    return kind(sw, command or "command", meaning, retries)


def is_success(sw: int) -> bool:
    return sw == SUCCESS
