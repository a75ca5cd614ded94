"""End to end through pcscd + vpcd: personalize and verify a simulated card in a PC/SC
reader, and the README demo (card and SAM on the two vpcd readers)."""

from __future__ import annotations

import pytest

from conftest import ServeOnVpcd
from healthcard_apdu import model
from healthcard_apdu.perso.execute import personalize
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.perso.verify import verify_card
from healthcard_apdu.transport.pcsc import PcscTransport
from perso_support import blank_card, software

pytestmark = pytest.mark.pcsc

NATIONAL = load_profile("national-32k")


def test_personalize_and_verify_through_pcscd(vpcd_slot: ServeOnVpcd) -> None:
    card = blank_card()
    reader = vpcd_slot(card, 0)
    with PcscTransport(reader) as transport:
        result = personalize(transport, NATIONAL, model.sample_resident(), software())
        report = verify_card(transport, NATIONAL, model.sample_resident(), software())
    assert result.apdus == result.minimum.apdus
    assert result.card_factor == card.card_factor.hex().upper()
    assert report.ok, report.problems()
    assert card.image.issued

