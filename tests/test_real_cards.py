"""Cards as they are really out there (issue 10): the card factor is confirmed before any try is
spent, and no try counter ever goes down -- whatever the rule, the keys or the factor.

The cards have the real family's ATR shape (13 historical bytes, the factor first) and keys
diversified with the true factor, given explicitly to the personalization. Every scenario reads
the try counters of every key on the card before and after.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from healthcard_apdu.card import (
    CardNotGenuine,
    FactorNotConfirmed,
    FactorStatus,
    HealthCard,
    KeyNotPresent,
    confirm_card_factor,
    internal_authenticate,
)
from healthcard_apdu.cli import main
from healthcard_apdu.conformance import ProfileInfo, RunOptions, Status, run_suite
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.model import sample_resident
from healthcard_apdu.perso.batch_issuer import PersoCardIssuer
from healthcard_apdu.perso.execute import personalize
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.perso.verify import verify_card
from healthcard_apdu.security import (
    DEFAULT_ROLES,
    CardFactors,
    FactorRule,
    KeySet,
    SoftwareSecurityModule,
)
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.psam import PsamSecurityModule
from healthcard_apdu.sim import SimCard, SimSam
from healthcard_apdu.sim.image import Quirks, decode_image, encode_image, save_image
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport import Channel, InProcessTransport
from perso_support import TapTransport

#: The factor of the real family in public reader logs; the sim puts 5 more bytes after it.
TRUE_FACTOR = bytes.fromhex("0081866B00001015")
LAST_8 = bytes.fromhex("0010154843019000")  # what "last 8" gives on that ATR: not the factor
#: A factor no known rule takes from the ATR (given explicitly at issuance).
ODD_FACTOR = bytes.fromhex("A1B2C3D4E5F60718")
PASSPHRASE = "real-cards-passphrase"
PROFILE = "national-32k"


def keys(variant: int = 0) -> KeySet:
    """Key set 0 issued the cards; key set 1 is another issuer's."""
    return _keys(variant)


@functools.cache
def _keys(variant: int) -> KeySet:
    return KeySet.generate(DEFAULT_ROLES, BlockCipher.SM4)


def module(variant: int = 0) -> SoftwareSecurityModule:
    return SoftwareSecurityModule(keys(variant))


@functools.cache
def _image(factor: bytes, quirk_key: tuple[Any, ...], protocol: str) -> bytes:
    card = SimCard.blank(TRUE_FACTOR, protocol=protocol)
    with InProcessTransport(card) as transport:
        personalize(transport, load_profile(PROFILE), sample_resident(), module(),
                    card_factor=factor)
    # the card family's behaviour (e.g. no RK keys) applies once the card is in the field
    card.image.quirks = Quirks(**_quirks(**dict(quirk_key)))
    return encode_image(card.image)


def real_card(factor: bytes = TRUE_FACTOR, protocol: str = "T=1", **quirks: Any) -> SimCard:
    """A personalized card with the real family's ATR; keys diversified with ``factor``."""
    key = tuple(sorted((k, frozenset(v) if isinstance(v, set) else v) for k, v in quirks.items()))
    return SimCard(decode_image(_image(factor, key, protocol)))


def _quirks(**values: Any) -> dict[str, Any]:
    return {k: set(v) if isinstance(v, frozenset) else v for k, v in values.items()}


def counters(card: SimCard) -> dict[str, int]:
    """Tries left of every key with a counter, by DF FID / type / KID."""
    out: dict[str, int] = {}
    for df in card.image.mf.walk():
        if df.keyfile is None:
            continue
        for key in df.keyfile.keys:
            if key.has_counter:
                out[f"{df.fid:04X}/{key.type_byte:02X}/{key.kid:02X}"] = key.tries_left
    return out


def full(card: SimCard) -> bool:
    image_keys = [k for df in card.image.mf.walk() if df.keyfile for k in df.keyfile.keys]
    return all(k.tries_left == k.max_tries for k in image_keys if k.has_counter)


@pytest.fixture
def tap() -> Iterator[Any]:
    """``tap(card)``: a recording transport over the card (closed afterwards)."""
    opened: list[TapTransport] = []

    def make(card: SimCard) -> TapTransport:
        transport = TapTransport(InProcessTransport(card))
        opened.append(transport)
        return transport

    yield make
    for transport in opened:
        transport.close()


# --- the library: HealthCard ---------------------------------------------------------------


def test_the_simulated_atr_has_the_real_family_shape() -> None:
    card = real_card()
    atr = card.atr()
    historical = atr[3 : 3 + (atr[1] & 0x0F)]
    assert len(historical) == 13 and historical[:8] == TRUE_FACTOR
    assert historical[-8:] == LAST_8  # the two rules no longer agree by accident


def test_default_rule_confirms_the_first_8_bytes_and_reads_everything(tap: Any) -> None:
    card = real_card()
    before = counters(card)
    transport = tap(card)
    health = HealthCard(Channel(transport), module())
    data = health.read_card()
    assert data.holder.name == sample_resident().holder.name
    check = health.factor_confirmation
    assert check is not None and check.status is FactorStatus.CONFIRMED
    assert check.confirmed is not None and check.confirmed.factor == TRUE_FACTOR
    assert [t.matched for t in check.tries] == [True]  # one INTERNAL AUTHENTICATE
    assert transport.count("0088") == 1
    assert health.warnings == []
    assert counters(card) == before and full(card)


def test_wrong_rule_is_corrected_by_internal_authenticate_without_spending_a_try(
    tap: Any,
) -> None:
    card = real_card()
    before = counters(card)
    transport = tap(card)
    notices: list[str] = []
    health = HealthCard(Channel(transport), module(), factor_rule="last-8",
                        on_notice=lambda n: notices.append(n.message))
    health.read_holder()
    health.write_contact_info(sample_resident().card_contact)
    check = health.factor_confirmation
    assert check is not None and check.by_other_rule
    assert [(t.candidate.factor, t.matched) for t in check.tries] == [
        (LAST_8, False), (TRUE_FACTOR, True)]
    assert len(notices) == 1 and "last-8" in notices[0] and "not confirmed" in notices[0]
    assert counters(card) == before and full(card)
    # the first EXTERNAL AUTHENTICATE came after both INTERNAL AUTHENTICATEs
    first_auth = next(i for i, c in enumerate(transport.commands) if c[:2] == b"\x00\x82")
    assert [c[:2] for c in transport.commands[:first_auth]].count(b"\x00\x88") == 2


@pytest.mark.parametrize("scenario", ["wrong-keys", "factor-matching-no-rule"])
@pytest.mark.parametrize("rule", ["first-8", "last-8"])
def test_nothing_confirmed_stops_before_any_try(tap: Any, scenario: str, rule: str) -> None:
    card = real_card(ODD_FACTOR if scenario == "factor-matching-no-rule" else TRUE_FACTOR)
    security = module(1) if scenario == "wrong-keys" else module()
    before = counters(card)
    transport = tap(card)
    health = HealthCard(Channel(transport), security, factor_rule=rule)
    assert health.read_issuer().issue_date  # free reads need no factor
    for attempt in (health.read_holder, health.read_card,
                    lambda: health.write_contact_info(sample_resident().card_contact)):
        with pytest.raises(FactorNotConfirmed) as info:
            attempt()
        message = str(info.value)
        assert f"first-8 {TRUE_FACTOR.hex().upper()}" in message
        assert f"last-8 {LAST_8.hex().upper()}" in message and "no try spent" in message
    assert info.value.confirmation.status is FactorStatus.NOT_CONFIRMED
    assert transport.count("0082") == 0 and transport.count("04DC") == 0
    assert transport.count("0088") == 2  # each candidate once; the result is kept
    assert counters(card) == before and full(card)


def test_a_factor_given_explicitly_is_confirmed_and_used(tap: Any) -> None:
    card = real_card(ODD_FACTOR)
    before = counters(card)
    health = HealthCard(Channel(tap(card)), module(), card_factor=ODD_FACTOR)
    assert health.read_holder().name
    check = health.factor_confirmation
    assert check is not None and check.rule == FactorRule("fixed", value=ODD_FACTOR)
    assert check.confirmed is not None and check.confirmed.factor == ODD_FACTOR
    assert counters(card) == before


def test_confirmation_impossible_follows_the_rule_and_says_so_once(tap: Any) -> None:
    card = real_card(**_quirks(absent_internal_keys=frozenset({0x00, 0x04})))
    before = counters(card)
    health = HealthCard(Channel(tap(card)), module())
    health.read_holder()
    health.read_addresses()
    health.reset()  # another session with the same card: the check runs again, once
    health.read_clinical()
    check = health.factor_confirmation
    assert check is not None and check.status is FactorStatus.IMPOSSIBLE
    assert "6A88" in check.reason
    factor_notices = [n for n in health.warnings if n.kind == "factor"]
    assert len(factor_notices) == 2 and "cannot be confirmed" in factor_notices[0].message
    assert counters(card) == before


def test_a_module_without_the_internal_key_cannot_confirm(tap: Any) -> None:
    card = real_card()
    without = KeySet(keys().algorithm, {r: k for r, k in keys().keys.items() if r != "IRK_DDF1"},
                     keys().sam_pin, keys().sm2_private, keys().certificate)
    health = HealthCard(Channel(tap(card)), SoftwareSecurityModule(without))
    health.read_holder()
    check = health.factor_confirmation
    assert check is not None and check.status is FactorStatus.IMPOSSIBLE
    assert "security module has no IRK_DDF1" in check.reason
    assert full(card)


def test_confirmation_off_sends_no_internal_authenticate(tap: Any) -> None:
    card = real_card()
    transport = tap(card)
    health = HealthCard(Channel(transport), module(), confirm_factor=False)
    health.read_holder()
    assert transport.count("0088") == 0
    check = health.factor_confirmation
    assert check is not None and check.status is FactorStatus.OFF and full(card)


def test_confirmation_through_a_psam(tap: Any) -> None:
    card = real_card()
    sam = SimSam(sam_state_from_json(simulator_sam_document(keys())))
    psam = PsamSecurityModule(Channel(InProcessTransport(sam)), pin=keys().sam_pin)
    health = HealthCard(Channel(tap(card)), psam, factor_rule="last-8")
    assert health.read_holder().name
    check = health.factor_confirmation
    assert check is not None and check.confirmed is not None
    assert check.confirmed.factor == TRUE_FACTOR and full(card)
    other = SimSam(sam_state_from_json(simulator_sam_document(keys(1))))
    wrong = PsamSecurityModule(Channel(InProcessTransport(other)), pin=keys(1).sam_pin)
    with pytest.raises(FactorNotConfirmed):
        HealthCard(Channel(tap(card)), wrong).read_holder()
    assert full(card)


def test_key_not_on_the_card_is_named_and_spends_nothing(tap: Any) -> None:
    card = real_card(**_quirks(absent_external_keys=frozenset({0x04, 0x84})))
    before = counters(card)
    health = HealthCard(Channel(tap(card)), module())
    assert health.read_issuer().card_number  # free
    with pytest.raises(KeyNotPresent, match="key RK1_DDF1 not present on this card") as info:
        health.read_holder()
    assert info.value.sw == 0x6A88 and info.value.key == "RK1_DDF1"
    with pytest.raises(KeyNotPresent, match="RK1_DF01"):
        health.read_addresses()
    health.write_contact_info(sample_resident().card_contact)  # UK keys are there
    report = verify_card(tap(card), load_profile(PROFILE), sample_resident(), module())
    rk = next(k for k in report.keys if k.role == "RK1_DDF1")
    assert rk.sw == 0x6A88 and "key not present on this card" in str(rk)
    assert counters(card) == before


def test_prove_genuine_for_the_kiosk(tap: Any) -> None:
    card = real_card()
    health = HealthCard(Channel(tap(card)), module())
    first, second = health.prove_genuine(), health.prove_genuine()
    assert first.genuine and second.genuine and first.challenge != second.challenge
    assert first.factor == TRUE_FACTOR and first.key == "IRK_DDF1"
    clone = HealthCard(Channel(tap(card)), module(1))  # a card of another key set
    with pytest.raises(CardNotGenuine, match="not genuine"):
        clone.prove_genuine()
    silent = real_card(**_quirks(absent_internal_keys=frozenset({0x00, 0x04})))
    with pytest.raises(CardNotGenuine, match="cannot prove"):
        HealthCard(Channel(tap(silent)), module()).prove_genuine()
    assert full(card) and full(silent)


def test_the_low_level_api_on_a_bare_channel(tap: Any) -> None:
    card = real_card()
    channel = Channel(tap(card))
    check = confirm_card_factor(channel, module(), rule="last-8")
    assert check.status is FactorStatus.CONFIRMED and check.factor == TRUE_FACTOR
    assert [c.label for c in check.candidates] == [
        f"last-8 {LAST_8.hex().upper()}", f"first-8 {TRUE_FACTOR.hex().upper()}"]
    assert check.to_json()["confirmed"]["rules"] == ["first-8"]
    # DDF1 is current now: one more INTERNAL AUTHENTICATE, checked by the module
    result = internal_authenticate(channel, module(), CardFactors(TRUE_FACTOR,
                                                                  check.city_factor))
    assert result.genuine and result.sw == 0x9000 and len(result.response) == 8
    wrong = internal_authenticate(channel, module(), CardFactors(LAST_8, check.city_factor))
    assert wrong.answered and not wrong.genuine


# --- perso: personalize --erase, verify, batch -----------------------------------------------


@pytest.mark.parametrize("scenario", ["wrong-keys", "factor-matching-no-rule"])
def test_erase_and_verify_refuse_before_any_try(tap: Any, scenario: str) -> None:
    card = real_card(ODD_FACTOR if scenario == "factor-matching-no-rule" else TRUE_FACTOR)
    security = module(1) if scenario == "wrong-keys" else module()
    profile = load_profile(PROFILE)
    before = counters(card)
    transport = tap(card)
    with pytest.raises(FactorNotConfirmed):
        personalize(transport, profile, sample_resident(), security, erase=True)
    with pytest.raises(FactorNotConfirmed):
        verify_card(transport, profile, sample_resident(), security)
    issuer = PersoCardIssuer(profile, security)
    with pytest.raises(FactorNotConfirmed):
        issuer.erase(transport)
    assert issuer.inspect(transport).profile_version is None  # not "ours"
    assert transport.count("0082") == 0
    assert counters(card) == before and full(card)


def test_erase_with_a_wrong_rule_uses_the_confirmed_factor(tap: Any) -> None:
    card = real_card()
    profile = load_profile(PROFILE).with_factor_rule("last-8")
    transport = tap(card)
    report = verify_card(transport, profile, sample_resident(), module())
    assert report.ok, report.problems()
    assert report.factor_check is not None and report.factor_check.by_other_rule
    assert full(card)
    # erase with the confirmed factor, then issue with the product's (wrong) rule as told
    result = personalize(transport, profile, sample_resident(), module(), erase=True)
    assert result.erased and result.factor_check is not None
    assert result.factor_check.factor == TRUE_FACTOR
    assert result.card_factor == LAST_8.hex().upper()
    assert PersoCardIssuer(profile, module()).inspect(transport).profile_version == PROFILE


def test_verify_with_the_explicit_factor(tap: Any) -> None:
    card = real_card(ODD_FACTOR)
    report = verify_card(tap(card), load_profile(PROFILE), sample_resident(), module(),
                         card_factor=ODD_FACTOR)
    assert report.ok, report.problems()
    assert report.card_factor == ODD_FACTOR.hex().upper() and full(card)


# --- conformance -----------------------------------------------------------------------------


def test_conformance_refuses_to_start_with_an_unconfirmed_factor(tap: Any) -> None:
    card = real_card()
    transport = tap(card)
    run = run_suite(transport, module(1), profile=ProfileInfo.load(PROFILE),
                    options=RunOptions(groups=["auth", "atr"]))
    assert "card factor not confirmed" in run.setup_error
    assert {r.status for r in run.results} == {Status.ERROR}
    assert transport.count("0082") == 0 and full(card)


def test_conformance_follows_the_product_rule(tap: Any) -> None:
    card = real_card()
    good = run_suite(tap(card), module(), profile=ProfileInfo.load(PROFILE),
                     options=RunOptions(patterns=["HC-ATR-002", "HC-AUTH-00*"]))
    assert good.passed and good.factor_check is not None
    assert good.factor_check["status"] == "confirmed"
    wrong = run_suite(tap(card), module(), profile=ProfileInfo.load(PROFILE),
                      options=RunOptions(patterns=["HC-ATR-002", "HC-AUTH-00*"],
                                         factor_rule=FactorRule.parse("last-8")))
    verdicts = wrong.verdicts()
    assert verdicts.pop("HC-ATR-002") == "failed"  # the factor is not where the rule says
    assert set(verdicts.values()) == {"passed"}  # the cases use the confirmed factor
    assert full(card)


# --- the command line ------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for variant in (0, 1):
        sam = tmp_path / f"sam{variant}.json"
        sam.write_text(json.dumps(simulator_sam_document(keys(variant))))
        out[f"sam{variant}"] = sam
        key_file = tmp_path / f"keys{variant}.json"
        keys(variant).save(key_file, PASSPHRASE, scrypt_n=2**10)
        out[f"keys{variant}"] = key_file
    data = tmp_path / "resident.json"
    data.write_text(json.dumps(sample_resident().to_json("code"), ensure_ascii=False))
    out["data"] = data
    out["dir"] = tmp_path
    return out


def _image_file(files: dict[str, Path], card: SimCard, name: str = "card.json") -> Path:
    path = files["dir"] / name
    save_image(card.image, path, durable=False)
    return path


def _cli(*args: str, variant: int = 0) -> tuple[int, str, str]:
    env = {"HEALTHCARD_SAM_PIN": keys(variant).sam_pin, "HEALTHCARD_KEYS_PASSPHRASE": PASSPHRASE}
    result = CliRunner(env=env).invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def _counters_of(path: Path) -> dict[str, int]:
    return counters(SimCard.open(path))


@pytest.mark.parametrize("scenario", ["wrong-keys", "factor-matching-no-rule"])
def test_cli_commands_refuse_before_any_try(files: dict[str, Path], scenario: str) -> None:
    odd = scenario == "factor-matching-no-rule"
    variant = 1 if scenario == "wrong-keys" else 0
    image = _image_file(files, real_card(ODD_FACTOR if odd else TRUE_FACTOR))
    before = _counters_of(image)
    sim = ["--sim-card", str(image)]
    sam = ["--sim-sam", str(files[f"sam{variant}"])]
    key_file = ["--keys", str(files[f"keys{variant}"])]
    runs = {
        "read": _cli("read", *sim, *sam, variant=variant),
        "read last-8": _cli("read", "--factor-rule", "last-8", *sim, *sam, variant=variant),
        "write": _cli("write", "--data", str(files["data"]), *sim, *sam, variant=variant),
        "verify": _cli("verify", "--data", str(files["data"]), *sim, *sam, variant=variant),
        "personalize --erase": _cli("personalize", "--erase", "--data", str(files["data"]),
                                    *sim, *key_file, variant=variant),
    }
    for name, (code, _out, err) in runs.items():
        assert code == 4, (name, err)
        assert "card factor not confirmed" in err, (name, err)
        assert f"first-8 {TRUE_FACTOR.hex().upper()}" in err and "no try spent" in err, name
    code, out, _ = _cli("doctor", "--json", *sim, *sam, variant=variant)
    check = next(c for c in json.loads(out) if c["name"] == "card factor")
    assert code == 3 and check["status"] == "fail" and "no match" in check["detail"]
    assert _counters_of(image) == before
    assert all(v == before[k] for k, v in _counters_of(image).items())


def test_cli_with_the_right_settings(files: dict[str, Path]) -> None:
    image = _image_file(files, real_card(ODD_FACTOR))
    before = _counters_of(image)
    sim = ["--sim-card", str(image), "--sim-sam", str(files["sam0"])]
    factor = ["--factor-rule", f"fixed:{ODD_FACTOR.hex()}"]
    code, out, err = _cli("read", "--json", *factor, *sim)
    assert code == 0, err
    assert json.loads(out)["DDF1EF06"]["XM"] == sample_resident().holder.name
    code, _, err = _cli("verify", "--data", str(files["data"]), "--card-factor",
                        ODD_FACTOR.hex(), *sim)
    assert code == 0, err
    code, out, _ = _cli("doctor", "--json", *factor, *sim)
    check = next(c for c in json.loads(out) if c["name"] == "card factor")
    assert check["status"] == "ok" and f"fixed:{ODD_FACTOR.hex().upper()}" in check["detail"]
    assert _counters_of(image) == before


def test_cli_wrong_rule_warns_and_works(files: dict[str, Path]) -> None:
    image = _image_file(files, real_card())
    sim = ["--sim-card", str(image), "--sim-sam", str(files["sam0"])]
    code, out, err = _cli("read", "--json", "--factor-rule", "last-8", *sim)
    assert code == 0
    document = json.loads(out)
    factor = [w for w in document["warnings"] if w["kind"] == "factor"]
    assert len(factor) == 1 and "configured rule last-8" in factor[0]["message"]
    assert err.count("warning: card factor") == 1
    code, out, _ = _cli("doctor", "--json", "--factor-rule", "last-8", *sim)
    check = next(c for c in json.loads(out) if c["name"] == "card factor")
    assert check["status"] == "warn"
    assert f"last-8 {LAST_8.hex().upper()}: no match" in check["detail"]
    assert f"first-8 {TRUE_FACTOR.hex().upper()}: matched" in check["detail"]
    code, _, err = _cli("read", "--no-factor-check", "--file", "holder", *sim)
    assert code == 0, err
    assert full(SimCard.open(image))
    code, _, err = _cli("personalize", "--erase", "--factor-rule", "last-8", "--data",
                        str(files["data"]), "--sim-card", str(image), "--keys",
                        str(files["keys0"]))
    assert code == 0, err
    assert "configured rule last-8" in err  # erased with the confirmed factor


def test_cli_missing_rk_key(files: dict[str, Path]) -> None:
    image = _image_file(files, real_card(**_quirks(absent_external_keys=frozenset({0x04,
                                                                                     0x84}))))
    code, _, err = _cli("read", "--file", "holder", "--sim-card", str(image), "--sim-sam",
                        str(files["sam0"]))
    assert code == 4 and "key RK1_DDF1 not present on this card" in err
    assert full(SimCard.open(image))
