"""``verify_card``: passes on a personalized card; fails naming the difference after a data or
key change; forbidden accesses must be refused."""

from __future__ import annotations

import json
from pathlib import Path

from healthcard_apdu import model
from healthcard_apdu.crypto import BlockCipher, challenge_iv, ecb_encrypt, fmcos_mac, line_encrypt
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.perso.verify import verify_card
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.psam import PsamSecurityModule
from healthcard_apdu.sim import SimCard, SimSam
from healthcard_apdu.sim.fs import Df, Ef
from healthcard_apdu.transport import Channel, InProcessTransport
from perso_support import (
    TapTransport,
    blank_card,
    card_keys,
    issued_card,
    keyset,
    software,
)

NATIONAL = load_profile("national-32k")


def _df(card: SimCard, *path: int) -> Df:
    node = card.image.mf
    for fid in path:
        child = node.children[fid]
        assert isinstance(child, Df)
        node = child
    return node


def _ef(card: SimCard, df: Df, fid: int) -> Ef:
    child = df.children[fid]
    assert isinstance(child, Ef)
    return child


def test_verify_passes_and_names_its_checks() -> None:
    card = issued_card()
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        report = verify_card(tap, NATIONAL, model.sample_resident(), software())
    assert report.ok and report.problems() == []
    results = {k.role: k.result for k in report.keys}
    skipped = {role for role, r in results.items() if r == "skipped"}
    assert skipped == {"STM_MF", "BK_MF", "LK_DF01", "LK_DF02", "LK_DF03"}
    assert set(results) == {k.role for k in NATIONAL.keys}
    assert all(p.refused for p in report.probes) and len(report.probes) == 8
    probe_names = " ".join(p.name for p in report.probes)
    assert "DDF1/EF06: read without authentication" in probe_names
    assert "DDF1/EF05: write" in probe_names
    assert report.apdus == len(tap.commands)
    # never the same EXTERNAL AUTHENTICATE twice in a row: no retries
    auths = [c for c in tap.commands if c[:2] == b"\x00\x82"]
    assert len(auths) == sum(1 for k in report.keys if "external" in k.how)
    json.dumps(report.to_json())


def test_data_change_is_named_by_item() -> None:
    card = issued_card()
    contacts = _ef(card, _df(card, 0xDDF1, 0xDF01), 0xEF06)
    record = bytearray(contacts.records[0])
    new_name = "王五".encode("gbk")
    record[2 : 2 + len(new_name)] = new_name
    contacts.records[0] = bytes(record)
    ee01 = _ef(card, _df(card, 0xDDF1, 0xDF03), 0xEE01)
    ee01.data[0] ^= 0x40
    with InProcessTransport(card) as link:
        report = verify_card(link, NATIONAL, model.sample_resident(), software())
    assert not report.ok and report.keys_ok and report.access_ok
    by_file = {d.file: d for d in report.differences}
    assert set(by_file) == {"DF01/EF06", "DF03/EE01"}
    diff = by_file["DF01/EF06"]
    assert diff.item == "item 25 LXRXM1 (contact_name_1)"
    assert "'王五'" in diff.message and "'王赟'" in diff.message
    assert by_file["DF03/EE01"].item is not None and "item 64" in by_file["DF03/EE01"].item


def _change_key_with_ciphertext_write_key(card: SimCard, df_path: tuple[int, ...], kid: int,
                                          master_role: str) -> None:
    """Post-issuance key change as an issuer would do it: FMCOS external authentication with
    the DF master key, then ``84 D4 39 KID`` ciphertext + MAC under that key
    (docs/reference/cos-crypto.md §1.4)."""
    master = card_keys(keyset(), NATIONAL)[master_role]
    cipher = BlockCipher.SM4
    with InProcessTransport(card) as link:
        for fid in df_path:
            select = bytes.fromhex("00A4000002") + fid.to_bytes(2, "big")
            assert link.transmit(select)[-2:] == b"\x90\x00"
        challenge = link.transmit(bytes.fromhex("0084000008"))[:-2]
        crypt = ecb_encrypt(cipher, master, challenge_iv(challenge, 16))
        assert link.transmit(bytes.fromhex("0082000010") + crypt)[-2:] == b"\x90\x00"
        payload = bytes.fromhex("39F0AA03FF") + bytes(range(16))  # a new value for UK2
        body = line_encrypt(cipher, master, payload)
        challenge = link.transmit(bytes.fromhex("0084000008"))[:-2]
        header = bytes((0x84, 0xD4, 0x39, kid, len(body) + 4))
        mac = fmcos_mac(cipher, master, header + body, challenge_iv(challenge, 16))
        assert link.transmit(header + body + mac)[-2:] == b"\x90\x00"


def test_key_change_after_issuance_is_found() -> None:
    card = issued_card()
    _change_key_with_ciphertext_write_key(card, (0xDDF1, 0xDF02), 0x06, "MK_DF02")
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        report = verify_card(tap, NATIONAL, model.sample_resident(), software())
    assert not report.ok and report.data_ok
    refused = [k for k in report.keys if k.result == "refused"]
    assert [(k.role, k.sw, k.tries_left) for k in refused] == [("UK2_DF02", 0x63CE, 14)]
    assert any("UK2_DF02" in line and "63CE" in line for line in report.problems())
    # ref 86 is UK2 in DF02 and DF03: each was tried exactly once
    assert sum(1 for c in tap.commands if c[:4] == bytes.fromhex("00820086")) == 2


def test_changed_read_key_hides_the_data_and_is_reported() -> None:
    card = issued_card()
    df02 = _df(card, 0xDDF1, 0xDF02)
    assert df02.keyfile is not None
    rk1 = next(k for k in df02.keyfile.keys if k.type_byte == 0x39 and k.kid == 0x04)
    rk1.value = bytes(16)
    with InProcessTransport(card) as link:
        report = verify_card(link, NATIONAL, model.sample_resident(), software())
    problems = report.problems()
    assert any(line.startswith("key RK1_DF02") for line in problems)
    assert {d.file for d in report.differences} == {"DF02/EF05", "DF02/EF06", "DF02/EF07",
                                                    "DF02/EF08"}
    assert all("RK1_DF02 was refused" in d.message for d in report.differences)


def test_weakened_access_right_is_found() -> None:
    card = issued_card()
    holder = _ef(card, _df(card, 0xDDF1), 0xEF06)
    holder.read_ac = 0xF0
    with InProcessTransport(card) as link:
        report = verify_card(link, NATIONAL, model.sample_resident(), software())
    assert report.data_ok and report.keys_ok and not report.access_ok
    failed = [p for p in report.probes if not p.refused]
    assert [p.name for p in failed] == ["DDF1/EF06: read without authentication"]
    assert failed[0].sw == 0x9000


def test_blank_card_fails_verify() -> None:
    with InProcessTransport(blank_card()) as link:
        report = verify_card(link, NATIONAL, model.sample_resident(), software())
    assert not report.ok
    assert report.differences[0].file == "DDF1"
    assert "cannot be selected" in report.differences[0].message


def test_verify_with_a_psam(tmp_path: Path) -> None:
    """The terminal's view: the SAM computes every cryptogram; DF master keys cannot be
    checked (a PSAM gives no card keys) and are reported as skipped."""
    sam_file = tmp_path / "sam.json"
    sam_file.write_text(json.dumps(simulator_sam_document(keyset())))
    sam = SimSam.from_key_file(sam_file)
    card = issued_card()
    with InProcessTransport(sam) as sam_link, InProcessTransport(card) as link:
        psam = PsamSecurityModule(Channel(sam_link), pin=keyset().sam_pin)
        report = verify_card(link, NATIONAL, model.sample_resident(), psam)
    assert report.ok, report.problems()
    skipped = {k.role for k in report.keys if k.result == "skipped"}
    assert {"MK_MF", "MK_DDF1", "MK_DF01", "MK_DF02", "MK_DF03"} <= skipped
    assert {k.role for k in report.keys if k.result == "ok"} >= {"RK1_DF03", "STK_DF03",
                                                                 "IRK_DDF1"}


def test_verify_with_other_keys_reports_every_key() -> None:
    card = issued_card()
    with InProcessTransport(card) as link:
        report = verify_card(link, NATIONAL, model.sample_resident(), software(variant=1))
    refused = {k.role for k in report.keys if k.result == "refused"}
    assert {"RK1_DDF1", "RK1_DF01", "RK1_DF02", "RK1_DF03", "MK_MF"} <= refused
    external = [k for k in report.keys if k.result == "refused" and "external" in k.how]
    assert external and all(k.tries_left == 14 or (k.role.startswith("MK_") and
                                                    k.tries_left == 2) for k in external)
    internal = next(k for k in report.keys if k.role == "IRK_DDF1")
    assert internal.result == "refused" and "differs" in internal.detail
