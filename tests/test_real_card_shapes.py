"""Every card shape seen in the public reader logs reads with the default settings: the real ATR,
T=0 with and without whole-record READ RECORD, an MF that answers a bare 9000, a DDF1 FCI
without A5, a non-decimal issuer code, unsigned EE/ED records -- and through pcscd + vpcd with
the PSAM PIN at the MF. The try counters are checked before and after."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest import ServeOnVpcd
from healthcard_apdu.apdu.tlv import parse_fci
from healthcard_apdu.card import FactorStatus, HealthCard, SignatureMissing, SignatureStatus
from healthcard_apdu.cli import main
from healthcard_apdu.conformance import ProfileInfo, RunOptions, run_suite
from healthcard_apdu.model import sample_resident
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim import SimCard, SimSam
from healthcard_apdu.sim.image import save_image
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport import Channel, InProcessTransport
from perso_support import TapTransport
from test_real_cards import (
    PROFILE,
    TRUE_FACTOR,
    _quirks,
    counters,
    full,
    keys,
    module,
    real_card,
)

REAL_FKJGDM = bytes.fromhex("00022483AFFFFFFFFFFFFF")


@pytest.fixture
def tap() -> Iterator[Callable[[SimCard], TapTransport]]:
    """``tap(card)``: a recording transport over the card (closed afterwards)."""
    opened: list[TapTransport] = []

    def make(card: SimCard) -> TapTransport:
        opened.append(TapTransport(InProcessTransport(card)))
        return opened[-1]

    yield make
    for transport in opened:
        transport.close()

SHAPES: dict[str, dict[str, Any]] = {
    "real-atr": {},
    "T=0": {"protocol": "T=0"},
    "T=0, whole record for Le=00": {"protocol": "T=0", "record_le00": True},
    "MF bare 9000, DDF1 FCI without A5": {"bare_select": frozenset({0x3F00}),
                                           "fci_without_a5": frozenset({0xDDF1})},
}


def _card(shape: dict[str, Any]) -> SimCard:
    options = dict(shape)
    protocol = options.pop("protocol", "T=1")
    return real_card(protocol=protocol, **options)


def test_the_quirks_at_the_apdu_level() -> None:
    card = _card(SHAPES["MF bare 9000, DDF1 FCI without A5"])
    card.power_on()
    assert card.process(bytes.fromhex("00A40000023F00")) == b"\x90\x00"
    fci = card.process(bytes.fromhex("00A4000002DDF1"))
    parsed = parse_fci(fci[:-2])
    assert fci[-2:] == b"\x90\x00" and parsed is not None
    assert parsed.df_name == b"WS.SYS.DDF01" and parsed.proprietary is None
    card.process(bytes.fromhex("00A4000002EF06"))
    t0 = _card(SHAPES["T=0"])
    t0.power_on()
    le00 = _card(SHAPES["T=0, whole record for Le=00"])
    le00.power_on()
    for c in (t0, le00):
        c.process(bytes.fromhex("00A4000002DDF1"))
        c.process(bytes.fromhex("00A4000002EF05"))
    assert t0.process(bytes.fromhex("00B2010400"))[-2:-1] == b"\x6c"  # ISO: wrong length
    reply = le00.process(bytes.fromhex("00B2010400"))
    assert reply[-2:] == b"\x90\x00" and reply[0] == 0x01  # the whole record, tag 01
    no_rk = real_card(**_quirks(absent_external_keys=frozenset({0x04, 0x84})))
    no_rk.power_on()
    no_rk.process(bytes.fromhex("00A4000002DDF1"))
    assert no_rk.process(bytes.fromhex("0082000411" + "00" * 17)) == b"\x6a\x88"
    assert full(no_rk)  # 6A88 counts nothing


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_reads_with_the_default_settings(name: str, tap: Any) -> None:
    card = _card(SHAPES[name])
    before = counters(card)
    transport = tap(card)
    health = HealthCard(Channel(transport), module())
    data = health.read_card()
    assert data.holder == sample_resident().holder
    assert data.addresses == sample_resident().addresses
    check = health.factor_confirmation
    assert check is not None and check.status is FactorStatus.CONFIRMED
    assert health.warnings == []
    # READ RECORD by number asks for the whole record (Le = 00); a strict T=0 card's 6Cxx
    # makes the channel send it again with the exact length
    by_number = [c for c in transport.commands if c[:2] == b"\x00\xb2" and c[3] & 0x07 == 4]
    resent = _resent(transport)
    assert by_number and all(c[-1] == 0x00 for c in by_number if c not in resent)
    assert counters(card) == before


def _resent(transport: Any) -> list[bytes]:
    """READ RECORDs sent again with the length a strict T=0 card asked for (6Cxx)."""
    out = []
    for previous, command in zip(transport.commands, transport.commands[1:], strict=False):
        if previous[:4] == command[:4] and previous[-1] == 0 and command[-1] != 0:
            out.append(command)
    return out


def test_whole_record_cards_need_no_second_read_record(tap: Any) -> None:
    strict, whole = tap(_card(SHAPES["T=0"])), tap(_card(SHAPES["T=0, whole record for Le=00"]))
    HealthCard(Channel(strict), module()).read_addresses()
    HealthCard(Channel(whole), module()).read_addresses()
    assert _resent(strict) and not _resent(whole)


def test_the_old_factor_last_shape_is_confirmed_by_the_other_rule(tap: Any) -> None:
    card = SimCard.blank(TRUE_FACTOR, atr_layout="factor-last")
    card.image.mf = real_card().image.mf  # the same issued file system and keys
    health = HealthCard(Channel(tap(card)), module())
    assert health.read_holder() == sample_resident().holder
    check = health.factor_confirmation
    assert check is not None and check.by_other_rule
    assert check.confirmed is not None and str(check.confirmed.rules[0]) == "last-8"
    assert [n.kind for n in health.warnings] == ["factor"] and full(card)


# --- what issued cards hold --------------------------------------------------------------------


def _with_issuer_code(card: SimCard, raw: bytes) -> SimCard:
    ef05: Any = card.image.mf.children[0xDDF1].children[0xEF05]  # type: ignore[union-attr]
    index = next(i for i, r in enumerate(ef05.records) if r[0] == 0x04)
    ef05.records[index] = bytes((0x04, len(raw))) + raw
    return card


def test_a_non_decimal_issuer_code_is_read_with_a_warning(tap: Any, tmp_path: Path) -> None:
    card = _with_issuer_code(real_card(), REAL_FKJGDM)
    health = HealthCard(Channel(tap(card)), module())
    data = health.read_card()
    assert data.issuer.issuer_code == "00022483A"
    assert data.holder == sample_resident().holder  # the rest of the card is all there
    [notice] = health.warnings
    assert notice.kind == "decode" and notice.path == "DDF1/EF05" and notice.code == "FKJGDM"
    assert notice.shown == "'00022483A'" and notice.raw == "040B" + REAL_FKJGDM.hex().upper()
    assert "DDF1/EF05 record 4: item 4 FKJGDM" in notice.message

    image = tmp_path / "card.json"
    save_image(card.image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keys())))
    result = CliRunner(env={"HEALTHCARD_SAM_PIN": keys().sam_pin}).invoke(
        main, ["read", "--json", "--sim-card", str(image), "--sim-sam", str(sam)])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["DDF1EF05"]["FKJGDM"] == "00022483A"
    [warning] = document["warnings"]
    assert warning["path"] == "DDF1/EF05" and warning["code"] == "FKJGDM"
    assert "warning: DDF1/EF05 record 4: item 4 FKJGDM" in result.stderr
    # what was read cannot be written back as it is: writing stays strict
    back = tmp_path / "back.json"
    back.write_text(json.dumps({"DDF1EF08": document["DDF1EF08"], "DF01EF05": {
        **document["DF01EF05"], "DZLB1": "x"}}), encoding="utf-8")
    result = CliRunner(env={"HEALTHCARD_SAM_PIN": keys().sam_pin}).invoke(
        main, ["write", "--data", str(back), "--sim-card", str(image), "--sim-sam", str(sam)])
    assert result.exit_code == 2 and "DZLB1" in result.stderr


def test_unsigned_field_records(tap: Any, tmp_path: Path) -> None:
    card = real_card()
    health = HealthCard(Channel(tap(card)), module())
    record = sample_resident().inpatient[0]
    assert record is not None
    unsigned = dataclasses.replace(record, inpatient_signature=b"", inpatient_sam_certificate=b"")
    health.write_inpatient(2, unsigned, sign=False)  # as a terminal in the field does
    assert health.read_inpatient(2) == unsigned
    assert health.signatures["DF03/EE02"] is SignatureStatus.UNSIGNED
    strict = HealthCard(Channel(tap(card)), module(), require_signatures=True)
    with pytest.raises(SignatureMissing, match="unsigned"):
        strict.read_inpatient(2)
    assert strict.read_inpatient(1) is not None  # our own issuance is signed
    assert strict.signatures["DF03/EE01"] is SignatureStatus.SIGNED_VALID

    image = tmp_path / "card.json"
    save_image(card.image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keys())))
    runner = CliRunner(env={"HEALTHCARD_SAM_PIN": keys().sam_pin})
    args = ["read", "--json", "--file", "DF03EE", "--sim-card", str(image), "--sim-sam", str(sam)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["signatures"] == {"DF03EE01": "signed-valid",
                                                       "DF03EE02": "unsigned"}
    result = runner.invoke(main, [*args, "--require-signatures"])
    assert result.exit_code == 1 and "DF03/EE02" in result.stderr and "unsigned" in result.stderr
    # verify of our own issuance keeps requiring our signatures: EE02 is not ours
    data = tmp_path / "resident.json"
    resident = dataclasses.replace(sample_resident(),
                                   inpatient=(record, unsigned, None))
    data.write_text(json.dumps(resident.to_json("code"), ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(main, ["verify", "--data", str(data), "--sim-card", str(image),
                                  "--sim-sam", str(sam)])
    assert result.exit_code == 1 and "DF03/EE02" in result.stdout
    assert full(SimCard.open(image))


# --- conformance follows the card-product settings --------------------------------------------


def test_conformance_accepts_a_bare_9000_only_when_the_product_says_so(tap: Any) -> None:
    card = _card(SHAPES["MF bare 9000, DDF1 FCI without A5"])
    required = ProfileInfo.load(PROFILE)
    optional = dataclasses.replace(required, select_fci="optional")
    options = RunOptions(patterns=["HC-FS-00[1-5]"])
    strict = run_suite(tap(card), module(), profile=required, options=options).verdicts()
    lenient = run_suite(tap(card), module(), profile=optional, options=options).verdicts()
    assert strict.pop("HC-FS-001") == "failed" and set(strict.values()) == {"passed"}
    assert set(lenient.values()) == {"passed"}  # DDF1 without A5 passes either way
    assert full(card)


# --- through pcscd + vpcd ----------------------------------------------------------------------


@pytest.mark.pcsc
def test_a_real_shaped_card_and_psam_through_pcscd(
    vpcd_slot: ServeOnVpcd, tmp_path: Path
) -> None:
    card = _with_issuer_code(_card({"protocol": "T=0", "record_le00": True,
                                    "bare_select": frozenset({0x3F00})}), REAL_FKJGDM)
    before = counters(card)
    sam = SimSam(sam_state_from_json({**simulator_sam_document(keys()),
                                      "mf_fci": "6F07840531504159FF"}))
    card_reader = vpcd_slot(card, 0)
    sam_reader = vpcd_slot(sam, 1)
    runner = CliRunner(env={"HEALTHCARD_SAM_PIN": keys().sam_pin})
    result = runner.invoke(main, ["read", "--json", "--factor-rule", "last-8", "--reader",
                                  card_reader, "--sam-reader", sam_reader])
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["DDF1EF06"]["XM"] == sample_resident().holder.name
    assert document["DDF1EF05"]["FKJGDM"] == "00022483A"
    assert sorted(w["kind"] for w in document["warnings"]) == ["decode", "factor"]
    result = runner.invoke(main, ["doctor", "--json", "--reader", card_reader, "--sam-reader",
                                  sam_reader])
    check = next(c for c in json.loads(result.stdout) if c["name"] == "card factor")
    assert check["status"] == "ok" and TRUE_FACTOR.hex().upper() in check["detail"]
    assert counters(card) == before
    # another issuer's keys (its simulated PSAM in process): refused before any try
    other = tmp_path / "other-sam.json"
    other.write_text(json.dumps(simulator_sam_document(keys(1))))
    wrong = runner.invoke(main, ["read", "--reader", card_reader, "--sim-sam", str(other)],
                          env={"HEALTHCARD_SAM_PIN": keys(1).sam_pin})
    assert wrong.exit_code == 4 and "card factor not confirmed" in wrong.stderr
    assert counters(card) == before


def test_simulated_psam_over_a_transport_with_pin_at_the_mf() -> None:
    sam = SimSam(sam_state_from_json(simulator_sam_document(keys())))
    transport = InProcessTransport(sam)
    from healthcard_apdu.card import Sam

    psam = Sam(Channel(transport), pin=keys().sam_pin)
    assert psam.sm2_sign_hash(bytes(32))  # the PIN verified at the MF holds in DF01
    assert psam.tries_left() == 3
