"""The simulated PSAM: files, PIN, 80DE/80FA, GET RESPONSE, SM3 and SM2 record signing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from healthcard_apdu.crypto import (
    BlockCipher,
    diversify_levels,
    ecb_encrypt,
    key_check_value,
    mac_iso9797_alg1,
    sm2_decode_public,
    sm2_public_key,
    sm2_verify,
    sm2_verify_digest,
    sm2_za,
    sm3,
)
from healthcard_apdu.sim import ImageError, SimSam
from healthcard_apdu.sim.sam import sam_state_from_json
from sim_issuance import (
    SAM_SM2_PRIVATE,
    TRACE_CARD_FACTOR,
    Channel,
    apdu,
    issued_card,
    master_key,
    sam_key_file,
    write_sam_key_file,
)

SM4 = BlockCipher.SM4


def make_sam(**overrides: object) -> tuple[SimSam, Channel]:
    spec = sam_key_file()
    spec.update(overrides)
    sam = SimSam(sam_state_from_json(spec))
    sam.power_on()
    return sam, Channel(sam.process, TRACE_CARD_FACTOR)


def fetch(ch: Channel, command: str | bytes) -> bytes:
    """Send a command that answers 61xx and collect the data with GET RESPONSE."""
    data, sw = ch(command)
    assert sw >> 8 == 0x61, f"{sw:04X}"
    data, sw = ch(f"00C00000{sw & 0xFF:02X}")
    assert sw == 0x9000
    return data


def in_df01(ch: Channel, pin: bool = True) -> None:
    assert ch("00A4000002DF01")[1] >> 8 == 0x61
    if pin:
        assert ch("0020000003123456")[1] == 0x9000


def test_sam_atr_is_t0() -> None:
    sam, _ = make_sam()
    atr = sam.atr()
    assert atr[0] == 0x3B and atr[1] & 0xF0 == 0 and len(atr) == 2 + (atr[1] & 0x0F)


@pytest.mark.parametrize(
    ("path", "fid", "size"),
    [("MF", "0015", 14), ("MF", "0016", 6), ("DF01", "001A", 25), ("DF01", "001B", 180),
     ("DF01", "001C", 190)],
)
def test_sam_files_and_sizes(path: str, fid: str, size: int) -> None:
    _, ch = make_sam()
    if path == "DF01":
        in_df01(ch, pin=False)
    assert ch(f"00A4000002{fid}") == (b"", 0x9000)
    assert ch("00B0000000") == (b"", 0x6C00 | size)  # T=0: Le 00 is 256, wrong
    data, sw = ch(f"00B00000{size:02X}")
    assert sw == 0x9000 and len(data) == size
    assert ch("00D6000001AA")[1] == 0x6982


def test_sam_ef15_starts_with_the_serial_and_sfi_read_works() -> None:
    _, ch = make_sam()
    assert ch("00B095000A") == (bytes.fromhex("00000000000000000042"), 0x9000)


def test_sam_certificate_carries_the_sm2_public_key() -> None:
    _, ch = make_sam()
    in_df01(ch, pin=False)
    ch("00A4000002001C")
    cert = ch("00B00000BE")[0]
    public = sm2_decode_public(cert[11:76])
    assert public == sm2_public_key(SAM_SM2_PRIVATE)


def test_sam_pin_tries_and_block() -> None:
    _, ch = make_sam()
    assert ch("0020000003123456")[1] == 0x6A88  # PIN lives in DF01
    in_df01(ch, pin=False)
    assert [ch("0020000003654321")[1] for _ in range(2)] == [0x63C2, 0x63C1]
    assert ch("0020000003123456")[1] == 0x9000  # success restores the counter
    assert [ch("0020000003654321")[1] for _ in range(4)] == [0x63C2, 0x63C1, 0x63C0, 0x6983]
    assert ch("0020000003123456")[1] == 0x6983


def test_sam_change_pin() -> None:
    _, ch = make_sam()
    in_df01(ch, pin=False)
    assert ch("805E010007123456FF112233")[1] == 0x9000
    assert ch("0020000003123456")[1] == 0x63C2
    assert ch("0020000003112233")[1] == 0x9000


def test_diversify_and_encrypt_match_the_master_key() -> None:
    _, ch = make_sam()
    in_df01(ch)
    r = bytes.fromhex("30CB83A6ADABFE3F")
    city = b"21000000"
    assert ch(apdu(0x80, 0xDE, 0x47, 0x34, TRACE_CARD_FACTOR + city + r))[1] == 0x9000
    block = bytes.fromhex("1122334455667788") + bytes(8)
    session = diversify_levels(SM4, master_key("RK1_DF03"), [TRACE_CARD_FACTOR, city, r])
    assert fetch(ch, apdu(0x80, 0xFA, 0x00, 0x00, block)) == ecb_encrypt(SM4, session, block)
    iv, body = bytes(16), bytes(range(32))
    mac = fetch(ch, apdu(0x80, 0xFA, 0x05, 0x00, iv + body))
    assert mac == mac_iso9797_alg1(SM4, session, body, iv, pad=False)[:4]


def test_diversify_errors() -> None:
    _, ch = make_sam()
    assert ch(apdu(0x80, 0xDE, 0x27, 0x2A, bytes(16)))[1] == 0x6985  # not in DF01
    in_df01(ch)
    assert ch(apdu(0x80, 0xDE, 0x27, 0x7F, bytes(16)))[1] == 0x6A88
    assert ch(apdu(0x80, 0xDE, 0x47, 0x2A, bytes(24)))[1] == 0x6A86  # usage of 2A is 27
    assert ch(apdu(0x80, 0xDE, 0x27, 0x2A, bytes(24)))[1] == 0x6700  # 27: card + session
    assert ch(apdu(0x80, 0xDE, 0x27, 0x2A, bytes(12)))[1] == 0x6700
    assert ch(apdu(0x80, 0xFA, 0x00, 0x00, bytes(16)))[1] == 0x6985  # no session key
    assert ch(apdu(0x80, 0xDE, 0x27, 0x2A, bytes(16)))[1] == 0x9000
    assert ch(apdu(0x80, 0xFA, 0x00, 0x00, bytes(15)))[1] == 0x6700
    assert ch(apdu(0x80, 0xFA, 0x05, 0x00, bytes(16)))[1] == 0x6700
    assert ch(apdu(0x80, 0xFA, 0x03, 0x00, bytes(16)))[1] == 0x6A86


def test_get_response_in_pieces() -> None:
    _, ch = make_sam()
    in_df01(ch)
    ch(apdu(0x80, 0xDE, 0x27, 0x2A, bytes(16)))
    assert ch(apdu(0x80, 0xFA, 0x00, 0x00, bytes(32)))[1] == 0x6120
    first, sw = ch("00C0000010")
    assert sw == 0x6110 and len(first) == 16
    assert ch("00C0000020")[1] == 0x6C10
    second, sw = ch("00C0000010")
    assert sw == 0x9000 and len(second) == 16
    assert first + second != bytes(32)


def test_sm3_in_chained_blocks() -> None:
    _, ch = make_sam()
    in_df01(ch)
    message = bytes(range(256)) * 2
    *chunks, last = [message[i : i + 200] for i in range(0, len(message), 200)]
    for chunk in chunks:
        assert ch(apdu(0x80, 0xF4, 0x00, 0x00, chunk))[1] == 0x9000
    assert fetch(ch, apdu(0x80, 0xF4, 0x01, 0x00, last)) == sm3(message)


def test_sm3_with_za_prefix_gives_a_standard_sm2_signature() -> None:
    _, ch = make_sam()
    in_df01(ch)
    message = b"inpatient record"
    e = fetch(ch, apdu(0x80, 0xF4, 0x01, 0x01, message))
    public = sm2_public_key(SAM_SM2_PRIVATE)
    assert e == sm3(sm2_za(public) + message)
    signature = fetch(ch, apdu(0x80, 0xF8, 0x00, 0x00, e))
    assert sm2_verify(public, message, signature)


def test_sm2_sign_needs_the_pin_and_a_32_byte_digest() -> None:
    _, ch = make_sam()
    in_df01(ch, pin=False)
    assert ch(apdu(0x80, 0xF8, 0x00, 0x00, bytes(32)))[1] == 0x6982
    assert ch("0020000003123456")[1] == 0x9000
    assert ch(apdu(0x80, 0xF8, 0x00, 0x00, bytes(20)))[1] == 0x6700
    _, without_key = make_sam(sm2_private_key=None)
    in_df01(without_key)
    assert without_key(apdu(0x80, 0xF8, 0x00, 0x00, bytes(32)))[1] == 0x6A88


def test_df03_record_signing_end_to_end() -> None:
    """SM3 + SM2 in the SAM, signature and SAM certificate stored in EE01
    (docs/reference/healthcard-layout.md §3.9)."""
    _, sam = make_sam()
    in_df01(sam)
    record = bytes((i * 7) & 0xFF for i in range(1639))
    for i in range(0, 1639 - 1639 % 0xF0, 0xF0):
        assert sam(apdu(0x80, 0xF4, 0x00, 0x00, record[i : i + 0xF0]))[1] == 0x9000
    e = fetch(sam, apdu(0x80, 0xF4, 0x01, 0x00, record[1639 - 1639 % 0xF0 :]))
    signature = fetch(sam, apdu(0x80, 0xF8, 0x00, 0x00, e))
    sam("00A4000002001C")
    cert = sam("00B00000BE")[0]
    card = issued_card()
    ch = Channel(card.process, TRACE_CARD_FACTOR)
    ch.select_path("DDF1", "DF03")
    assert ch.auth("UK1_DF03") == 0x9000
    ch.select_ef(0xEE01)
    content = record + signature + cert
    assert len(content) == 1893
    for offset in range(0, 1893, 0x80):
        assert ch(apdu(0x00, 0xD6, offset >> 8, offset & 0xFF,
                       content[offset : offset + 0x80]))[1] == 0x9000
    assert ch.auth("RK1_DF03") == 0x9000
    ch.select_ef(0xEE01)
    stored = b"".join(ch(f"00B0{o:04X}{min(0x80, 1893 - o):02X}")[0] for o in range(0, 1893, 0x80))
    public = sm2_decode_public(stored[1703 + 11 : 1703 + 76])
    assert sm2_verify_digest(public, sm3(stored[:1639]), stored[1639:1703])


def test_key_file_errors(tmp_path: Path) -> None:
    good = sam_key_file()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"format": "other"}, "not a"),
        ({"serial": "0011"}, "serial"),
        ({"pin": "12a4"}, "PIN"),
        ({"keys": [{"index": "2A", "key": "00"}]}, "key of 1 bytes"),
        ({"keys": [{"index": "2A", "key": "00" * 16}, {"index": "2A", "key": "00" * 16}]},
         "twice"),
        ({"files": {"EF15": "00"}}, "must be 14"),
        ({"algorithm": "AES"}, "unknown algorithm"),
        ({"keys": [{"index": "2A", "key": "00" * 16, "kcv": "000000"}]}, "check value"),
        ({"serial": "not hex"}, "malformed"),
        ({"pin_tries": "three"}, "malformed"),
        ({"files": {"EF15": "zz"}}, "malformed"),
        ({"keys": 5}, "malformed"),
        ({"keys": [{"index": "2A", "key": "00" * 16, "usage": "zz"}]}, "malformed"),
        ({"sm2_private_key": "3945208F7B2144B1X"}, "sm2_private_key is not hex"),
    ]
    for change, message in cases:
        spec = {**good, **change}
        with pytest.raises(ImageError, match=message) as caught:
            sam_state_from_json(spec)
        assert "3945208F7B2144B1" not in str(caught.value)  # never echo a private key
    kcv = key_check_value(BlockCipher.SM4, bytes(16)).hex()
    sam_state_from_json({**good, "keys": [{"index": "2A", "key": "00" * 16, "kcv": kcv}]})
    path = write_sam_key_file(tmp_path / "sam.json")
    sam = SimSam.from_key_file(path)
    assert len(sam.state.keys) == len(good["keys"])
    text = repr(sam.state)
    assert master_key("UK1_DDF1").hex().upper() not in text.upper()
    assert "pin=" not in text and "sm2_private" not in text
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ImageError, match="not JSON"):
        SimSam.from_key_file(tmp_path / "bad.json")
    assert json.loads(path.read_text())["pin"] == "123456"
