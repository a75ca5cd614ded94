"""The batch runner's CardIssuer backed by the personalizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthcard_apdu import model
from healthcard_apdu.batch.issuer import CardIssuer
from healthcard_apdu.perso.batch_issuer import PersoCardIssuer, make_card_issuer
from healthcard_apdu.perso.errors import PersoError, SecurityModuleUnsuitable
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.perso.verify import verify_card
from healthcard_apdu.transport import InProcessTransport
from perso_support import blank_card, keyset, software

NATIONAL = load_profile("national-32k")


def test_inspect_issue_erase_cycle() -> None:
    issuer = PersoCardIssuer(NATIONAL, software())
    assert isinstance(issuer, CardIssuer)
    card = blank_card()
    resident = model.sample_resident().to_json(keys="code")
    with InProcessTransport(card) as link:
        blank = issuer.inspect(link)
        assert not blank.issued and blank.card_factor == card.card_factor.hex().upper()
        outcome = issuer.issue(link, resident)
        assert outcome.profile_version == "national-32k"
        assert outcome.keys_version.startswith("SM4:")
        issued = issuer.inspect(link)
        assert issued.issued and issued.card_number == "110105198503171231"
        assert verify_card(link, NATIONAL, resident, software()).ok
        issuer.erase(link)
        assert not issuer.inspect(link).issued
        assert not card.image.issued and card.image.mf.children == {}


def test_partly_personalized_card_is_not_reported_issued() -> None:
    issuer = PersoCardIssuer(NATIONAL, software())
    card = blank_card()
    with InProcessTransport(card) as link:
        issuer.issue(link, model.sample_resident().to_json())
        card.image.issued = False  # as if END ISSUANCE never arrived
        ident = issuer.inspect(link)
        assert not ident.issued and ident.card_number is None
        issuer.erase(link)
        issuer.issue(link, model.sample_resident().to_json())
        assert issuer.inspect(link).issued


def test_factory_reads_the_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keyfile = tmp_path / "keys.json"
    keyset().save(keyfile, "batch-pass", scrypt_n=2**10)
    with pytest.raises(PersoError, match="HEALTHCARD_KEYS_PASSPHRASE"):
        make_card_issuer(None, str(keyfile))
    monkeypatch.setenv("HEALTHCARD_KEYS_PASSPHRASE", "batch-pass")
    issuer = make_card_issuer(None, str(keyfile))
    assert issuer.profile.name == "national-32k"
    with pytest.raises(SecurityModuleUnsuitable, match="compact-8k needs TDES"):
        make_card_issuer("compact-8k", str(keyfile))
    with pytest.raises(PersoError, match="--keys"):
        make_card_issuer(None, None)
