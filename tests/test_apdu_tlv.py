"""BER-TLV and FCI parsing: multi-byte tags and lengths, no FCI at all, malformed data."""

from __future__ import annotations

import pytest

from healthcard_apdu.apdu.tlv import TlvError, parse_ber_tlv, parse_fci


def test_traced_fcis() -> None:
    fci = parse_fci(bytes.fromhex("6F10840C57532E5359532E4444463031A500"))
    assert fci is not None and fci.template == 0x6F
    assert fci.df_name == b"WS.SYS.DDF01" and fci.proprietary == b""
    no_a5 = parse_fci(bytes.fromhex("6F0E840C57532E5359532E4444463031"))
    assert no_a5 is not None and no_a5.df_name == b"WS.SYS.DDF01" and no_a5.proprietary is None


def test_a_bare_9000_has_no_fci() -> None:
    assert parse_fci(b"") is None


def test_multi_byte_tags_and_lengths() -> None:
    name = bytes(range(16))
    body = b"\x84\x10" + name + b"\x5f\x2d\x02zh" + b"\x9f\x08\x01\x02" + b"\xa5\x81\x03abc"
    data = b"\x6f\x81" + bytes((len(body),)) + body
    fci = parse_fci(data)
    assert fci is not None
    assert fci.df_name == name and fci.get(0x5F2D) == b"zh" and fci.get(0x9F08) == b"\x02"
    assert fci.proprietary == b"abc"
    long = b"\x62\x82\x01\x04" + b"\x80\x82\x01\x00" + bytes(256)
    parsed = parse_fci(long)
    assert parsed is not None and parsed.template == 0x62 and len(parsed.get(0x80) or b"") == 256
    assert parse_ber_tlv(b"\x00\x01\x01\xaa\xff") == [(0x01, b"\xaa")]  # padding skipped


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("6F05840A41", "length 5"),
        ("6F028401", "length"),
        ("8402AABB", "6F/62/64"),
        ("6F00 6F00", "top-level"),
        ("6F011F", "cut off"),
        ("6F0184", "length missing"),
        ("6F03848501", "not supported"),
    ],
)
def test_malformed_fci(data: str, message: str) -> None:
    with pytest.raises(TlvError, match=message):
        parse_fci(bytes.fromhex(data.replace(" ", "")))
