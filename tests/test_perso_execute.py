"""Personalization over the in-process transport: success, refusals, erase, no retries."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthcard_apdu import model
from healthcard_apdu.card.factor import FactorNotConfirmed
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.perso.errors import (
    AuthenticationRefused,
    CardNotBlank,
    EraseRefused,
    ReadBackMismatch,
    StepFailed,
)
from healthcard_apdu.perso.execute import erase_card, personalize
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.perso.verify import verify_card
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.fs import Df
from healthcard_apdu.transport import InProcessTransport
from perso_support import (
    CARD_FACTOR,
    TapTransport,
    blank_card,
    issued_card,
    profile_variant,
    resident_for,
    software,
)

NATIONAL = load_profile("national-32k")


def test_national_personalization_in_process() -> None:
    card = blank_card()
    seen: list[tuple[int, int, str]] = []
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        result = personalize(tap, NATIONAL, model.sample_resident(), software(),
                             progress=lambda d, t, n: seen.append((d, t, n)))
        report = verify_card(link, NATIONAL, model.sample_resident(), software())
    minimum = result.minimum  # the formula over the record as written (EE/ED signed)
    assert result.apdus == len(tap.commands) == minimum.apdus == result.plan_apdus
    assert result.bytes == minimum.bytes
    assert result.card_factor == CARD_FACTOR.hex().upper() and not result.erased
    assert [d for d, _, _ in seen] == list(range(1, result.steps + 1))
    assert {t for _, t, _ in seen} == {result.steps}
    assert seen[-1][2] == "END ISSUANCE"
    assert result.read_back == tap.count("00B2") + tap.count("00B0") > 0
    assert card.image.issued
    assert report.ok, report.problems()
    assert report.files_checked == 16  # 22 files minus 6 empty EE/ED slots
    assert {k.role for k in report.keys if k.result == "ok"} >= {
        "RK1_DDF1", "UK1_DDF1", "IRK_DDF1", "STK_DDF1", "MK_MF", "MK_DF03", "UK3_DF02"}


def test_compact_profile_with_3des_on_an_8k_card() -> None:
    compact = load_profile("compact-8k")
    card = blank_card(BlockCipher.TDES, capacity=8192)
    resident = resident_for("compact-8k")
    with InProcessTransport(card) as link:
        result = personalize(link, compact, resident, software(BlockCipher.TDES))
        report = verify_card(link, compact, resident, software(BlockCipher.TDES))
    assert result.apdus == result.minimum.apdus
    assert report.ok, report.problems()
    ddf1 = card.image.mf.children[0xDDF1]
    assert isinstance(ddf1, Df) and 0xEF07 not in ddf1.children  # no photo file
    # the national layout would not fit this card
    with InProcessTransport(blank_card(capacity=8192)) as link, pytest.raises(
        StepFailed, match="6A84"
    ):
        personalize(link, NATIONAL, model.sample_resident(), software())


def test_t0_card_needs_get_response_but_gives_the_same_card() -> None:
    card = blank_card(protocol="T=0")
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        result = personalize(tap, NATIONAL, model.sample_resident(), software())
        report = verify_card(link, NATIONAL, model.sample_resident(), software())
    selects_of_dfs = 2  # SELECT DDF1 twice: FCI via 61xx + GET RESPONSE
    assert result.apdus == result.plan_apdus + selects_of_dfs == tap.count("00C0") + \
        result.plan_apdus
    assert report.ok, report.problems()


def test_issued_card_is_refused_without_erase() -> None:
    card = issued_card()
    before = card.apdu_count
    with InProcessTransport(card) as link, pytest.raises(CardNotBlank, match="--erase"):
        personalize(link, NATIONAL, model.sample_resident(), software())
    assert card.apdu_count - before == 1  # only the CREATE FILE 3F00 that said 6985


def test_partly_personalized_card_is_refused_without_erase() -> None:
    card = blank_card()
    with InProcessTransport(card) as link:
        cut = TapTransport(link, on_response=_fail_after(30))
        with pytest.raises(StepFailed):
            personalize(cut, NATIONAL, model.sample_resident(), software())
        with pytest.raises(CardNotBlank, match="partly personalized"):
            personalize(link, NATIONAL, model.sample_resident(), software())
        result = personalize(link, NATIONAL, model.sample_resident(), software(), erase=True)
    assert result.erased and card.image.issued


def _fail_after(n: int):  # type: ignore[no-untyped-def]
    """A response hook that answers 6581 from the n-th APDU on (the card still executes)."""
    count = [0]

    def hook(_command: bytes, response: bytes) -> bytes:
        count[0] += 1
        return bytes.fromhex("6581") if count[0] >= n else response

    return hook


def test_erase_with_the_master_key_and_issue_again() -> None:
    card = issued_card()
    other = model.sample_resident()
    other = other.__class__(**{**{f: getattr(other, f) for f in other.__dataclass_fields__},
                               "holder": other.holder.replace(name="王小明")})
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        result = personalize(tap, NATIONAL, other, software(), erase=True)
        report = verify_card(link, NATIONAL, other, software())
    assert result.erased and report.ok, report.problems()
    # the factor is confirmed first (INTERNAL AUTHENTICATE, no try counter), then challenge,
    # MK_MF, ERASE DF
    erase = tap.commands.index(bytes.fromhex("800E000000"))
    assert [c[:2].hex().upper() for c in tap.commands[erase - 2 : erase]] == ["0084", "0082"]
    assert [c[:2] for c in tap.commands[:erase]].count(b"\x00\x88") == 1
    assert result.factor_check is not None and result.factor_check.confirmed is not None
    assert result.apdus == result.plan_apdus + 3 + erase - 2


def test_erase_on_a_blank_card_is_skipped() -> None:
    card = blank_card()
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        result = personalize(tap, NATIONAL, model.sample_resident(), software(), erase=True)
    assert not result.erased
    assert tap.count("800E") == 0 and tap.count("0082") == 1 + 4
    # challenge, MK_MF (6A88), then the check for a torn issuance: SELECT MF, WRITE KEY of
    # the MF master key (6A82: no MF key file, nothing written), SELECT DDF1 (not there)
    assert result.steps == result.plan_apdus + 5


def test_wrong_keys_are_found_before_the_master_key_spends_a_try() -> None:
    card = issued_card()
    strangers = software(variant=1)  # another key set: nothing of the card matches
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        with pytest.raises(FactorNotConfirmed, match="no try spent"):
            personalize(tap, NATIONAL, model.sample_resident(), strangers, erase=True)
        with pytest.raises(FactorNotConfirmed):
            erase_card(tap, NATIONAL, strangers)
    assert tap.count("0082") == 0 and tap.count("800E") == 0 and tap.count("0088") == 4
    assert card.image.issued


def test_wrong_master_key_stops_after_one_authentication() -> None:
    """With the confirmation off, a wrong key spends exactly one try and is not retried."""
    card = issued_card()
    strangers = software(variant=1)  # another key set: the card's MK_MF does not match
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        with pytest.raises(AuthenticationRefused) as caught:
            personalize(tap, NATIONAL, model.sample_resident(), strangers, erase=True,
                        confirm_factor=False)
    assert tap.count("0082") == 1 and tap.count("800E") == 0
    assert len(tap.commands) == 2  # GET CHALLENGE, EXTERNAL AUTHENTICATE; nothing after
    exc = caught.value
    assert exc.sw == 0x63C2 and exc.tries_left == 2
    assert "MK_MF" in str(exc) and "not retried" in str(exc) and "63C2" in str(exc)
    assert card.image.issued
    with InProcessTransport(card) as link:  # the counter went down by exactly one
        tap = TapTransport(link)
        with pytest.raises(AuthenticationRefused, match="63C1"):
            erase_card(tap, NATIONAL, strangers, confirm_factor=False)
        assert tap.count("0082") == 1


def test_refused_read_key_is_not_retried() -> None:
    card = blank_card()

    def corrupt_auth(command: bytes) -> bytes:
        if command[:2] == b"\x00\x82":
            return command[:5] + bytes([command[5] ^ 0xFF]) + command[6:]
        return command

    with InProcessTransport(card) as link:
        tap = TapTransport(link, on_command=corrupt_auth)
        with pytest.raises(AuthenticationRefused) as caught:
            personalize(tap, NATIONAL, model.sample_resident(), software())
    assert tap.count("0082") == 1
    assert tap.commands[-1][:2] == b"\x00\x82"  # nothing was sent after the refusal
    assert caught.value.tries_left == 14 and "RK1_DDF1" in caught.value.step


def test_read_back_mismatch_names_the_file() -> None:
    card = blank_card()

    def corrupt(command: bytes, response: bytes) -> bytes:
        if command[:2] == b"\x00\xb2" and command[3] == (8 << 3 | 4):  # DDF1/EF08 via SFI
            return bytes([response[0] ^ 1]) + response[1:]
        return response

    with InProcessTransport(card) as link, pytest.raises(ReadBackMismatch) as caught:
        personalize(TapTransport(link, on_response=corrupt), NATIONAL, model.sample_resident(),
                    software())
    assert caught.value.step == "DDF1/EF08: READ RECORD 1 (read-back)"
    assert "DDF1/EF08" in str(caught.value)
    assert not card.image.issued  # stopped before END ISSUANCE


def test_profile_without_erase_right_refuses_erase(tmp_path: Path) -> None:
    production = profile_variant("national-32k", {
        'name = "MF"\nsize = 0xFFFF\ncreate = 0xF0\nerase = 0xAA':
            'name = "MF"\nsize = 0xFFFF\ncreate = 0xF0\nerase = 0xEF',
        "production = false": "production = true",
    }, tmp_path)
    assert production.production
    card = issued_card()
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        with pytest.raises(EraseRefused, match="never"):
            personalize(tap, production, model.sample_resident(), software(), erase=True)
    assert tap.commands == []


def test_transport_failure_names_the_step() -> None:
    card = blank_card()
    with InProcessTransport(card) as link:
        tap = TapTransport(link)
        card.faults.remove_at = card.apdu_count + 40
        with pytest.raises(StepFailed, match=r"step 40/\d+ .*no answer") as caught:
            personalize(tap, NATIONAL, model.sample_resident(), software(), reset=False)
    assert caught.value.sw is None and caught.value.__cause__ is not None


def test_card_image_survives_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    SimCard.blank(CARD_FACTOR, path=path, durable=False)
    with InProcessTransport(SimCard.open(path, durable=False)) as link:
        personalize(link, NATIONAL, model.sample_resident(), software())
    with InProcessTransport(SimCard.open(path)) as link:
        assert verify_card(link, NATIONAL, model.sample_resident(), software()).ok


def test_issuance_torn_before_the_master_key_is_recovered_by_erase() -> None:
    """Before: "this card cannot be erased" from ``personalize --erase``, while the batch
    issuer recovered the same image. Now one recovery path: the MF master key is written,
    then the MF is erased with it, and the card is issued and verifies."""
    card = blank_card()
    with InProcessTransport(card) as link:
        card.faults.remove_at = card.apdu_count + 3  # pulled before WRITE KEY MK_MF
        with pytest.raises(StepFailed, match="WRITE KEY MK_MF"):
            personalize(link, NATIONAL, model.sample_resident(), software())
        card.insert()
        tap = TapTransport(link)
        result = personalize(tap, NATIONAL, model.sample_resident(), software(), erase=True)
        assert result.erased
        assert tap.count("800E") == 1  # erased with the master key it just received
        assert verify_card(link, NATIONAL, model.sample_resident(), software()).ok


def test_clinical_records_are_signed_and_verify_on_read() -> None:
    """EE/ED records of the resident carry the module's SM2 signature on the card, which the
    card layer verifies on read; the same card fails verify once a data byte changes."""
    from healthcard_apdu.card import HealthCard, SignatureInvalid
    from healthcard_apdu.card.signing import valid_signature

    card = blank_card()
    resident = model.sample_resident()
    with InProcessTransport(card) as link:
        personalize(link, NATIONAL, resident, software())
        reader = HealthCard(link, software())
        record = reader.read_inpatient(1)
        assert valid_signature(record)
        assert reader.read_outpatient(1).to_bytes()[:3013] == (
            resident.outpatient[0].to_bytes()[:3013] if resident.outpatient[0] else b"")
    # flip one data byte of EE01 in the card's EEPROM: the signature no longer verifies
    ee01 = card.image.mf.children[0xDDF1].children[0xDF03].children[0xEE01]
    ee01.data[10] ^= 0x01
    with InProcessTransport(card) as link:
        with pytest.raises(SignatureInvalid, match="DF03/EE01"):
            HealthCard(link, software()).read_inpatient(1)
        report = verify_card(link, NATIONAL, resident, software())
    assert not report.ok
    assert any(d.file == "DF03/EE01" for d in report.differences)
