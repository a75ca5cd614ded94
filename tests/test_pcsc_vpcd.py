"""End to end through real PC/SC: pyscard -> pcscd -> vpcd -> VpcdLink -> a tiny test card."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import VPCD_READERS, ServeOnVpcd
from healthcard_apdu.apdu import NotFound
from healthcard_apdu.apdu import commands as c
from healthcard_apdu.transport import (
    CardRemovedError,
    Channel,
    NoCardError,
    NoReaderError,
    ProtocolError,
    ReaderBusyError,
    ReplayTransport,
    Tracer,
)
from healthcard_apdu.transport.pcsc import (
    PcscTransport,
    list_readers,
    main,
    reader_status,
    reader_statuses,
    wait_for_card,
)
from healthcard_apdu.transport.testing import T0_ATR, T1_ATR, TinyCard

pytestmark = pytest.mark.pcsc


def test_vpcd_readers_are_listed() -> None:
    readers = list_readers()
    assert set(VPCD_READERS) <= set(readers)


def test_t1_card_end_to_end(vpcd_slot: ServeOnVpcd) -> None:
    card = TinyCard(binary=bytes(range(256)) * 4)
    reader = vpcd_slot(card)
    with PcscTransport(reader) as transport:
        assert transport.protocol == "T=1"
        assert transport.atr() == T1_ATR
        assert transport.name == f"pcsc:{reader}"
        channel = Channel(transport)
        assert channel.call(c.select_fid(0x3F00)).data == b""
        with pytest.raises(NotFound, match="SELECT 1234: SW 6A82"):
            channel.call(c.select_fid(0x1234))
        challenge = channel.call(c.get_challenge(8)).data
        assert len(challenge) == 8
        assert channel.call(c.read_binary(0, 256)).data == bytes(range(256))
        payload = bytes((i * 3) & 0xFF for i in range(600))
        channel.call(c.update_binary(0x20, payload))  # chained: 255 + 255 + 90
        assert bytes(card.binary[0x20 : 0x20 + 600]) == payload
        assert [apdu[0] for apdu in card.received[-3:]] == [0x10, 0x10, 0x00]


def test_t0_card_answers_61xx_and_the_channel_fetches_it(vpcd_slot: ServeOnVpcd) -> None:
    card = TinyCard(t0=True, t0_chunk=0x40)
    reader = vpcd_slot(card)
    with PcscTransport(reader) as transport:
        assert transport.protocol == "T=0"
        assert transport.atr() == T0_ATR
        assert transport.transmit(c.get_challenge(8).to_bytes()) == b"\x61\x08"  # raw link
        channel = Channel(transport)
        assert len(channel.call(c.get_challenge(8)).data) == 8
        assert channel.call(c.read_binary(0, 256)).data == bytes(card.binary[:256])


def test_endless_61xx_through_pcscd_is_an_error_not_a_hang(vpcd_slot: ServeOnVpcd) -> None:
    reader = vpcd_slot(TinyCard(endless_61=True))
    with (
        PcscTransport(reader) as transport,
        pytest.raises(ProtocolError, match="GET CHALLENGE: card still answers 6101"),
    ):
        Channel(transport, max_get_response=50).call(c.get_challenge(8))


def test_removed_card_raises_card_removed(vpcd_slot: ServeOnVpcd) -> None:
    card = TinyCard()
    reader = vpcd_slot(card)
    with PcscTransport(reader) as transport:
        channel = Channel(transport)
        channel.call(c.select_fid(0x3F00))
        card.present = False
        wait_for_card(reader, present=False)
        with pytest.raises(CardRemovedError, match=reader):
            channel.call(c.select_fid(0x3F00))
    card.present = True
    wait_for_card(reader)  # reinserted: usable again
    with PcscTransport(reader) as transport:
        Channel(transport).call(c.select_fid(0x3F00))


def test_empty_reader_gives_no_card_error(vpcd_slot: ServeOnVpcd) -> None:
    reader = vpcd_slot(None, slot=1)
    with pytest.raises(NoCardError, match=f"no card in reader '{reader}'"):
        PcscTransport(reader)
    with pytest.raises(NoCardError, match=r"after 0\.2 s"):
        wait_for_card(reader, timeout=0.2)
    status = {s.name: s for s in reader_statuses()}[reader]
    assert not status.present and status.atr == b""


def test_reader_choice_by_index_part_of_name_or_first_with_card(vpcd_slot: ServeOnVpcd) -> None:
    reader = vpcd_slot(TinyCard())
    vpcd_slot(None, slot=1)
    index = list_readers().index(reader)
    for choice in (index, "pcd 00 00", None):
        with PcscTransport(choice) as transport:
            assert transport.reader == reader
    with pytest.raises(NoReaderError, match="no reader 'no such reader'; readers: "):
        PcscTransport("no such reader")
    with pytest.raises(NoReaderError, match="is ambiguous"):
        PcscTransport("Virtual PCD")
    with pytest.raises(NoReaderError, match="no reader number 99"):
        PcscTransport(99)


def test_exclusive_connect_keeps_others_out(vpcd_slot: ServeOnVpcd) -> None:
    reader = vpcd_slot(TinyCard())
    with PcscTransport(reader):
        with pytest.raises(ReaderBusyError, match=reader):
            PcscTransport(reader)
        assert {s.name: s for s in reader_statuses()}[reader].exclusive
    with PcscTransport(reader, exclusive=False), PcscTransport(reader, exclusive=False):
        pass


def test_reset_reaches_the_card(vpcd_slot: ServeOnVpcd) -> None:
    card = TinyCard(t0=True)
    reader = vpcd_slot(card)
    with PcscTransport(reader) as transport:
        before = card.power_ons
        assert transport.transmit(c.get_challenge(8).to_bytes()) == b"\x61\x08"
        assert transport.reset() == T0_ATR
        assert card.power_ons > before
        # the pending response was dropped by the reset
        assert transport.transmit(c.get_response(8).to_bytes()) == b"\x69\x85"
        after_warm = card.power_ons
        assert transport.reset(cold=True) == T0_ATR
        assert card.power_ons > after_warm


def test_pcsc_trace_replays_in_process(vpcd_slot: ServeOnVpcd, tmp_path: Path) -> None:
    reader = vpcd_slot(TinyCard(t0=True, t0_chunk=0x80))
    path = tmp_path / "pcsc.jsonl"
    commands = [c.select_fid(0x3F00, fci=True), c.get_challenge(8), c.read_binary(0, 256)]
    with Tracer(path) as tracer, PcscTransport(reader) as transport:
        channel = Channel(transport, trace=tracer)
        recorded = [channel.call(cmd) for cmd in commands]
    replay = ReplayTransport.from_jsonl(path)
    assert replay.atr() == T0_ATR
    assert [Channel(replay).call(cmd) for cmd in commands] == recorded
    replay.assert_done()


def test_reader_listing_command(vpcd_slot: ServeOnVpcd, capsys: pytest.CaptureFixture[str]) -> None:
    reader = vpcd_slot(TinyCard())
    assert main([]) == 0
    out = capsys.readouterr().out
    assert f"{reader}: card, ATR 3B800181 (T=1)" in out
    rows = {row["reader"]: row for row in reader_status()}
    assert rows[reader]["card"] == "present"
    assert rows[reader]["atr"] == "3B800181"
    assert rows[reader]["protocols"] == "T=1"


@pytest.mark.skipif(shutil.which("opensc-tool") is None, reason="opensc-tool not installed")
def test_independent_client_opensc_tool_sees_the_card(vpcd_slot: ServeOnVpcd) -> None:
    card = TinyCard()
    reader = vpcd_slot(card)
    run = subprocess.run(
        ["opensc-tool", "--reader", reader, "--atr", "--send-apdu", "00:84:00:00:08"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "3b:80:01:81" in run.stdout.lower()
    assert "SW1=0x90, SW2=0x00" in run.stdout
    assert bytes.fromhex("0084000008") in card.received
