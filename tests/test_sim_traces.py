"""Live-trace exchanges of docs/reference/healthcard-layout.md §1.1, §2.1, §3.5, §3.6 replayed on
the simulator."""

from __future__ import annotations

import pytest

from healthcard_apdu.crypto import xor_fold
from healthcard_apdu.sim import SimSam
from healthcard_apdu.sim.sam import sam_state_from_json
from sim_issuance import (
    CITY_FACTOR,
    TRACE_CARD_FACTOR,
    Channel,
    issued_card,
    sam_key_file,
)


@pytest.fixture
def card() -> Channel:
    c = issued_card()
    return Channel(c.process, TRACE_CARD_FACTOR)


@pytest.fixture
def sam() -> Channel:
    s = SimSam(sam_state_from_json(sam_key_file()))
    s.power_on()
    ch = Channel(s.process, TRACE_CARD_FACTOR)
    assert ch("00A4000002DF01")[1] == 0x6100 | len(s.state.df01_name) + 4
    assert ch("0020000003123456")[1] == 0x9000  # trace: SAM PIN verify
    return ch


@pytest.mark.parametrize(
    ("command", "fci"),
    [
        ("00A40000023F00", "6F14 8410 6A6D6A6B6B7979686A00000000000000 A500"),
        ("00A4000002DDF1", "6F10 840C 57532E5359532E4444463031 A500"),
        ("00A4000002DF01", "6F08 8406 915600013200"),
        ("00A4000002DF02", "6F08 8406 915600013201"),
        ("00A4000002DF03", "6F08 8406 915600013202"),
    ],
)
def test_select_answers_the_traced_fci(card: Channel, command: str, fci: str) -> None:
    if command[-4:] in ("DF01", "DF02", "DF03"):
        card.select_path("DDF1")
    assert card(command) == (bytes.fromhex(fci.replace(" ", "")), 0x9000)


def test_ef_select_answers_9000_without_data(card: Channel) -> None:
    card.select_path("DDF1")
    assert card("00A4000002EF05") == (b"", 0x9000)


def test_ddf1_ef05_read_by_tag_as_in_the_trace(card: Channel) -> None:
    card.select_path("DDF1")
    card.select_ef(0xEF05)
    assert card("00b2390005") == (bytes.fromhex("39 03 210000".replace(" ", "")), 0x9000)
    assert card("00b2010003") == (b"\x01\x011", 0x9000)
    assert card("00b2060006") == (bytes.fromhex("060420130401"), 0x9000)
    assert card("00b2020006")[0] == b"\x02\x04V1.1"


def test_xor_fold_of_the_traced_cryptogram() -> None:
    c = bytes.fromhex("6C37FF3CB7DA5458D84CE9E7475CD086")
    assert xor_fold(c) == bytes.fromhex("B47B16DBF08684DE")


def _sam_get(sam: Channel, command: str) -> bytes:
    data, sw = sam(command)
    assert sw >> 8 == 0x61 and not data
    data, sw = sam(f"00C00000{sw & 0xFF:02X}")
    assert sw == 0x9000
    return data


def test_rk1_df03_external_auth_flow_of_the_trace(card: Channel, sam: Channel) -> None:
    card.select_path("DDF1", "DF03")
    r = card("0084000008")[0]
    command = f"80DE473418 {TRACE_CARD_FACTOR.hex()} {CITY_FACTOR.hex()} {r.hex()}"
    assert sam(command) == (b"", 0x9000)
    assert sam("80FA000010 1122334455667788 0000000000000000") == (b"", 0x6110)
    c, sw = sam("00C0000010")
    assert sw == 0x9000 and len(c) == 16
    crypt = xor_fold(c)
    assert card(f"0082008411 {crypt.hex()} 1122334455667788 01") == (b"", 0x9000)
    card.select_ef(0xEE01)
    assert card("00B0000080")[1] == 0x9000


def test_uk1_ddf1_auth_then_sm_update_record_of_the_trace(card: Channel, sam: Channel) -> None:
    card.select_path("DDF1")
    r1 = card("0084000008")[0]
    assert sam(f"80DE272A10 {TRACE_CARD_FACTOR.hex()} {r1.hex()}")[1] == 0x9000
    c = _sam_get(sam, f"80FA000010 {r1.hex()} 0000000000000000")
    assert card(f"0082000511 {xor_fold(c).hex()} {r1.hex()} 01") == (b"", 0x9000)
    card.select_ef(0xEF08)
    r = card("0084000008")[0]
    setup = f"80DE280210 {TRACE_CARD_FACTOR.hex()} {r.hex()}"
    assert sam(setup)[1] == 0x9000  # STK_DDF1: P2 without version bits, as traced
    plain = "06 07042011FFFF 80" + "00" * 8  # LD | TLV 07 04 2011FFFF | pad to 16
    e = _sam_get(sam, "80FA000010 " + plain)
    assert len(e) == 16
    assert sam(setup)[1] == 0x9000  # the trace re-derives before the MAC
    mac_input = "04DC010414" + e.hex() + "80" + "00" * 10
    assert len(bytes.fromhex(mac_input)) == 32
    mac = _sam_get(sam, "80FA050030 " + "00" * 16 + mac_input)
    assert len(mac) == 4
    assert card(f"04DC010414 {e.hex()} {mac.hex()}") == (b"", 0x9000)
    card.select_path("DDF1")
    assert card.auth("RK1_DDF1") == 0x9000
    card.select_ef(0xEF08)
    assert card("00B2010400") == (bytes.fromhex("07042011FFFF"), 0x9000)


def test_outpatient_record_read_in_chunks_like_the_trace(card: Channel) -> None:
    card.select_path("DDF1", "DF03")
    assert card.auth("RK1_DF03") == 0x9000
    card.select_ef(0xED01)
    data, sw = card("00B00B8045")
    assert sw == 0x9000 and len(data) == 0x45
    total = b""
    for offset in range(0, 3267, 0x80):
        chunk, sw = card(f"00B0{offset:04X}{min(0x80, 3267 - offset):02X}")
        assert sw == 0x9000
        total += chunk
    assert len(total) == 3267


def test_internal_authentication_flow_of_libzhouyb(card: Channel, sam: Channel) -> None:
    rs = sam("0084000008")[0]
    assert sam(f"80DE472118 {TRACE_CARD_FACTOR.hex()} {CITY_FACTOR.hex()} {rs.hex()}")[1] == 0x9000
    a = "A1A2A3A4A5A6A7A8"
    c = _sam_get(sam, f"80FA000010 {a} 0000000000000000")
    card.select_path("DDF1")
    # docs/reference/healthcard-layout.md §3.7 sends P2=00; docs/cos.md §5 uses ref 04
    for p2 in ("04", "00"):
        data, sw = card(f"0088 00{p2} 11 {rs.hex()} {a} 01 00")
        assert (data, sw) == (xor_fold(c), 0x9000)
