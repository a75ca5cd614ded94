"""``CardExplorer`` (the library side of ``healthcard shell``) on the in-process simulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from healthcard_apdu import model
from healthcard_apdu.apdu.errors import AuthenticationFailed
from healthcard_apdu.card import HealthCard
from healthcard_apdu.card.errors import NotWritable
from healthcard_apdu.card.explorer import CardExplorer, ExplorerError, decode_file
from healthcard_apdu.card.factor import FactorNotConfirmed, FactorStatus
from healthcard_apdu.model import ef
from healthcard_apdu.security import SoftwareSecurityModule
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.keys import TYPE_EXTERNAL
from healthcard_apdu.transport import Channel
from healthcard_apdu.transport.atr import parse_atr
from test_card_fixtures import (
    SAM_PIN,
    Recorder,
    issued_card,
    keyset,
    sam_over,
    sample,
    sim_sam,
)

WRONG = bytes(range(16))


@contextmanager
def explorer(
    *, keys: dict[str, bytes] | None = None, protocol: str = "T=1", psam: bool = False
) -> Iterator[tuple[CardExplorer, SimCard, Recorder]]:
    card = issued_card(protocol=protocol)
    recorder = Recorder(card)
    sam = sam_over(sim_sam(keyset(keys)), pin=SAM_PIN) if psam else None
    module = sam.security if sam is not None else SoftwareSecurityModule(keyset(keys))
    health_card = HealthCard(Channel(recorder), module)
    yield (
        CardExplorer(health_card, sam=sam, security_backend="sim_sam" if psam else "keys"),
        card,
        recorder,
    )


def tries_left(card: SimCard, df_name: str, key_name: str) -> int:
    """The simulated card's try counter of an external-authentication key."""
    node: Any = card.image.mf.children[0xDDF1]
    if df_name != "DDF1":
        node = node.children[model.df(df_name).fid]
    found = node.keyfile.find(TYPE_EXTERNAL, model.key(key_name).card_key_ref & 0x7F)
    assert found is not None
    left: int = found.tries_left
    return left


def test_paths_resolve_from_the_current_df() -> None:
    ex = CardExplorer(None)
    assert ex.resolve("holder").path == "DDF1/EF06"  # type: ignore[union-attr]
    assert ex.resolve("ddf1ef06").path == "DDF1/EF06"  # type: ignore[union-attr]
    assert ex.select("DF01").sent is False  # offline: the view moves, nothing is sent
    assert ex.location == "DF01"
    assert ex.resolve("EF05").path == "DF01/EF05"  # type: ignore[union-attr]
    assert ex.resolve("/MF/DDF1/DF02/EF07").path == "DF02/EF07"  # type: ignore[union-attr]
    assert ex.resolve("..").name == "DDF1"  # type: ignore[union-attr]
    ex.select("EF06")
    assert ex.location == "DF01/EF06" and ex.resolve(None).path == "DF01/EF06"  # type: ignore[union-attr]
    assert ex.resolve("..").name == "DF01"  # type: ignore[union-attr]
    with pytest.raises(ExplorerError, match=r"no card file 'EF99' \(from DF01/EF06\)"):
        ex.resolve("EF99")
    with pytest.raises(ExplorerError, match="needs a card"):
        ex.read("holder")


def test_tree_shows_presence_record_counts_and_index_flags() -> None:
    with explorer() as (ex, _card, _rec):
        hc = ex.card
        assert hc is not None
        hc.append_allergy(model.AllergyEntry(allergen_name="青霉素", allergic_reaction="皮疹"))
        hc.write_inpatient(2, sample().inpatient[0] or model.InpatientRecord())
        entries = {e.path: e for e in ex.tree()}
    assert entries["DDF1"].card == "present"
    assert entries["DF02/EF07"].card == "1 of 3 records used"
    assert entries["DF02/EF08"].card == "0 of 10 records used"
    assert entries["DF03/EF05"].card == "flags 1:FF 2:00 3:FF"
    assert entries["DF03/EE02"].card == "valid (flag 00)"
    assert entries["DF03/EE01"].card == "invalid (flag FF)"
    assert entries["DDF1/EF06"].access == "read RK1_DDF1, no rewrite"
    layout_only = {e.path: e.card for e in CardExplorer(None).tree()}
    assert set(layout_only) == set(entries) and set(layout_only.values()) == {"-"}


def test_ls_shows_a_missing_file_and_a_refused_key_without_stopping() -> None:
    with explorer(keys={"RK1_DF02": WRONG}) as (ex, card, rec):
        del card.image.mf.children[0xDDF1].children[0xDF01].children[0xEF08]  # type: ignore[attr-defined]
        cells = {e.path: e.card for e in ex.ls("DF01")}
        assert cells["DF01/EF08"] == "missing" and cells["DF01/EF05"] == "present"
        before = tries_left(card, "DF02", "RK1_DF02")
        cells = {e.path: e.card for e in ex.ls("DF02")}
        assert cells["DF02/EF07"].startswith("SW 63C") and "tries left" in cells["DF02/EF07"]
        assert "refused earlier (not retried)" in cells["DF02/EF08"]
        assert tries_left(card, "DF02", "RK1_DF02") == before - 1  # one try, never a second
        assert [a for a in rec.sent if a[1] == 0x82].__len__() == 1


def test_read_decoded_items_raw_bytes_and_item_filter() -> None:
    with explorer() as (ex, _card, _rec):
        ex.select("holder")
        reply = ex.read()
        assert reply.document == {"DDF1EF06": sample().holder.to_json("code")}
        assert [r["code"] for r in reply.rows] == ["XM", "XB", "MZ", "CSRQ", "SFZH"]
        only = ex.read("holder", ["XM", "15"])
        assert only.document == {"DDF1EF06": {"XM": "李堃", "SFZH": "110105198503171231"}}
        raw = ex.read_raw()
        records = sample().holder.to_records()
        assert raw.records == dict(records)
        assert raw.lines()[0].startswith("record  1: 0B 1E ")
        assert ex.card is not None
        ex.card.write_photo(sample().photo)
        photo = ex.read_raw("photo")
        assert photo.data == sample().photo.to_bytes() and photo.lines()[0].startswith("0000: ")
        ex.select("DF01")
        assert set(ex.read().document) == {"DF01EF05", "DF01EF06", "DF01EF07", "DF01EF08"}
        with pytest.raises(ExplorerError, match="no item 'NOPE'"):
            ex.read("holder", ["NOPE"])


def test_write_one_item_goes_through_the_document_writer() -> None:
    with explorer(psam=True) as (ex, _card, rec):
        results = ex.write_item("contacts", "LXRXM1", "王五")
        assert [(r.file, r.action) for r in results] == [("DF01EF06", "written")]
        assert any(a[:2] == b"\x04\xdc" for a in rec.sent)  # secure messaging UPDATE RECORD
        assert ex.read("contacts", ["LXRXM1"]).document == {"DF01EF06": {"LXRXM1": "王五"}}
        ex.select("DF02/EF05")
        ex.write_item(None, "ABOXX", "1")  # blood group ABO code: an integer item
        assert ex.read(None, ["ABOXX"]).document == {"DF02EF05": {"ABOXX": 1}}
        with pytest.raises(NotWritable, match="not rewritable"):
            ex.write_item("holder", "XM", "张三")
        with pytest.raises(ExplorerError, match="cyclic file"):
            ex.write_item("allergies", "GMWZMC", "花粉")
        with pytest.raises(model.ModelError):
            ex.write_item("DF01/EF07", "ZY", "X" * 40)  # too long: refused before the card
        sent = len(rec.sent)
        with pytest.raises(model.ModelError):
            ex.write_item("clinical", "ABOXX", "many")
        assert all(a[1] != 0xDC for a in rec.sent[sent:])


READ_KEYS = (("DDF1", "RK1_DDF1"), ("DF01", "RK1_DF01"), ("DF02", "RK1_DF02"), ("DF03", "RK1_DF03"))


def read_counters(card: SimCard) -> dict[str, int]:
    return {key: tries_left(card, df_name, key) for df_name, key in READ_KEYS}


def test_info_confirms_the_factor_without_a_try_and_auth_is_never_retried() -> None:
    with explorer(keys={"RK1_DF03": WRONG}) as (ex, card, rec):
        before = read_counters(card)
        historical = parse_atr(card.atr()).historical_bytes  # the real family's shape: 13
        report = ex.card_factor_report()
        check = report.confirmation
        assert check is not None and check.status is FactorStatus.CONFIRMED and report.checked_now
        assert [c["rules"] for c in report.candidates()] == [["first-8"], ["last-8"]]
        assert [c["factor"] for c in report.candidates()] == [
            historical[:8].hex().upper(),
            historical[-8:].hex().upper(),
        ]
        assert report.candidates()[0]["outcome"].startswith("confirmed by INTERNAL AUTHENTICATE")
        assert report.candidates()[1]["outcome"] == "not tried"
        assert report.in_use == historical[:8].hex().upper()
        assert [a[1] for a in rec.sent].count(0x88) == 1  # one INTERNAL AUTHENTICATE
        assert 0x82 not in [a[1] for a in rec.sent]  # no EXTERNAL AUTHENTICATE
        sent = len(rec.sent)
        again = ex.card_factor_report()  # once per card: nothing sent again
        assert len(rec.sent) == sent and not again.checked_now
        assert again.to_json()["status"] == "confirmed"
        assert ex.auth("rk1_df01").key == "RK1_DF01" and ex.location == "DF01"
        with pytest.raises(AuthenticationFailed) as refused:
            ex.auth("RK1_DF03")
        assert refused.value.retries_left == before["RK1_DF03"] - 1
        sent = len(rec.sent)
        with pytest.raises(AuthenticationFailed, match="not retried"):
            ex.auth("RK1_DF03")
        assert [a for a in rec.sent[sent:] if a[1] == 0x82] == []
        with pytest.raises(ExplorerError, match="not an external-authentication key"):
            ex.auth("STK_DF01")
        ex.reset()
        assert ex.location == "MF" and ex.card is not None
        assert ex.card.factor_confirmation is None  # a reset forgets the check
        assert ex.card_factor_report().checked_now
        assert read_counters(card) == {**before, "RK1_DF03": before["RK1_DF03"] - 1}


def test_auth_refuses_before_any_try_when_no_candidate_is_confirmed() -> None:
    with explorer(keys={"IRK_DDF1": WRONG}) as (ex, card, rec):  # not this card's key set
        before = read_counters(card)
        report = ex.card_factor_report()
        assert report.confirmation is not None
        assert report.confirmation.status is FactorStatus.NOT_CONFIRMED
        assert report.in_use is None and report.to_json()["factor"] is None
        assert [c["outcome"].startswith("no match") for c in report.candidates()] == [True, True]
        with pytest.raises(FactorNotConfirmed, match="no try spent"):
            ex.auth("RK1_DF01")
        with pytest.raises(FactorNotConfirmed):
            ex.read("holder")
        assert not {0x82, 0x84} & {a[1] for a in rec.sent}  # no GET CHALLENGE, no EXT. AUTH
        assert read_counters(card) == before


def test_info_selects_again_what_was_current() -> None:
    with explorer() as (ex, _card, rec):
        ex.select("DF01/EF05")
        info = ex.info()
        assert info["card_factor"]["status"] == "confirmed" and info["protocol"] == "T=1"
        assert ex.card is not None
        assert (ex.card.session.current_df, ex.card.session.current_ef) == ("DF01", "DF01/EF05")
        assert rec.headers()[-2:] == ["00A40000", "00A40000"]
        assert [a[-2:].hex().upper() for a in rec.sent[-2:]] == ["DF01", "EF05"]


def test_info_without_a_security_module_or_with_the_check_off_sends_nothing() -> None:
    card = issued_card()
    recorder = Recorder(card)
    bare = CardExplorer(HealthCard(Channel(recorder), SoftwareSecurityModule(keyset())))
    report = bare.card_factor_report()  # no security_backend: no module to check with
    assert report.confirmation is not None
    assert report.confirmation.status is FactorStatus.IMPOSSIBLE
    assert "no security module" in report.message and recorder.sent == []
    assert [c["outcome"] for c in report.candidates()] == ["not checked", "not checked"]
    off = HealthCard(Channel(recorder), SoftwareSecurityModule(keyset()), confirm_factor=False)
    ex = CardExplorer(off, security_backend="keys")
    assert ex.card_factor_report().to_json()["status"] == "off" and recorder.sent == []
    ex.auth("RK1_DDF1")  # follows the rule (first-8, this card's) without a check
    assert 0x88 not in [a[1] for a in recorder.sent]


def test_raw_apdu_explains_the_status_word_and_t0_is_handled_by_the_channel() -> None:
    with explorer(protocol="T=0") as (ex, _card, rec):
        reply = ex.apdu("00 A4 00 00 02 DD F1")
        assert reply.sw == 0x9000 and reply.data.startswith(b"\x6f")
        assert [a[:2] for a in rec.sent] == [b"\x00\xa4", b"\x00\xc0"]  # GET RESPONSE sent
        missing = ex.apdu("00A4000002EF99")
        assert (missing.sw, missing.meaning) == (0x6A82, "file not found")
        pin = ex.apdu("0020000003123456")
        assert pin.command == "0020000003******"
        with pytest.raises(ExplorerError, match="not hex"):
            ex.apdu("00A4XY")
        assert ex.card is not None and ex.card.session.current_df is None  # state forgotten


def test_trace_on_and_off_masks_pins(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with explorer(psam=True) as (ex, _card, _rec):
        ex.trace_on(trace)
        ex.read("holder", ["XM"])
        ex.apdu("0020000003123456")
        assert ex.trace_off() == str(trace) and ex.tracing is None
        size = trace.stat().st_size
        ex.read("issuer")
        assert trace.stat().st_size == size  # off: nothing more written
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    opened = [e["transport"] for e in lines if e.get("event") == "open"]
    assert opened[0] == "recorder" and len(opened) == 2  # the card's and the SAM's channel
    commands = [e["command"] for e in lines if "command" in e]
    assert "0020000003******" in commands and "123456" not in trace.read_text()
    assert any(c.startswith("0082") for c in commands)  # the authentication is traced
    assert any(c.startswith("80DE") for c in commands)  # and the SAM's commands


def test_decode_is_lenient_per_item() -> None:
    holder = b"".join(r for _, r in sample().holder.to_records())
    items = decode_file(ef("holder"), holder)
    assert [(i.item.code, i.json_value) for i in items][:2] == [("XM", "李堃"), ("XB", 1)]
    bad_date = bytes.fromhex("0E04") + bytes.fromhex("1985AA17")
    (item,) = decode_file(ef("holder"), bad_date)
    assert item.note.startswith("raw: ") and item.value == "0E041985AA17"
    flags = decode_file(ef("inpatient_index"), bytes.fromhex("00FF"))
    assert [i.json_value for i in flags] == [True, False]
    record = sample().inpatient[0]
    assert record is not None
    part = record.to_bytes()[100:200]
    with pytest.raises(ExplorerError, match="cover no whole item"):
        decode_file(ef("DF03/EE01"), part[:1], offset=100)
    whole = decode_file(ef("DF03/EE01"), record.to_bytes())
    assert {i.item.code for i in whole} >= {"ZYJYXXQM", "ZYSAMKZS"}
    with pytest.raises(ExplorerError, match="no item with tag 63"):
        decode_file(ef("holder"), bytes.fromhex("630100"))
    with pytest.raises(ExplorerError, match="announces 5 bytes, 1 remain"):
        decode_file(ef("holder"), bytes.fromhex("0B05AA"))
