"""Power lost at every APDU of a personalization and of an erase-then-reissue: the documented
command (``personalize --erase``, docs/profiles.md "Torn cards") always ends with a card that
``verify`` accepts. The library, the CLI and the batch issuer share that one recovery path
(test_batch_perso.py tears the batch issuer the same way)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from healthcard_apdu import model
from healthcard_apdu.cli.perso import personalize_command, verify_command
from healthcard_apdu.perso.errors import PersoError
from healthcard_apdu.perso.execute import personalize
from healthcard_apdu.perso.plan import build_plan
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.perso.verify import verify_card
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.faults import FaultPlan
from healthcard_apdu.transport import InProcessTransport, TransportError
from perso_support import CARD_FACTOR, blank_card, issued_card, keyset, software

NATIONAL = load_profile("national-32k")
RESIDENT = model.sample_resident()
#: The resident the erase-then-reissue writes over the sample one.
OTHER = dataclasses.replace(RESIDENT, holder=RESIDENT.holder.replace(name="王小明"))
PLAN_APDUS = build_plan(NATIONAL, RESIDENT, CARD_FACTOR, software()).apdus


def _reissue_apdus() -> int:
    """APDUs of an erase-then-reissue: the card-factor check (INTERNAL AUTHENTICATE, no try
    counter), the erase prelude (GET CHALLENGE, EXTERNAL AUTHENTICATE MK_MF, ERASE DF) and the
    plan, counted on the card itself so the test follows the library's exchange."""
    card = issued_card()
    card.power_on()
    before = card.apdu_count
    with InProcessTransport(card) as link:
        personalize(link, NATIONAL, OTHER, software(), erase=True)
    return card.apdu_count - before


def _cases(last: int) -> list[tuple[int, bool]]:
    """Every APDU 1..last torn once. Both outcomes of a torn command (applied, or lost) for the
    MF part (the first 12 APDUs: MF, its key file, its keys) and the last 3; elsewhere they
    alternate, so each neighbouring pair of APDUs sees both."""
    out: list[tuple[int, bool]] = []
    for n in range(1, last + 1):
        if n <= 12 or n > last - 3:
            out += [(n, False), (n, True)]
        else:
            out.append((n, n % 2 == 0))
    return out


def _torn(card: SimCard, tear_at: int, applies: bool, resident: model.CardData,
          erase: bool) -> None:
    card.faults = FaultPlan(tear_at=card.apdu_count + tear_at, tear_applies=applies)
    # A tear during the card-factor check (before any step of the plan) is the link's error.
    with InProcessTransport(card) as link, pytest.raises((PersoError, TransportError)):
        personalize(link, NATIONAL, resident, software(), erase=erase)
    assert not card.present, "the tear did not happen"
    card.insert()


def _recovered(card: SimCard, resident: model.CardData) -> None:
    with InProcessTransport(card) as link:
        personalize(link, NATIONAL, resident, software(), erase=True)
        report = verify_card(link, NATIONAL, resident, software())
    assert report.ok, report.problems()


@pytest.mark.slow
def test_a_personalization_torn_at_every_apdu_is_recovered_by_personalize_erase() -> None:
    for tear_at, applies in _cases(PLAN_APDUS):
        card = blank_card()
        _torn(card, tear_at, applies, RESIDENT, erase=False)
        _recovered(card, RESIDENT)


@pytest.mark.slow
def test_an_erase_then_reissue_torn_at_every_apdu_is_recovered_by_personalize_erase() -> None:
    reissue_apdus = _reissue_apdus()
    assert reissue_apdus > PLAN_APDUS + 3
    for tear_at, applies in _cases(reissue_apdus):
        card = issued_card()
        card.power_on()
        _torn(card, tear_at, applies, OTHER, erase=True)
        _recovered(card, OTHER)


def test_the_cli_recovers_a_card_torn_between_the_mf_key_file_and_its_master_key(
        tmp_path: Path) -> None:
    """The image a tear after CREATE FILE (MF key file) leaves: ``personalize --erase``
    answered "this card cannot be erased" (exit 3) before; now it issues the card."""
    keys = tmp_path / "keys.json"
    keyset().save(keys, "pass", scrypt_n=2**10)
    data = tmp_path / "resident.json"
    data.write_text(json.dumps(RESIDENT.to_json(), ensure_ascii=False), encoding="utf-8")
    image = tmp_path / "card.json"
    card = SimCard.blank(CARD_FACTOR, path=image, durable=False)
    card.power_on()
    _torn(card, 3, False, RESIDENT, erase=False)  # lost: WRITE KEY MK_MF (after the key file)
    args = ["--sim-card", str(image), "--data", str(data), "--keys", str(keys)]
    env = {"HEALTHCARD_KEYS_PASSPHRASE": "pass"}
    refused = CliRunner().invoke(personalize_command, args, env=env)
    assert refused.exit_code == 3 and "--erase" in refused.output
    done = CliRunner().invoke(personalize_command, [*args, "--erase", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["erased"] is True
    checked = CliRunner().invoke(verify_command, args, env=env)
    assert checked.exit_code == 0, checked.output
