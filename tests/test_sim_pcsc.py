"""The simulated card and SAM as real PC/SC readers (pcscd + vpcd), with independent clients.

Needs a running pcscd with the vsmartcard vpcd driver (skipped otherwise, see conftest.py).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from healthcard_apdu.crypto import xor_fold
from healthcard_apdu.sim import FaultPlan, SimCard, SimSam, load_image
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport.pcsc import wait_for_card
from sim_issuance import (
    CITY_FACTOR,
    TRACE_CARD_FACTOR,
    issued_card,
    issued_image_bytes,
    sam_key_file,
)

pytestmark = pytest.mark.pcsc

Serve = Callable[..., str]


@contextmanager
def connect(reader_name: str) -> Iterator[Any]:
    from smartcard.System import readers

    reader = next(r for r in readers() if str(r) == reader_name)
    connection = reader.createConnection()
    connection.connect()
    try:
        yield connection
    finally:
        connection.disconnect()
        release = getattr(connection, "release", None)
        if callable(release):
            release()


def tx(connection: Any, command: str) -> tuple[bytes, int]:
    data, sw1, sw2 = connection.transmit(list(bytes.fromhex(command.replace(" ", ""))))
    return bytes(data), (sw1 << 8) | sw2


def fetch(connection: Any, command: str) -> bytes:
    data, sw = tx(connection, command)
    assert sw >> 8 == 0x61 and not data, f"{sw:04X}"
    data, sw = tx(connection, f"00C00000{sw & 0xFF:02X}")
    assert sw == 0x9000
    return data


def make_sam() -> SimSam:
    return SimSam(sam_state_from_json(sam_key_file()))


def test_user_card_and_sam_on_two_readers(vpcd_slot: Serve) -> None:
    card_reader = vpcd_slot(issued_card(), 0)
    sam_reader = vpcd_slot(make_sam(), 1)
    with connect(card_reader) as card, connect(sam_reader) as sam:
        assert bytes(card.getATR())[3:11] == TRACE_CARD_FACTOR  # the first 8 historical bytes
        assert fetch(sam, "00A4000002DF01").startswith(b"\x6f")
        assert tx(sam, "0020000003123456")[1] == 0x9000
        for fid in ("DDF1", "DF03"):
            assert tx(card, f"00A4000002{fid}")[1] == 0x9000
        r = tx(card, "0084000008")[0]
        assert tx(sam, f"80DE473418 {TRACE_CARD_FACTOR.hex()} {CITY_FACTOR.hex()} {r.hex()}")[
            1] == 0x9000
        c = fetch(sam, "80FA000010 1122334455667788 0000000000000000")
        crypt = xor_fold(c).hex()
        assert tx(card, f"0082008411 {crypt} 1122334455667788 01") == (b"", 0x9000)
        assert tx(card, "00A4000002EE01")[1] == 0x9000
        data, sw = tx(card, "00B0000080")
        assert sw == 0x9000 and len(data) == 0x80


def test_t0_user_card_through_pcscd(vpcd_slot: Serve) -> None:
    from smartcard.CardConnection import CardConnection

    reader = vpcd_slot(issued_card(protocol="T=0"), 0)
    with connect(reader) as card:
        assert card.getProtocol() == CardConnection.T0_protocol
        assert tx(card, "00A4000002DDF1") == (b"", 0x6112)
        assert tx(card, "00C0000012")[0] == bytes.fromhex("6F10840C57532E5359532E4444463031A500")
        tx(card, "00A4000002EF05")
        assert tx(card, "00B2390000") == (b"", 0x6C05)
        assert tx(card, "00B2390005") == (bytes.fromhex("3903210000"), 0x9000)


def test_removal_and_reinsertion_are_seen_by_pcscd(vpcd_slot: Serve) -> None:
    card = issued_card()
    reader = vpcd_slot(card, 0)
    card.remove()
    wait_for_card(reader, present=False, timeout=10)
    card.insert()
    atr = wait_for_card(reader, present=True, timeout=10)
    assert atr == card.atr()
    with connect(reader) as connection:
        assert tx(connection, "00A4000002DDF1")[1] == 0x9000


def test_torn_write_through_pcscd_leaves_the_image_unchanged(
    vpcd_slot: Serve, tmp_path: Path
) -> None:
    path = tmp_path / "card.json"
    path.write_bytes(issued_image_bytes(end=False))
    card = SimCard.open(path)
    reader = vpcd_slot(card, 0)
    with connect(reader) as connection:
        for fid in ("DDF1", "EF07"):
            assert tx(connection, f"00A4000002{fid}")[1] == 0x9000
        card.faults = FaultPlan(tear_at=card.apdu_count + 1, tear_applies=False)
        try:
            reply = tx(connection, "00D6000004CAFEBABE")
        except Exception:  # the reader may report the lost card as an error
            reply = (b"", 0)
        assert reply[1] != 0x9000
    wait_for_card(reader, present=False, timeout=10)
    ef07 = load_image(path).mf.children[0xDDF1].children[0xEF07]  # type: ignore[union-attr]
    assert bytes(ef07.data[:4]) == bytes(4)  # type: ignore[union-attr]
    # pcscd polls presence every ~0.4 s; SCardDisconnect on the lost card already marked the
    # reader empty, so stay out long enough for the poll to see the removal too.
    time.sleep(1.5)
    card.insert()
    wait_for_card(reader, present=True, timeout=10)
    with connect(reader) as connection:
        assert tx(connection, "00A4000002DDF1")[1] == 0x9000


@pytest.mark.skipif(shutil.which("scriptor") is None, reason="scriptor (pcsc-tools) missing")
def test_scriptor_as_an_independent_client(vpcd_slot: Serve) -> None:
    reader = vpcd_slot(issued_card(), 0)
    script = "00 A4 00 00 02 DD F1\n00 A4 00 00 02 EF 05\n00 B2 39 00 05\n"
    out = subprocess.run(["scriptor", "-r", reader], input=script, capture_output=True,
                         text=True, timeout=30, check=True).stdout
    text = " ".join(out.split())
    assert "Using T=1 protocol" in text
    assert "< 6F 10 84 0C 57 53 2E 53 59 53 2E 44 44 46 30 31 A5 00 90 00 :" in text
    assert "> 00 A4 00 00 02 EF 05 < 90 00 :" in text
    assert "< 39 03 21 00 00 90 00 :" in text


@pytest.mark.skipif(shutil.which("opensc-tool") is None, reason="opensc-tool missing")
def test_opensc_tool_as_an_independent_client(vpcd_slot: Serve) -> None:
    reader = vpcd_slot(issued_card(), 0)
    out = subprocess.run(
        ["opensc-tool", "-r", reader, "-s", "00 A4 00 00 02 DD F1", "-s", "00 A4 00 00 02 EF 05",
         "-s", "00 B2 39 00 05"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.count("Received (SW1=0x90, SW2=0x00)") == 3
    assert "6F 10 84 0C 57 53 2E 53 59 53 2E 44 44 46 30 31" in out
    assert "39 03 21 00 00" in out
