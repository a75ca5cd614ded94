"""``open_card``: connection options to a HealthCard (simulator and key files)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthcard_apdu.app.connect import open_card
from healthcard_apdu.card import ConnectOptionsError
from healthcard_apdu.security import KeyFileError, SoftwareSecurityModule
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.psam import PsamSecurityModule
from healthcard_apdu.sim.image import save_image
from test_card_fixtures import SAM_PIN, issued_card, keyset, sample


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "card.json"
    save_image(issued_card().image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    keys = tmp_path / "keys.json"
    keyset().save(keys, "pass-1234", scrypt_n=2**10)
    return {"image": image, "sam": sam, "keys": keys}


def test_simulated_card_and_sam(files: dict[str, Path]) -> None:
    with open_card(sim_card=files["image"], sim_sam=files["sam"], sam_pin=SAM_PIN) as conn:
        assert isinstance(conn.security, PsamSecurityModule)
        assert conn.sam is not None and conn.sam.verify_pin(SAM_PIN) == 3
        conn.card.write_addresses(sample().addresses)
        assert conn.card.read_holder() == sample().holder
    # the write went to the image file: a new connection (software keys) reads it back
    with open_card(
        sim_card=files["image"], keys=files["keys"], passphrase=lambda: "pass-1234"
    ) as conn:
        assert isinstance(conn.security, SoftwareSecurityModule)
        assert conn.card.read_addresses() == sample().addresses


def test_passphrase_is_asked_only_for_key_files(files: dict[str, Path]) -> None:
    asked: list[str] = []

    def ask() -> str:
        asked.append("x")
        return "pass-1234"

    with open_card(sim_card=files["image"], sim_sam=files["sam"], passphrase=ask):
        pass
    assert asked == []
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        open_card(sim_card=files["image"], keys=files["keys"], passphrase="nope")


def test_contradicting_or_missing_options(files: dict[str, Path]) -> None:
    with pytest.raises(ConnectOptionsError, match="not both"):
        open_card(reader="x", sim_card=files["image"], keys=files["keys"])
    with pytest.raises(ConnectOptionsError, match="exactly one security module"):
        open_card(sim_card=files["image"])
    with pytest.raises(ConnectOptionsError, match=r"got keys, sim_sam"):
        open_card(sim_card=files["image"], keys=files["keys"], sim_sam=files["sam"])
    with pytest.raises(ConnectOptionsError, match="no passphrase"):
        open_card(sim_card=files["image"], keys=files["keys"])
