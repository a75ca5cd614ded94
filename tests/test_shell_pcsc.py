"""``healthcard shell`` scripted through real PC/SC: pyscard -> pcscd -> vpcd -> simulated card
(T=0, slot 0) and PSAM (slot 1). The same script against the same card in-process prints the
same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ServeOnVpcd
from healthcard_apdu.cli.shell import shell_command
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import save_image
from test_card_fixtures import SAM_PIN, issued_card, keyset, sim_sam

pytestmark = pytest.mark.pcsc

SCRIPT = """\
apdu 00A4000002DDF1 --expect 9000
select holder
read
cd DF01
write contacts LXRXM1 王五
read contacts LXRXM1
tree
auth RK1_DF03
read -x inpatient_index
decode inpatient_index 00FF
reset
read issuer KH
"""


def _shell(options: list[str], script: str) -> tuple[int, str, str]:
    result = CliRunner(env={"HEALTHCARD_SAM_PIN": SAM_PIN}).invoke(
        shell_command, options, input=script
    )
    return result.exit_code, result.stdout, result.stderr


def test_scripted_session_through_pcscd_prints_as_in_process(
    vpcd_slot: ServeOnVpcd, tmp_path: Path
) -> None:
    card_reader = vpcd_slot(issued_card(protocol="T=0"), 0)
    sam_reader = vpcd_slot(sim_sam(), 1)
    code, through_pcsc, err = _shell(["--reader", card_reader, "--sam-reader", sam_reader], SCRIPT)
    assert code == 0, err
    lines = through_pcsc.splitlines()
    assert lines[0] == "> 00A4000002DDF1" and lines[1].startswith("< 6F ")  # GET RESPONSE done
    assert lines[2] == "SW 9000 success"
    assert "王五" in through_pcsc and "RK1_DF03: authenticated in DF03" in through_pcsc
    assert any(line.startswith("record  1: FF") for line in lines)

    image = tmp_path / "card.json"
    save_image(issued_card(protocol="T=0").image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    code, in_process, err = _shell(["--sim-card", str(image), "--sim-sam", str(sam)], SCRIPT)
    assert code == 0, err
    assert in_process == through_pcsc


def test_info_and_a_failing_check_through_pcscd(vpcd_slot: ServeOnVpcd) -> None:
    card = issued_card()
    before = card_counters(card)
    assert len(before) > 10
    card_reader = vpcd_slot(card, 0)
    sam_reader = vpcd_slot(sim_sam(), 1)
    code, out, err = _shell(
        ["--reader", card_reader, "--sam-reader", sam_reader, "--json"],
        "info\napdu 00A4000002EF99 --expect 9000\ninfo\n",
    )
    assert code == 1, err
    replies = [json.loads(line) for line in out.splitlines()]
    assert len(replies) == 2  # stopped at the failed check
    info = replies[0]["result"]
    assert info["reader"] == f"pcsc:{card_reader}" and info["protocol"] == "T=1"
    assert info["security"]["module"] == "sam_reader"
    factor = info["card_factor"]
    assert factor["status"] == "confirmed" and factor["confirmed"]["rules"] == ["first-8"]
    assert [t["matched"] for t in factor["tries"]] == [True]  # by the PSAM, through pcscd
    assert card_counters(card) == before  # INTERNAL AUTHENTICATE: no try counter
    assert "expected SW 9000" in replies[1]["error"]


def card_counters(card: SimCard) -> list[int]:
    """Tries left of every key with a try counter on the simulated card."""
    return [
        key.tries_left
        for df in card.image.mf.walk()
        if df.keyfile is not None
        for key in df.keyfile.keys
        if key.has_counter
    ]
