"""Command/response APDU encoding: round trips for every case and rejection of malformed lengths."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcard_apdu.apdu import ApduFormatError, CommandApdu, ResponseApdu
from healthcard_apdu.apdu import commands as c

byte = st.integers(0, 255)
short_data = st.binary(min_size=1, max_size=255)
short_le = st.integers(1, 256)


@st.composite
def commands(draw: st.DrawFn) -> CommandApdu:
    """Any valid command: cases 1-4, short or extended length."""
    extended = draw(st.booleans())
    max_data = 700 if extended else 255
    data = draw(st.one_of(st.just(b""), st.binary(min_size=1, max_size=max_data)))
    le = draw(st.one_of(st.none(), st.integers(1, 65536 if extended else 256)))
    return CommandApdu(draw(byte), draw(byte), draw(byte), draw(byte), data, le, extended)


def _header(cla: int = 0x00, ins: int = 0xB0) -> bytes:
    return bytes((cla, ins, 0x00, 0x00))


@given(commands())
def test_round_trip(cmd: CommandApdu) -> None:
    raw = cmd.to_bytes()
    parsed = CommandApdu.from_bytes(raw)
    assert parsed.to_bytes() == raw
    if cmd.case == 1:
        # No length field: a case-1 command built with extended=True encodes like a short one.
        assert (parsed.header, parsed.data, parsed.le) == (cmd.header, b"", None)
    else:
        assert parsed == cmd


@given(commands())
def test_encoded_length_matches_iso_7816_case(cmd: CommandApdu) -> None:
    raw = cmd.to_bytes()
    n = len(cmd.data)
    if cmd.extended:
        expected = 4 + (3 + n if n else 0) + ((2 if n else 3) if cmd.le is not None else 0)
    else:
        expected = 4 + (1 + n if n else 0) + (1 if cmd.le is not None else 0)
    assert len(raw) == expected
    assert cmd.case == (1 + (cmd.le is not None) + 2 * bool(n))


@given(st.binary(min_size=0, max_size=300))
def test_any_bytes_either_rejected_or_canonical(raw: bytes) -> None:
    """Every byte string is a well-formed APDU that re-encodes to itself, or is rejected."""
    try:
        cmd = CommandApdu.from_bytes(raw)
    except ApduFormatError:
        return
    assert cmd.to_bytes() == raw


@given(short_data, st.integers(1, 300))
def test_short_lc_not_matching_the_data_is_rejected(data: bytes, actual: int) -> None:
    """(Without data bytes the Lc byte is read as Le: a valid case 2, hence actual >= 1.)"""
    lc = len(data)
    if actual in (lc, lc + 1):  # exact data, or data plus one Le byte: well formed
        return
    body = (data * 2)[:actual] if actual <= 2 * lc else data + bytes(actual - lc)
    with pytest.raises(ApduFormatError, match=f"short Lc={lc}"):
        CommandApdu.from_bytes(_header() + bytes((lc,)) + body)


@given(st.integers(1, 600), st.integers(1, 700))
def test_extended_lc_not_matching_the_data_is_rejected(lc: int, actual: int) -> None:
    if actual in (lc, lc + 2):
        return
    raw = _header() + b"\x00" + lc.to_bytes(2, "big") + bytes(actual)
    with pytest.raises(ApduFormatError, match=f"extended Lc={lc}"):
        CommandApdu.from_bytes(raw)


@pytest.mark.parametrize("raw", ["", "00", "00A4", "00A400"])
def test_shorter_than_header_is_rejected(raw: str) -> None:
    with pytest.raises(ApduFormatError, match="shorter than its 4-byte header"):
        CommandApdu.from_bytes(bytes.fromhex(raw))


@pytest.mark.parametrize("raw", ["00B0000000 00", "00B0000000 0001 02 03"])
def test_truncated_extended_marker_or_zero_extended_lc_is_rejected(raw: str) -> None:
    with pytest.raises(ApduFormatError):
        CommandApdu.from_bytes(bytes.fromhex(raw.replace(" ", "")))


def test_extended_zero_lc_with_data_is_rejected() -> None:
    with pytest.raises(ApduFormatError, match="extended Lc of 0"):
        CommandApdu.from_bytes(_header() + b"\x00\x00\x00\x01\x02")


@settings(max_examples=50)
@given(
    st.sampled_from(["cla", "ins", "p1", "p2"]),
    st.one_of(st.integers(-5, -1), st.integers(256, 999)),
)
def test_header_fields_must_be_bytes(field: str, value: int) -> None:
    fields = {"cla": 0, "ins": 0xA4, "p1": 0, "p2": 0, field: value}
    with pytest.raises(ApduFormatError, match=field.upper()):
        CommandApdu(fields["cla"], fields["ins"], fields["p1"], fields["p2"])


@pytest.mark.parametrize("le", [0, -1, 65537])
def test_le_out_of_range_is_rejected(le: int) -> None:
    with pytest.raises(ApduFormatError, match="Le must be"):
        CommandApdu(0, 0xB0, 0, 0, le=le)


def test_data_longer_than_extended_lc_is_rejected() -> None:
    with pytest.raises(ApduFormatError, match="exceeds 65535"):
        CommandApdu(0, 0xD6, 0, 0, bytes(65536))


@pytest.mark.parametrize(("data", "le"), [(bytes(256), None), (b"", 257), (b"\x01", 300)])
def test_forced_short_length_that_needs_extended_is_rejected(data: bytes, le: int | None) -> None:
    with pytest.raises(ApduFormatError, match="need extended length"):
        CommandApdu(0, 0xD6, 0, 0, data, le, extended=False)


def test_extended_is_chosen_automatically_at_the_boundaries() -> None:
    assert not CommandApdu(0, 0xD6, 0, 0, bytes(255), 256).extended
    assert CommandApdu(0, 0xD6, 0, 0, bytes(256)).extended
    assert CommandApdu(0, 0xB0, 0, 0, le=257).extended


def test_le_256_and_65536_encode_as_zero() -> None:
    assert CommandApdu(0, 0xB0, 0, 0, le=256).to_bytes() == bytes.fromhex("00B0000000")
    assert CommandApdu(0, 0xB0, 0, 0, le=65536).to_bytes() == bytes.fromhex("00B00000000000")


def test_builders_encode_documented_bytes() -> None:
    assert c.select_fid(0x3F00).to_bytes() == bytes.fromhex("00A40000023F00")
    assert c.get_challenge().to_bytes() == bytes.fromhex("0084000008")
    assert c.read_binary(0x0102, 16).to_bytes() == bytes.fromhex("00B0010210")
    assert c.get_response(0).to_bytes() == bytes.fromhex("00C0000000")
    assert c.select_fid(0x3F00).name == "SELECT 3F00"


@given(st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_response_round_trip(data: bytes, sw: int) -> None:
    response = ResponseApdu(data, sw)
    raw = response.to_bytes()
    assert raw[-2:] == sw.to_bytes(2, "big")
    assert ResponseApdu.from_bytes(raw) == response


@pytest.mark.parametrize("raw", [b"", b"\x90"])
def test_response_without_status_word_is_rejected(raw: bytes) -> None:
    with pytest.raises(ApduFormatError, match="no status word"):
        ResponseApdu.from_bytes(raw)


@pytest.mark.parametrize("sw", [-1, 0x10000])
def test_response_status_word_must_be_two_bytes(sw: int) -> None:
    with pytest.raises(ApduFormatError):
        ResponseApdu(b"", sw)
