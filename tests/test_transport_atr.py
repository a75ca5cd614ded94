"""ATR parsing: protocols, historical bytes, TCK, checked against pyscard's independent parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthcard_apdu.transport.atr import AtrError, parse_atr


@st.composite
def atrs(draw: st.DrawFn) -> bytes:
    """Structurally valid ATRs: random interface-byte levels, protocols, historical bytes."""
    levels = draw(st.integers(1, 4))
    historical = draw(st.binary(max_size=15))
    # per level: presence of TA/TB/TC and (except on the last level) the TD protocol
    presence = [draw(st.integers(0, 7)) for _ in range(levels)]
    protocols = [draw(st.sampled_from([0, 1] if i == 0 else [0, 1, 15])) for i in range(levels - 1)]
    body = bytearray()
    y = presence[0] | (0x8 if levels > 1 else 0)
    t0 = (y << 4) | len(historical)
    for i in range(levels):
        for bit in (0x1, 0x2, 0x4):
            if presence[i] & bit:
                body.append(draw(st.integers(0, 255)))
        if i < levels - 1:
            next_y = presence[i + 1] | (0x8 if i + 1 < levels - 1 else 0)
            body.append((next_y << 4) | protocols[i])
    atr = bytearray((0x3B, t0)) + body + historical
    if any(p != 0 for p in protocols):
        check = 0
        for b in atr[1:]:
            check ^= b
        atr.append(check)  # valid TCK: XOR of T0..TCK is zero
    return bytes(atr)


@given(atrs())
def test_agrees_with_pyscard(raw: bytes) -> None:
    from smartcard.ATR import ATR

    reference = ATR(list(raw))
    info = parse_atr(raw)
    expected = {int(name[2:]) for name in reference.getSupportedProtocols()} - {15}
    assert set(info.protocols) == expected
    assert list(info.historical_bytes) == reference.getHistoricalBytes()
    assert info.tck == reference.TCK
    if info.tck is not None:
        assert info.tck_ok is True


def test_t1_only_atr_of_the_test_card() -> None:
    info = parse_atr(bytes.fromhex("3B800181"))
    assert info.protocols == (1,)
    assert info.preferred_protocol == 1
    assert info.tck == 0x81 and info.tck_ok
    assert info.interface == {"TD1": 0x01}


def test_minimal_t0_atr() -> None:
    info = parse_atr(bytes.fromhex("3B00"))
    assert info.protocols == (0,)
    assert info.preferred_protocol == 0
    assert info.tck is None and info.tck_ok is None


def test_t1_preferred_when_t0_is_offered_first() -> None:
    # TD1 = 80: T=0, TD2 follows; TD2 = 01: T=1. TCK = 80^80^01 = 01
    info = parse_atr(bytes.fromhex("3B80800101"))
    assert info.protocols == (0, 1)
    assert info.preferred_protocol == 1


def test_specific_mode_from_ta2_wins() -> None:
    # T0=80 (TD1 follows); TD1=90 (TA2 and TD2 follow, T=0); TA2=00 (specific mode, T=0);
    # TD2=01 (T=1); then TCK
    raw = bytearray.fromhex("3B80900001")
    check = 0
    for b in raw[1:]:
        check ^= b
    info = parse_atr(bytes(raw) + bytes((check,)))
    assert info.protocols == (0, 1)
    assert info.specific_protocol == 0
    assert info.preferred_protocol == 0


def test_bad_tck_is_reported_not_raised() -> None:
    info = parse_atr(bytes.fromhex("3B800182"))
    assert info.tck_ok is False


def test_extended_length_capability_from_historical_bytes() -> None:
    # category 80, compact-TLV 73 = card capabilities (3 bytes), third byte bit 7 (0x40) set
    with_ext = parse_atr(bytes.fromhex("3B0580730000 40".replace(" ", "")))
    without = parse_atr(bytes.fromhex("3B058073000000"))
    assert with_ext.extended_length
    assert not without.extended_length
    assert not parse_atr(bytes.fromhex("3B00")).extended_length


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "shorter than TS and T0"),
        ("3B", "shorter than TS and T0"),
        ("3C00", "TS byte 3C"),
        ("3B80", "ends before TD1"),
        ("3B8001", "no TCK"),
        ("3B03AABB", "announces 3 historical bytes"),
        ("3B00FF", "1 bytes after its end"),
    ],
)
def test_malformed_atrs_are_rejected(raw: str, message: str) -> None:
    with pytest.raises(AtrError, match=message):
        parse_atr(bytes.fromhex(raw))
