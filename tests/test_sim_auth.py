"""Keys on the simulated user card: WRITE KEY, authentication, try counters, PIN, blocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from healthcard_apdu.crypto import BlockCipher, challenge_iv, diversify, ecb_encrypt, xor_fold
from healthcard_apdu.sim import SimCard
from sim_issuance import (
    RK_PLAIN,
    TRACE_CARD_FACTOR,
    Channel,
    apdu,
    card_key,
    create_keyfile,
    ext_auth,
    issued_card,
    session_mac_apdu,
    sm_wrap,
    write_key_plain,
)

DES = BlockCipher.TDES


def queued(*values: str) -> Callable[[int], bytes]:
    """An rng that returns the given challenges, in order."""
    queue: Iterator[bytes] = iter(bytes.fromhex(v) for v in values)

    def rng(n: int) -> bytes:
        value = next(queue)
        assert len(value) == n
        return value

    return rng


def fmcos_card(*challenges: str) -> Channel:
    card = SimCard.blank(bytes(8), rng=queued(*challenges))
    card.power_on()
    ch = Channel(card.process, bytes(8))
    assert ch(create_keyfile(0x100, 0x00, 0xF0))[1] == 0x9000
    return ch


def issued() -> Channel:
    card = issued_card()
    return Channel(card.process, TRACE_CARD_FACTOR)


# --- FMCOS known answers -------------------------------------------------------------------


def test_fmcos_external_authenticate_manual_example() -> None:
    ch = fmcos_card("BB83BFF3")
    ch(write_key_plain(0x01, 0x39, 0xF0, 0xF0, 0x01, 0x33, bytes.fromhex("0102030405060708")))
    assert ch("0084000004")[0] == bytes.fromhex("BB83BFF3")
    assert ch("00820001 08 74B0047DD681D96C") == (b"", 0x9000)


def test_fmcos_write_key_ciphertext_and_mac_blog_example_after_issuance() -> None:
    ch = fmcos_card("4C45BAB9", "4C45BAB9", "01020304")
    ch(write_key_plain(0x00, 0x39, 0xF0, 0xF0, 0xAA, 0x33, b"\xff" * 8))
    assert ch("80E8000000")[1] == 0x9000
    ch("0084000004")
    wrong = "84D4010214 7C87BC23140021B3AFEA67E6359DDCFE D7C943F7"
    assert ch(wrong)[1] == 0x9302
    ch("0084000004")
    assert ch("84D4010214 7C87BC23140021B3AFEA67E6359DDCFE D7C943F6") == (b"", 0x9000)
    # The new key (type F9, KID 02, DES 1122334455667788) authenticates, FMCOS form.
    chal = ch("0084000004")[0]
    crypt = ecb_encrypt(DES, bytes.fromhex("1122334455667788"), challenge_iv(chal, 8))
    assert ch(apdu(0x00, 0x82, 0x00, 0x02, crypt))[1] == 0x9000


def test_write_key_ciphertext_needs_a_fresh_challenge() -> None:
    ch = fmcos_card("4C45BAB9")
    ch(write_key_plain(0x00, 0x39, 0xF0, 0xF0, 0xAA, 0x33, b"\xff" * 8))
    ch("0084000004")
    ch("00A40000023F00")  # any command in between consumes the challenge
    assert ch("84D4010214 7C87BC23140021B3AFEA67E6359DDCFE D7C943F6")[1] == 0x6985


@pytest.mark.parametrize(
    ("key_type", "p1", "data", "expected"),
    [
        (0x30, 0x00, "0102030405060708", "178F59F8578E0D3F"),
        (0x31, 0x01, "178F59F8578E0D3F", "0102030405060708"),
        (0x32, 0x02, "0102030405060708", "A82A8CEB"),
    ],
)
def test_fmcos_internal_authenticate_manual_examples(
    key_type: int, p1: int, data: str, expected: str
) -> None:
    ch = fmcos_card()
    key = bytes.fromhex("1122334455667788")
    ch(write_key_plain(0x01, key_type, 0xF0, 0xF0, 0x01, 0x01, key))
    assert ch(f"0088{p1:02X}01 08 {data} 00") == (bytes.fromhex(expected), 0x9000)


# --- WRITE KEY rules -----------------------------------------------------------------------


def test_write_key_add_modify_and_errors() -> None:
    ch = fmcos_card()
    assert ch(apdu(0x80, 0xD4, 0x01, 0x01, b"\x39\xf0"))[1] == 0x6700
    assert ch(write_key_plain(0x01, 0x39, 0xF0, 0xF0, 0x01, 0x33, bytes(10)))[1] == 0x6700
    assert ch(write_key_plain(0x01, 0x39, 0xF0, 0xEF, 0x01, 0x33, bytes(16)))[1] == 0x9000
    # modify: P1 = current type; change right EF = never
    modify = apdu(0x80, 0xD4, 0x39, 0x01, bytes((0x39, 0xF0, 0xF0, 0x01, 0x33)) + bytes(16))
    assert ch(modify)[1] == 0x6982
    assert ch(apdu(0x80, 0xD4, 0x36, 0x01, bytes((0x36, 0xF0, 0xF0, 0xFF, 0x33)) + bytes(16)))[
        1] == 0x6A88
    assert ch(write_key_plain(0x01, 0x3A, 0xF0, 0xEF, 0x01, 0x33, bytes.fromhex("123456")))[
        1] == 0x9000  # another type may share the KID
    ch("00A40000023F00")
    no_keyfile = SimCard.blank(bytes(8))
    no_keyfile.power_on()
    assert Channel(no_keyfile.process, bytes(8))(
        write_key_plain(0x01, 0x39, 0xF0, 0xF0, 0x01, 0x33, bytes(16)))[1] == 0x6A82


def test_key_file_space_is_enforced() -> None:
    card = SimCard.blank(bytes(8))
    card.power_on()
    ch = Channel(card.process, bytes(8))
    ch(create_keyfile(0x30, 0x00, 0xF0))  # 48 bytes: two 16-byte keys (22 bytes each)
    assert ch(write_key_plain(0x01, 0x39, 0xF0, 0xF0, 0x01, 0x33, bytes(16)))[1] == 0x9000
    assert ch(write_key_plain(0x02, 0x39, 0xF0, 0xF0, 0x01, 0x33, bytes(16)))[1] == 0x9000
    assert ch(write_key_plain(0x03, 0x39, 0xF0, 0xF0, 0x01, 0x33, bytes(16)))[1] == 0x6A84


def test_plaintext_modify_of_a_protected_key_is_refused() -> None:
    ch = fmcos_card()
    assert ch(write_key_plain(0x01, 0xF9, 0xF0, 0xF0, 0x01, 0x33, bytes(16)))[1] == 0x9000
    modify = apdu(0x80, 0xD4, 0xF9, 0x01, bytes((0xF9, 0xF0, 0xF0, 0x01, 0x33)) + bytes(16))
    assert ch(modify)[1] == 0x6982


# --- health-card external authentication and try counters ---------------------------------


def test_health_form_external_auth_sets_the_follow_up_state() -> None:
    ch = issued()
    ch.select_path("DDF1")
    ch.select_ef(0xEF06)
    assert ch("00B2010400")[1] == 0x6982
    assert ch.auth("RK1_DDF1") == 0x9000
    assert ch("00B2010400")[1] == 0x9000


def test_try_counter_counts_down_blocks_and_stays_blocked() -> None:
    ch = issued()
    ch.select_path("DDF1")
    seen = []
    for _ in range(15):
        ch.challenge()
        seen.append(ch("0082000411 0000000000000000 1122334455667788 01")[1])
    assert seen == [0x63C0 | n for n in range(14, -1, -1)]
    assert ch.auth("RK1_DDF1") == 0x6983  # the right cryptogram no longer helps
    ch.select_path("MF", "DDF1")
    assert ch.auth("RK1_DDF1") == 0x6983


def test_success_restores_the_try_counter() -> None:
    ch = issued()
    ch.select_path("DDF1")
    for expected in (0x63CE, 0x63CD):
        ch.challenge()
        assert ch("0082000511 0000000000000000 1122334455667788 01")[1] == expected
    assert ch.auth("UK1_DDF1") == 0x9000
    ch.challenge()
    assert ch("0082000511 0000000000000000 1122334455667788 01")[1] == 0x63CE


def test_wrong_card_factor_fails_like_in_the_trace() -> None:
    ch = issued()
    ch.select_path("DDF1", "DF03")
    wrong_factor = bytes.fromhex("0010151312546817")
    for expected in (0x63CE, 0x63CD):
        chal = ch.challenge()
        assert ch(ext_auth("RK1_DF03", wrong_factor, chal))[1] == expected
    assert ch.auth("RK1_DF03") == 0x9000


def test_challenge_is_valid_for_the_next_command_only() -> None:
    ch = issued()
    ch.select_path("DDF1")
    chal = ch.challenge()
    ch("00A4000002EF05")
    assert ch(ext_auth("RK1_DDF1", TRACE_CARD_FACTOR, chal))[1] == 0x6985
    chal = ch.challenge()
    assert ch(ext_auth("RK1_DDF1", TRACE_CARD_FACTOR, chal))[1] == 0x9000
    assert ch(ext_auth("RK1_DDF1", TRACE_CARD_FACTOR, chal))[1] == 0x6985  # used up
    ch.challenge()
    assert ch("0082000511 0000000000000000 1122334455667788 01")[1] == 0x63CE


def test_a_malformed_apdu_also_uses_up_the_challenge() -> None:
    ch = issued()
    ch.select_path("DDF1")
    chal = ch.challenge()
    assert ch.raw("00A4000005AABB")[1] == 0x6700  # Lc disagrees with the length
    assert ch(ext_auth("RK1_DDF1", TRACE_CARD_FACTOR, chal))[1] == 0x6985


def test_extended_length_protected_commands_are_refused_not_crashed() -> None:
    """Lc' of the MAC input is one byte: a host sending an extended-length SM command gets
    6700 instead of a simulator exception."""
    ch = fmcos_card("0102030405060708", "0102030405060708")
    assert ch(write_key_plain(0x02, 0x36, 0xF0, 0xF0, 0xFF, 0x33, bytes(16)))[1] == 0x9000
    assert ch(write_key_plain(0x00, 0x39, 0xF0, 0xF0, 0x0A, 0x33, bytes(16)))[1] == 0x9000
    assert ch("80E0000507 280200F0F0FFFF")[1] == 0x9000
    assert ch("00A40000020005")[1] == 0x9000
    body = bytes(288 + 4)  # 18 SM4 blocks + MAC: well formed apart from its length
    for header in ("04D60000", "84D40100"):
        ch.challenge()
        raw = bytes.fromhex(header) + b"\x00" + len(body).to_bytes(2, "big") + body
        assert ch.raw(raw)[1] == 0x6700


def test_external_auth_errors() -> None:
    ch = issued()
    ch.select_path("DDF1")
    ch.challenge()
    assert ch("0082000911 0000000000000000 1122334455667788 01")[1] == 0x6A88
    ch.challenge()
    assert ch("008200040500000000 00")[1] == 0x6700
    assert ch("0082010411 0000000000000000 1122334455667788 01")[1] == 0x6A86


# --- internal authentication ---------------------------------------------------------------


def test_health_form_internal_authentication() -> None:
    ch = issued()
    ch.select_path("DDF1")
    rs, plain = bytes.fromhex("0102030405060708"), bytes.fromhex("A1A2A3A4A5A6A7A8")
    data, sw = ch(apdu(0x00, 0x88, 0x00, 0x04, rs + plain + b"\x01", le=0))
    irk = card_key("IRK_DDF1", TRACE_CARD_FACTOR)
    session = diversify(BlockCipher.SM4, irk, rs)
    assert (data, sw) == (xor_fold(ecb_encrypt(BlockCipher.SM4, session, plain + bytes(8))),
                          0x9000)
    # internal authentication does not change the security state
    ch.select_ef(0xEF06)
    assert ch("00B2010400")[1] == 0x6982


# --- secure messaging ----------------------------------------------------------------------


def test_sm_update_needs_a_correct_mac_and_locks_stk_after_three_errors() -> None:
    ch = issued()
    ch.select_path("DDF1")
    assert ch.auth("UK1_DDF1") == 0x9000
    ch.select_ef(0xEF08)
    stk = card_key("STK_DDF1", TRACE_CARD_FACTOR)
    record = bytes.fromhex("07042030FFFF")
    for _ in range(3):
        chal = ch.challenge()
        bad = bytearray(sm_wrap(bytes.fromhex("04DC0104"), record, stk, chal))
        bad[-1] ^= 1
        assert ch(bytes(bad))[1] == 0x9302
    assert ch.sm(bytes.fromhex("04DC0104"), record, "STK_DDF1") == 0x6983


def test_sm_update_must_keep_the_record_tag_and_length() -> None:
    ch = issued()
    ch.select_path("DDF1")
    assert ch.auth("UK1_DDF1") == 0x9000
    ch.select_ef(0xEF08)
    assert ch.sm(bytes.fromhex("04DC0104"), bytes.fromhex("0703203012"), "STK_DDF1") == 0x6700
    assert ch.sm(bytes.fromhex("04DC0104"), bytes.fromhex("08042030FFFF"), "STK_DDF1") == 0x6A80
    assert ch.sm(bytes.fromhex("04DC0104"), bytes.fromhex("07042030FFFF"), "STK_DDF1") == 0x9000


def test_sm_update_binary() -> None:
    ch = issued()
    ch.select_path("DDF1")
    assert ch.auth("UK1_DDF1") == 0x9000
    ch.select_ef(0xEF07)
    assert ch.sm(bytes.fromhex("04D60010"), b"\x12\x34\x56", "STK_DDF1") == 0x9000
    assert ch.auth("RK1_DDF1") == 0x9000
    ch.select_ef(0xEF07)
    assert ch("00B0001003")[0] == b"\x12\x34\x56"


def test_mac_protected_index_flag_write() -> None:
    ch = issued()
    ch.select_path("DDF1", "DF03")
    assert ch.auth("UK1_DF03") == 0x9000
    ch.select_ef(0xEF05)
    stk = card_key("STK_DF03", TRACE_CARD_FACTOR)
    chal = ch.challenge()
    assert ch(session_mac_apdu(bytes.fromhex("84D20104"), stk, chal))[1] == 0x9000
    chal = ch.challenge()
    bad = bytearray(session_mac_apdu(bytes.fromhex("84D20204"), stk, chal))
    bad[-1] ^= 0xFF
    assert ch(bytes(bad))[1] == 0x9302


# --- PIN -----------------------------------------------------------------------------------


def pin_card() -> Channel:
    ch = fmcos_card()
    ch(write_key_plain(0x01, 0x3A, 0xF0, 0xEF, 0x01, 0x33, bytes.fromhex("12345FFFFFFF")))
    ch(apdu(0x80, 0xE0, 0x00, 0x01, bytes.fromhex("280010F011FFFF")))  # write needs the PIN
    ch("00A40000020001")
    assert ch("80E8000000")[1] == 0x9000
    return ch


def test_verify_pin_counts_tries_and_blocks() -> None:
    ch = pin_card()
    assert ch("00D6000001AA")[1] == 0x6982
    assert ch("002000010312345F")[1] == 0x9000
    assert ch("00D6000001AA")[1] == 0x9000
    for expected in (0x63C2, 0x63C1, 0x63C0, 0x6983):
        assert ch("0020000103999999")[1] == expected
    assert ch("002000010312345F")[1] == 0x6983


def test_verify_without_data_reports_tries_left() -> None:
    ch = pin_card()
    assert ch.raw("00200001")[1] == 0x63C3
    ch("0020000103999999")
    assert ch.raw("00200001")[1] == 0x63C2


def test_change_pin() -> None:
    ch = pin_card()
    assert ch("805E01010712345FFF654321")[1] == 0x9000
    assert ch("002000010312345F")[1] == 0x63C2
    assert ch("0020000103654321")[1] == 0x9000
    assert ch("805E010107999999FF123456")[1] == 0x63C2
    assert ch("805E0101050102030405")[1] == 0x6A80  # no FF separator


# --- application / card block --------------------------------------------------------------


def _lock(ch: Channel, header: str, key_name: str) -> int:
    chal = ch.challenge()
    return ch(session_mac_apdu(bytes.fromhex(header), card_key(key_name, TRACE_CARD_FACTOR),
                               chal))[1]


def test_application_block_and_unblock() -> None:
    ch = issued()
    ch.select_path("DDF1", "DF01")
    assert _lock(ch, "841E0000", "LK_DF01") == 0x9000
    assert ch.select_ef(0xEF05) == 0x9000  # SELECT works inside a blocked application
    assert ch("00B2010400")[1] == 0x6A81
    assert ch("0082008411 0000000000000000 1122334455667788 01")[1] == 0x6A81
    ch.select_path("DDF1")
    ch.select_ef(0xEF05)
    assert ch("00B2010000")[1] == 0x9000  # other applications are not affected
    ch.select_path("DF01")
    assert _lock(ch, "84180000", "LK_DF01") == 0x9000
    assert ch.auth("RK1_DF01") == 0x9000
    ch.select_ef(0xEF05)
    assert ch("00B2010400")[1] == 0x9000


def test_permanent_application_block_cannot_be_undone() -> None:
    ch = issued()
    ch.select_path("DDF1", "DF02")
    assert _lock(ch, "841E0001", "LK_DF02") == 0x9000
    ch.select_ef(0xEF05)
    assert ch("00B2010400")[1] == 0x9303
    assert _lock(ch, "84180000", "LK_DF02") == 0x9303


def test_application_block_with_a_wrong_mac() -> None:
    ch = issued()
    ch.select_path("DDF1", "DF03")
    assert _lock(ch, "841E0000", "LK_DF01") == 0x9302  # another DF's lock key
    assert ch.auth("RK1_DF03") == 0x9000


def test_card_block() -> None:
    ch = issued()
    ch.select_path("DDF1")
    assert _lock(ch, "84160000", "BK_MF") == 0x9000
    assert ch("00A40000023F00")[1] == 0x6A81
    assert ch("0084000008")[1] == 0x6A81


def test_rk_auth_data_is_not_checked_beyond_the_cryptogram() -> None:
    ch = issued()
    ch.select_path("DDF1")
    assert ch.auth("RK1_DDF1", plain=bytes(8)) == 0x9000
    assert ch.auth("RK1_DDF1", plain=RK_PLAIN) == 0x9000


def test_3des_card_authenticates_and_takes_sm_updates() -> None:
    card = issued_card(cipher=BlockCipher.TDES)
    ch = Channel(card.process, TRACE_CARD_FACTOR, BlockCipher.TDES)
    ch.select_path("DDF1")
    assert ch.auth("UK1_DDF1") == 0x9000
    ch.select_ef(0xEF08)
    assert ch.sm(bytes.fromhex("04DC0104"), bytes.fromhex("07042030FFFF"), "STK_DDF1") == 0x9000


# --- issue 11: no free MAC oracle, no anonymous exhaustion of LK / BK ------------------------

LK_QUERY = "00823603"  # EXTERNAL AUTHENTICATE without data: retry counter of 36/03


def test_a_wrong_write_key_mac_counts_against_the_master_key() -> None:
    """Before: 50 wrong MACs on 84 D4 and still 3 tries, an unlimited online MAC oracle."""
    ch = fmcos_card(*(["4C45BAB9"] * 5))
    ch(write_key_plain(0x00, 0x39, 0xF0, 0xF0, 0xAA, 0x33, b"\xff" * 8))
    assert ch("80E8000000")[1] == 0x9000
    wrong = "84D4010214 7C87BC23140021B3AFEA67E6359DDCFE D7C943F7"
    for left in (2, 1, 0):
        ch("0084000004")
        assert ch(wrong)[1] == 0x9302
        assert ch("00820000")[1] == (0x63C0 | left if left else 0x6983)
    ch("0084000004")
    right = "84D4010214 7C87BC23140021B3AFEA67E6359DDCFE D7C943F6"
    assert ch(right)[1] == 0x6983  # the master key is blocked: nothing is written any more


def test_a_right_write_key_mac_restores_the_master_key_counter() -> None:
    ch = fmcos_card(*(["4C45BAB9"] * 2))
    ch(write_key_plain(0x00, 0x39, 0xF0, 0xF0, 0xAA, 0x33, b"\xff" * 8))
    ch("0084000004")
    assert ch("84D4010214 7C87BC23140021B3AFEA67E6359DDCFE D7C943F7")[1] == 0x9302
    assert ch("00820000")[1] == 0x63C2
    ch("0084000004")
    assert ch("84D4010214 7C87BC23140021B3AFEA67E6359DDCFE D7C943F6")[1] == 0x9000
    assert ch("00820000")[1] == 0x63C3


def test_wrong_block_macs_cost_lk_and_bk_nothing() -> None:
    """Both fuzz runs of the hostile probe left LK_DF01 and LK_DF02 blocked: anyone could make
    a card impossible to block. A refused BLOCK now spends no try (docs/cos.md §8)."""
    ch = issued()
    ch.select_path("DDF1", "DF01")
    for _ in range(50):
        assert _lock(ch, "841E0000", "LK_DF02") == 0x9302
        assert _lock(ch, "84160000", "LK_DF01") == 0x9302  # CARD BLOCK: not BK_MF's MAC
    assert ch(LK_QUERY)[1] == 0x63C3
    assert ch.auth("RK1_DF01") == 0x9000  # not blocked
    ch.select_path("MF")
    assert ch(LK_QUERY)[1] == 0x63C3  # BK_MF
    ch.select_path("DDF1", "DF01")
    assert _lock(ch, "841E0000", "LK_DF01") == 0x9000  # the issuer can still block it


def test_unblock_needs_a_blocked_application_and_counts_wrong_macs() -> None:
    ch = issued()
    ch.select_path("DDF1", "DF01")
    assert _lock(ch, "84180000", "LK_DF02") == 0x6985  # nothing to unblock: no MAC checked
    assert ch(LK_QUERY)[1] == 0x63C3
    assert _lock(ch, "841E0000", "LK_DF01") == 0x9000
    assert ch(LK_QUERY)[1] == 0x6A81  # a blocked application answers only SELECT, GET
    assert _lock(ch, "84180000", "LK_DF02") == 0x9302  # CHALLENGE and UNBLOCK
    assert _lock(ch, "84180000", "LK_DF01") == 0x9000  # the right MAC restores the counter
    assert ch(LK_QUERY)[1] == 0x63C3
    assert _lock(ch, "841E0000", "LK_DF01") == 0x9000
    for _ in range(3):  # a forged unblock is worth counting: three, and LK is blocked
        assert _lock(ch, "84180000", "LK_DF02") == 0x9302
    assert _lock(ch, "84180000", "LK_DF01") == 0x6983  # ... and the application stays blocked


def test_the_retry_counter_query_spends_nothing_and_needs_no_authentication() -> None:
    ch = issued()
    ch.select_path("DDF1", "DF01")
    ch.challenge()
    assert ch("0082008411 0000000000000000 1122334455667788 01")[1] == 0x63CE  # RK1: FF
    for _ in range(5):
        assert ch("00820004")[1] == 0x63CE  # P1 00: the type-39 key KID 04 (RK1)
    assert ch("00820204")[1] == 0x6A86  # P1 02 is not a counted key type
    assert ch("00823609")[1] == 0x6A88  # no such key
    assert ch.auth("RK1_DF01") == 0x9000
    assert ch("00820004")[1] == 0x63CF
