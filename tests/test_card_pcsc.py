"""The card layer once through real PC/SC: pyscard -> pcscd -> vpcd -> simulated card and PSAM.

The user card is served on vpcd slot 0, the simulated PSAM (T=0) on slot 1.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import ServeOnVpcd
from healthcard_apdu.card import HealthCard, Sam
from healthcard_apdu.cli.card import read_command
from healthcard_apdu.transport import Channel
from healthcard_apdu.transport.pcsc import PcscTransport
from test_card_fixtures import (
    CERTIFICATE,
    SAM_PIN,
    edge_card,
    issued_card,
    sim_sam,
    without_signatures,
)

pytestmark = pytest.mark.pcsc


def test_every_file_written_and_read_back_through_pcscd(vpcd_slot: ServeOnVpcd) -> None:
    data = edge_card(seed=21)
    card_reader = vpcd_slot(issued_card(data), 0)
    sam_reader = vpcd_slot(sim_sam(), 1)
    with PcscTransport(card_reader) as card_link, PcscTransport(sam_reader) as sam_link:
        assert sam_link.protocol == "T=0"
        sam = Sam(Channel(sam_link), pin=SAM_PIN)
        card = HealthCard(Channel(card_link), sam.security)
        written = card.write_card(data)
        back = card.read_card()
    assert back == written
    assert without_signatures(back) == without_signatures(data)
    assert all(r is not None and r.inpatient_sam_certificate == CERTIFICATE for r in back.inpatient)

    result = CliRunner(env={"HEALTHCARD_SAM_PIN": SAM_PIN}).invoke(
        read_command,
        ["--reader", card_reader, "--sam-reader", sam_reader, "--json", "--file", "DF01EF05"],
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"DF01EF05": data.addresses.to_json("code")}
