"""User-card COS: file system, issuance commands, records, protocol shaping (raw APDUs)."""

from __future__ import annotations

import pytest

from healthcard_apdu.apdu import commands
from healthcard_apdu.crypto import BlockCipher, challenge_iv, ecb_encrypt
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.errors import ImageError
from sim_issuance import (
    FID,
    TRACE_CARD_FACTOR,
    Channel,
    apdu,
    card_key,
    create_df,
    create_keyfile,
    ext_auth,
    issued_card,
    write_key_plain,
)

SERIAL = bytes.fromhex("1122334455667788")


def blank(protocol: str = "T=1", **kwargs: object) -> tuple[SimCard, Channel]:
    card = SimCard.blank(SERIAL, protocol=protocol, **kwargs)  # type: ignore[arg-type]
    card.power_on()
    return card, Channel(card.process, SERIAL)


def ef(kind: int, fid: int, a: int, b: int, read: int = 0xF0, write: int = 0xF0,
       erase: int = 0xFF) -> bytes:
    """CREATE FILE for an EF; (a, b) = size bytes or (nrec, reclen)."""
    return apdu(0x80, 0xE0, fid >> 8, fid & 0xFF, bytes((kind, a, b, read, write, erase, 0xFF)))


# --- ATR -----------------------------------------------------------------------------------


def test_t1_atr_offers_t1_with_valid_tck_and_starts_with_card_factor() -> None:
    card, _ = blank()
    atr = card.atr()
    assert atr[0] == 0x3B
    t0 = atr[1]
    k = t0 & 0x0F
    assert t0 & 0xF0 == 0x80  # only TD1 present
    assert atr[2] == 0x01  # TD1: T=1, nothing follows
    historical = atr[3 : 3 + k]
    assert len(atr) == 3 + k + 1
    check = 0
    for b in atr[1:]:
        check ^= b
    assert check == 0  # TCK makes the XOR of T0..TCK zero
    # the real family's shape: 13 historical bytes, the card factor first (docs/cos.md §1)
    assert k == 13
    assert historical[:8] == SERIAL
    assert historical[-8:] != SERIAL


def test_t0_atr_has_no_interface_bytes_and_no_tck() -> None:
    card, _ = blank("T=0")
    atr = card.atr()
    k = atr[1] & 0x0F
    assert atr[1] & 0xF0 == 0
    assert len(atr) == 2 + k
    assert atr[2:10] == SERIAL


def test_factor_last_layout_keeps_the_old_shape() -> None:
    card = SimCard.blank(SERIAL, atr_layout="factor-last")
    atr = card.atr()
    assert atr[3 : 3 + (atr[1] & 0x0F)] == b"HC" + SERIAL


def test_explicit_historical_bytes_and_bad_layouts() -> None:
    card = SimCard.blank(SERIAL, historical=bytes(range(15)))
    assert card.atr()[3:18] == bytes(range(15))
    with pytest.raises(ImageError, match="at most 15"):
        SimCard.blank(SERIAL, historical=bytes(16))
    with pytest.raises(ImageError, match="atr_layout"):
        SimCard.blank(SERIAL, atr_layout="middle")


# --- CREATE FILE / SELECT ------------------------------------------------------------------


def test_blank_card_creates_df_selects_it_and_answers_fci() -> None:
    _, ch = blank()
    assert ch(create_df(0x1001, 0x1000, 0xF0, 0xF0, 0x95, b"TEST.DF.ONE"))[1] == 0x9000
    # The new DF is current: a key file created now belongs to it.
    assert ch(create_keyfile(0x40, 0x01, 0xF0))[1] == 0x9000
    data, sw = ch(commands.select_fid(0x1001).to_bytes())
    name = b"TEST.DF.ONE"
    assert (data, sw) == (bytes((0x6F, 4 + len(name), 0x84, len(name))) + name + b"\xa5\x00",
                          0x9000)


def test_fci_without_a5_when_app_fid_is_ff_and_no_fci_with_p2_0c() -> None:
    _, ch = blank()
    ch(create_df(0x1002, 0x1000, 0xF0, 0xF0, 0xFF, b"\x01\x02\x03\x04\x05"))
    assert ch("00A40000021002")[0] == bytes.fromhex("6F07 8405 0102030405")
    assert ch("00A4000C021002") == (b"", 0x9000)


def test_fci_a5_carries_the_fci_file_when_present() -> None:
    _, ch = blank()
    ch(create_df(0x1003, 0x1000, 0xF0, 0xF0, 0x95, b"ABCDE"))
    ch(ef(0x28, 0x0015, 0x00, 0x03))
    ch("00A40000020015")
    ch("00D6000003AABBCC")
    assert ch("00A40000021003")[0] == bytes.fromhex("6F0C 8405 4142434445 A503 AABBCC")


def test_create_file_errors() -> None:
    _, ch = blank()
    assert ch(ef(0x28, 0x0001, 0x00, 0x10))[1] == 0x9000
    assert ch(ef(0x28, 0x0001, 0x00, 0x10))[1] == 0x6A86  # exists (FMCOS)
    assert ch(apdu(0x80, 0xE0, 0x00, 0x02, bytes.fromhex("2800")))[1] == 0x6700
    assert ch(ef(0x2A, 0x0003, 0x00, 0x10))[1] == 0x6A80  # zero records
    assert ch(ef(0x2F, 0x0004, 0x02, 0x08))[1] == 0x6A80  # purse: not supported
    assert ch(ef(0x28, 0x0005, 0xFF, 0xFF))[1] == 0x6A84  # 64 KiB card is full
    assert ch(create_keyfile(0x40, 0, 0xF0))[1] == 0x9000
    assert ch(create_keyfile(0x40, 0, 0xF0))[1] == 0x6A86


def test_df_nesting_is_limited_to_three_levels() -> None:
    _, ch = blank()
    assert ch(create_df(0x1001, 0x1000, 0xF0, 0xF0, 0xFF, b"LEVEL2"))[1] == 0x9000
    assert ch(create_df(0x1002, 0x1000, 0xF0, 0xF0, 0xFF, b"LEVEL3"))[1] == 0x9000
    assert ch(create_df(0x1003, 0x1000, 0xF0, 0xF0, 0xFF, b"LEVEL4"))[1] == 0x6A80


def test_create_right_is_checked_once_a_key_file_exists() -> None:
    _, ch = blank()
    ch(create_df(0x1001, 0x1000, 0x11, 0xF0, 0xFF, b"RIGHTS"))
    assert ch(ef(0x28, 0x0001, 0x00, 0x08))[1] == 0x9000  # no key file yet: free
    ch(create_keyfile(0x40, 0x01, 0xF0))
    assert ch(ef(0x28, 0x0002, 0x00, 0x08))[1] == 0x6982


def test_select_rules_children_parent_siblings_mf_and_name() -> None:
    _, ch = blank()
    ch(create_df(0x1001, 0x1000, 0xF0, 0xF0, 0xFF, b"DFONE"))
    ch(ef(0x28, 0x0A01, 0x00, 0x04))
    ch("00A40000023F00")
    ch(create_df(0x1002, 0x1000, 0xF0, 0xF0, 0xFF, b"DFTWO"))
    assert ch("00A40000021001")[1] == 0x9000  # sibling DF
    assert ch("00A40000020A01")[1] == 0x9000  # child EF
    assert ch("00A40000021002")[1] == 0x9000  # sibling again
    assert ch("00A40000020A01")[1] == 0x6A82  # EF of a sibling is not visible
    assert ch("00A40000023F00")[1] == 0x9000
    data, sw = ch("00A404000544464F4E4500")
    assert sw == 0x9000 and b"DFONE" in data
    assert ch("00A4040005414243444500")[1] == 0x6A82
    assert ch("00A40000033F0000")[1] == 0x6700
    assert ch("00A40500023F00")[1] == 0x6A86


# --- binary files --------------------------------------------------------------------------


def test_binary_read_update_bounds() -> None:
    _, ch = blank()
    ch(ef(0x28, 0x0001, 0x00, 0x10))
    ch("00A40000020001")
    assert ch("00D600000411223344")[1] == 0x9000
    assert ch("00B0000004") == (bytes.fromhex("11223344"), 0x9000)
    assert ch("00B000000E")[0] == bytes.fromhex("11223344") + bytes(10)
    assert ch("00B0000E04") == (bytes(2), 0x6282)  # end of file before Le
    assert ch("00B0000E00") == (bytes(2), 0x9000)  # Le 00: whatever is there
    assert ch("00B0001001")[1] == 0x6B00
    assert ch("00D6000E03010203")[1] == 0x6700  # would overflow the file
    assert ch("00B0810002")[0] == bytes.fromhex("1122")  # SFI 1


def test_read_without_current_ef_and_on_wrong_structure() -> None:
    _, ch = blank()
    assert ch("00B0000001")[1] == 0x6986
    ch(ef(0x2A, 0x0002, 2, 4))
    ch("00A40000020002")
    assert ch("00B0000001")[1] == 0x6981
    assert ch("00D6000001AA")[1] == 0x6981


# --- record files --------------------------------------------------------------------------


def test_fixed_record_file_append_update_read() -> None:
    _, ch = blank()
    ch(ef(0x2A, 0x0002, 2, 3))
    ch("00A40000020002")
    assert ch("00B2010400")[1] == 0x6A83  # no records until appended
    assert ch("00DC010403AABBCC")[1] == 0x6A83
    assert ch("00E2000003010203")[1] == 0x9000
    assert ch("00E2000002AABB")[1] == 0x6700  # wrong length
    assert ch("00E2000003040506")[1] == 0x9000
    assert ch("00E2000003070809")[1] == 0x6A84  # full
    assert ch("00DC020403AABBCC")[1] == 0x9000
    assert ch("00B2020400") == (bytes.fromhex("AABBCC"), 0x9000)
    assert ch("00B2010402")[1] == 0x6C03  # Le shorter than the record
    assert ch("00B2000400")[1] == 0x6A86


def test_variable_record_file_is_tlv_and_keeps_tag_and_length() -> None:
    _, ch = blank()
    ch(apdu(0x80, 0xE0, 0x00, 0x03, bytes.fromhex("2C0010F0F0FFFF")))
    ch("00A40000020003")
    assert ch("00E2000003390200")[1] == 0x6A80  # length byte lies
    assert ch("00E2000003000100")[1] == 0x6A80  # tag 00 is not a tag
    assert ch("00E20000043903 0102")[1] == 0x6A80
    assert ch("00E20000053903210000")[1] == 0x9000
    assert ch("00E2000003070100")[1] == 0x9000
    assert ch("00E20000090A0700000000000000")[1] == 0x6A84  # 16-byte file is full
    assert ch("00B2390005") == (bytes.fromhex("3903210000"), 0x9000)
    assert ch("00B2070000") == (bytes.fromhex("070100"), 0x9000)
    assert ch("00B2080000")[1] == 0x6A83
    assert ch("00DC010406390400000000")[1] == 0x6700  # other length
    assert ch("00DC0104053803000000")[1] == 0x6A80  # other tag
    assert ch("00DC0104053903130185")[1] == 0x9000
    assert ch("00B2390000")[0] == bytes.fromhex("3903130185")


def test_cyclic_file_newest_record_is_one_and_oldest_falls_off() -> None:
    _, ch = blank()
    ch(ef(0x2E, 0x0004, 3, 2))
    ch("00A40000020004")
    for value in ("0101", "0202", "0303"):
        assert ch("00E2000002" + value)[1] == 0x9000
    assert ch("00DC000302" + "0404")[1] == 0x9000  # P2=03: a new record
    records = [ch(f"00B2{n:02X}0400")[0].hex() for n in (1, 2, 3)]
    assert records == ["0404", "0303", "0202"]
    assert ch("00B2040400")[1] == 0x6A83
    assert ch("00DC020402EEEE")[1] == 0x9000  # update an existing record in place
    assert ch("00B2020400")[0].hex() == "eeee"
    assert ch("00DC010302EEEE")[1] == 0x6A86  # P2=03 needs P1=00


def test_p2_03_is_refused_on_linear_files() -> None:
    _, ch = blank()
    ch(ef(0x2A, 0x0002, 2, 1))
    ch("00A40000020002")
    assert ch("00DC000301AA")[1] == 0x6981


def test_write_and_erase_record_flags() -> None:
    _, ch = blank()
    ch(ef(0x2A, 0x0002, 3, 1))
    ch("00A40000020002")
    for _ in range(3):
        ch("00E2000001FF")
    assert ch(commands.write_record_flag(2).to_bytes())[1] == 0x9000
    assert [ch(f"00B2{n:02X}0400")[0].hex() for n in (1, 2, 3)] == ["ff", "00", "ff"]
    assert ch(commands.erase_record_flag(2).to_bytes())[1] == 0x9000
    assert ch("00B2020400")[0].hex() == "ff"
    assert ch(commands.write_record_flag(4).to_bytes())[1] == 0x6A83


# --- command dispatch ----------------------------------------------------------------------


def test_unknown_instruction_class_and_malformed_apdus() -> None:
    _, ch = blank()
    assert ch("00EE000000")[1] == 0x6D00
    assert ch("80B0000001")[1] == 0x6E00
    assert ch.raw("00A400")[1] == 0x6700  # shorter than a header
    assert ch.raw("00A4000005AABB")[1] == 0x6700  # Lc disagrees with the length


def test_get_challenge_lengths() -> None:
    _, ch = blank()
    assert len(ch("0084000004")[0]) == 4
    assert len(ch("0084000008")[0]) == 8
    assert len(ch("0084000010")[0]) == 16
    assert ch("0084000005")[1] == 0x6700
    assert ch("0084000108")[1] == 0x6A86


# --- T=0 shaping ---------------------------------------------------------------------------


def test_t0_mode_uses_61xx_and_get_response() -> None:
    _, ch = blank("T=0")
    ch(create_df(0x1001, 0x1000, 0xF0, 0xF0, 0xFF, b"TZERO"))
    assert ch("00A40000021001") == (b"", 0x6109)
    assert ch("00C0000009") == (bytes.fromhex("6F078405545A45524F"), 0x9000)
    assert ch("00C0000009")[1] == 0x6985  # nothing left
    ch("00A40000021001")
    assert ch("00C0000004") == (bytes.fromhex("6F078405"), 0x6105)
    assert ch("00C000000A")[1] == 0x6C05
    assert ch("00C0000005")[0] == bytes.fromhex("545A45524F")


def test_t0_mode_case2_wrong_le_gives_6cxx() -> None:
    _, ch = blank("T=0")
    ch(ef(0x28, 0x0001, 0x00, 0x10))
    ch("00A40000020001")
    assert ch("00B0000000")[1] == 0x6C10  # Le 00 means 256, the file has 16
    assert ch("00B0000010") == (bytes(16), 0x9000)
    assert ch("0084000008")[1] == 0x9000


def test_t0_pending_response_is_dropped_by_the_next_command() -> None:
    _, ch = blank("T=0")
    ch(create_df(0x1001, 0x1000, 0xF0, 0xF0, 0xFF, b"TZERO"))
    assert ch("00A40000021001")[1] == 0x6109
    ch("0084000008")
    assert ch("00C0000009")[1] == 0x6985


def test_t1_get_response_without_pending_data() -> None:
    _, ch = blank()
    assert ch("00C0000010")[1] == 0x6985


# --- issuance life cycle -------------------------------------------------------------------


def _issued_channel() -> tuple[SimCard, Channel]:
    card = issued_card()
    return card, Channel(card.process, TRACE_CARD_FACTOR)


def test_after_end_issuance_issuance_commands_are_refused() -> None:
    _, ch = _issued_channel()
    ch.select_path("DDF1")
    assert ch(ef(0x28, 0x0001, 0x00, 0x10))[1] == 0x6985
    assert ch(write_key_plain(0x09, 0x39, 0xF0, 0xF0, 0x01, 0x33, bytes(16)))[1] == 0x6985
    assert ch("80E8000000")[1] == 0x6985
    assert ch("800E000000")[1] == 0x6985  # ERASE DF of a DF other than the MF


def test_issuance_only_files_refuse_writes_after_end_issuance() -> None:
    _, ch = _issued_channel()
    ch.select_path("DDF1")
    assert ch.auth("UK1_DDF1") == 0x9000
    for fid in (0xEF05, 0xEF06):
        ch.select_ef(fid)
        assert ch("00DC010403010131")[1] == 0x6982


def test_writes_are_free_during_issuance() -> None:
    card = issued_card(end=False)
    ch = Channel(card.process, TRACE_CARD_FACTOR)
    ch.select_path("DDF1")
    ch.select_ef(0xEF05)
    assert ch("00DC010403010132")[1] == 0x9000  # write right EF ("never") not yet enforced
    ch.select_ef(0xEF08)
    assert ch("00DC01040607042030FFFF")[1] == 0x9000  # plain write to an SM file
    assert ch("00B2010400")[1] == 0x6982  # reads are always checked


def test_plain_update_of_a_mac_file_is_refused_with_6900() -> None:
    _, ch = _issued_channel()
    ch.select_path("DDF1")
    assert ch.auth("UK1_DDF1") == 0x9000
    ch.select_ef(0xEF08)
    assert ch("00DC01040607042030FFFF")[1] == 0x6900


def test_erase_mf_needs_the_mf_master_key_and_returns_to_issuance() -> None:
    card, ch = _issued_channel()
    ch.select_path("MF")
    assert ch("800E000000")[1] == 0x6982
    chal = ch.challenge()
    master = card_key("MASTER_MF", TRACE_CARD_FACTOR)
    crypt = ecb_encrypt(BlockCipher.SM4, master, challenge_iv(chal, 16))
    assert ch(apdu(0x00, 0x82, 0x00, 0x00, crypt))[1] == 0x9000
    assert ch("800E000000")[1] == 0x9000
    assert card.image.issued is False
    assert ch("00A4000002DDF1")[1] == 0x6A82
    # Blank again: the MF can be redefined and files created.
    assert ch(create_df(0x3F00, 0xFFFF, 0xF0, 0xF0, 0xFF, b"AGAIN"))[1] == 0x9000
    assert ch(ef(0x28, 0x0001, 0x00, 0x10))[1] == 0x9000


def test_mf_cannot_be_redefined_once_it_has_content() -> None:
    _, ch = blank()
    ch(ef(0x28, 0x0001, 0x00, 0x10))
    assert ch(create_df(0x3F00, 0xFFFF, 0xF0, 0xF0, 0xFF, b"AGAIN"))[1] == 0x6A86


def test_health_auth_reference_maps_to_kid() -> None:
    _, ch = _issued_channel()
    ch.select_path("DDF1", "DF03")
    chal = ch.challenge()
    auth = bytearray(ext_auth("RK1_DF03", TRACE_CARD_FACTOR, chal))
    assert auth[3] == 0x84
    auth[3] = 0x04  # same KID without the local bit
    assert ch(bytes(auth))[1] == 0x9000


@pytest.mark.parametrize("name", ["DF01", "DF02", "DF03"])
def test_selecting_a_df_resets_its_security_state(name: str) -> None:
    _, ch = _issued_channel()
    ch.select_path("DDF1", name)
    assert ch.auth(f"RK1_{name}") == 0x9000
    ch.select_ef(0xEF05)
    assert ch("00B2010400")[1] == 0x9000
    ch.select_path(name)  # re-selecting the DF clears its register
    ch.select_ef(0xEF05)
    assert ch("00B2010400")[1] == 0x6982
    assert FID[name] == int(name[2:], 16) + 0xDF00


# --- reachability and independence -----------------------------------------------------------


def test_simulator_works_through_the_in_process_transport() -> None:
    from healthcard_apdu.transport.inprocess import InProcessTransport

    card = issued_card()
    card.power_off()
    with InProcessTransport(card) as transport:
        assert transport.atr() == card.atr()
        reply = transport.transmit(bytes.fromhex("00A4000002DDF1"))
        assert reply == bytes.fromhex("6F10840C57532E5359532E4444463031A5009000")


def test_national_layout_fits_a_32k_card() -> None:
    assert issued_card().image.mf.space <= 32 * 1024


def test_sim_imports_only_apdu_crypto_and_the_stdlib() -> None:
    import ast
    import sys
    from pathlib import Path

    import healthcard_apdu.sim as sim_package

    allowed = ("healthcard_apdu.apdu", "healthcard_apdu.crypto", "healthcard_apdu.sim",
               "healthcard_apdu.fileio")  # fileio: the leaf below every layer
    for path in Path(sim_package.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top == "healthcard_apdu":
                    assert name.startswith(allowed), f"{path.name} imports {name}"
                elif top == "click":
                    assert path.name == "cli.py", f"{path.name} imports click"
                else:
                    assert top in sys.stdlib_module_names or top == "__future__", (
                        f"{path.name} imports {name}")
