"""Status words mapped to typed exceptions carrying the SW, the command name and retries left."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu.apdu import (
    AuthenticationBlocked,
    AuthenticationFailed,
    CardError,
    CardWarning,
    ConditionsNotSatisfied,
    FileExists,
    MemoryFailure,
    NotFound,
    NotSupported,
    ResponseApdu,
    SecureMessagingError,
    SecurityError,
    SecurityStatusNotSatisfied,
    WrongLength,
    WrongParameters,
    describe,
    error_for,
)


@given(st.integers(0, 0xF))
def test_63cx_is_authentication_failed_with_retries_left(retries: int) -> None:
    sw = 0x63C0 | retries
    with pytest.raises(AuthenticationFailed) as info:
        ResponseApdu(b"", sw).check("VERIFY", 0x20)
    assert info.value.retries_left == retries
    assert info.value.sw == sw
    assert info.value.command == "VERIFY"
    assert f"{retries} tries left" in str(info.value)


def test_63c2_example() -> None:
    error = error_for(0x63C2, "EXTERNAL AUTHENTICATE 00", 0x82)
    assert isinstance(error, AuthenticationFailed)
    assert isinstance(error, SecurityError)
    assert error.retries_left == 2
    assert str(error).startswith("EXTERNAL AUTHENTICATE 00: SW 63C2")


def test_6983_is_blocked_with_no_retries_left() -> None:
    error = error_for(0x6983, "VERIFY", 0x20)
    assert isinstance(error, AuthenticationBlocked)
    assert error.retries_left == 0


def test_6a86_depends_on_the_instruction() -> None:
    assert isinstance(error_for(0x6A86, "CREATE FILE 0015", 0xE0), FileExists)
    on_select = error_for(0x6A86, "SELECT 3F00", 0xA4)
    assert isinstance(on_select, WrongParameters)
    assert not isinstance(on_select, FileExists)
    assert "exists" in describe(0x6A86, 0xE0)
    assert "exists" not in describe(0x6A86, 0xA4)


@pytest.mark.parametrize(
    ("sw", "kind"),
    [
        (0x6581, MemoryFailure),
        (0x6A84, MemoryFailure),
        (0x6700, WrongLength),
        (0x6900, SecureMessagingError),
        (0x6982, SecurityStatusNotSatisfied),
        (0x6985, ConditionsNotSatisfied),
        (0x6987, SecureMessagingError),
        (0x6988, SecureMessagingError),
        (0x6A82, NotFound),
        (0x6A83, NotFound),
        (0x6A88, NotFound),
        (0x6A89, FileExists),
        (0x6B00, WrongParameters),
        (0x6D00, NotSupported),
        (0x6E00, NotSupported),
        (0x9302, SecureMessagingError),
        (0x9403, NotFound),
        (0x6281, CardWarning),
    ],
)
def test_fmcos_table(sw: int, kind: type[CardError]) -> None:
    error = error_for(sw, "SOME COMMAND")
    assert type(error) is kind
    assert error.retries_left is None


@given(st.integers(0x6C00, 0x6CFF))
def test_6cxx_is_wrong_length_with_the_correct_le(sw: int) -> None:
    error = error_for(sw, "READ BINARY", 0xB0)
    assert isinstance(error, WrongLength)
    assert error.correct_le == ((sw & 0xFF) or 256)


def test_6700_has_no_correct_le() -> None:
    error = error_for(0x6700, "READ BINARY")
    assert isinstance(error, WrongLength)
    assert error.correct_le is None


@given(st.integers(0, 0xFFFF).filter(lambda sw: sw != 0x9000), st.text(min_size=1, max_size=30))
def test_every_non_success_sw_raises_naming_sw_and_command(sw: int, name: str) -> None:
    with pytest.raises(CardError) as info:
        ResponseApdu(b"\x01\x02", sw).check(name)
    assert info.value.sw == sw
    assert info.value.command == name
    assert str(info.value).startswith(f"{name}: SW {sw:04X} ")


def test_success_returns_the_response() -> None:
    response = ResponseApdu(b"\xaa", 0x9000)
    assert response.check("READ BINARY") is response
    assert response.ok


def test_error_without_command_name_says_command() -> None:
    assert str(error_for(0x6A82)).startswith("command: SW 6A82")
