"""Hostile APDUs through the real stack: pcscd + the vsmartcard vpcd driver + our card link.

Every 1-byte command (which hung the reader for good before, issue 11), malformed lengths, and
a fuzz of command sequences: each is answered, the reader keeps working, and the card keeps
its keys and the try counters of LK / BK."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given

from conftest import require_pcsc, serve_on_vpcd
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import decode_image
from healthcard_apdu.transport.base import TransportError
from healthcard_apdu.transport.pcsc import PcscTransport
from hostile_support import budget, count
from test_hostile_apdu import _STEPS, ISSUED, _key_values, _lock_counters

pytestmark = pytest.mark.pcsc

SELECT_MF = bytes.fromhex("00A40000023F00")


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[SimCard, PcscTransport]]:
    """An issued card on vpcd slot 0, held by one PC/SC connection for the module."""
    require_pcsc()
    card = SimCard(decode_image(ISSUED))
    with serve_on_vpcd(card, 0) as reader:
        link = PcscTransport(reader)
        try:
            yield card, link
        finally:
            link.close()


def test_every_one_byte_apdu_is_answered_and_the_reader_keeps_working(
        served: tuple[SimCard, PcscTransport]) -> None:
    card, link = served
    for value in range(256):
        reply = link.transmit(bytes((value,)))
        if value == 0x04:  # vpcd's ATR request: the one byte the protocol cannot tell apart
            assert reply == card.atr()
        else:
            assert reply == b"\x67\x00", f"{value:02X} -> {reply.hex()}"
        assert card.powered  # 00 / 01 / 02 as APDUs are not power control
    assert link.transmit(SELECT_MF)[-2:] == b"\x90\x00"


@pytest.mark.parametrize("raw", [
    "00A4", "00A400", "00A40000", "00A4000005", "00A40000053F00", "00A4000002",
    "00B0000000000000", "00A4000000000002", "00B000000001", "FF" * 260, "00A40000FF00",
    "00B0000000FFFF00",
], ids=lambda raw: raw[:16])
def test_malformed_apdus_are_answered(served: tuple[SimCard, PcscTransport], raw: str) -> None:
    _card, link = served
    command = bytes.fromhex(raw)
    reply = link.transmit(command)
    try:
        CommandApdu.from_bytes(command)
    except ApduFormatError:
        assert reply == b"\x67\x00"
    else:
        assert len(reply) >= 2
    assert link.transmit(SELECT_MF)[-2:] == b"\x90\x00"


@budget(600)
@given(_STEPS)
def test_command_sequences_through_pcscd(served: tuple[SimCard, PcscTransport],
                                         steps: list[list[bytes]]) -> None:
    count("pcsc-sequence")
    card, link = served
    card.os.attach(decode_image(ISSUED))  # every example starts from the issued card
    secrets = _key_values(card)
    locks = _lock_counters(card)
    for raw in (apdu for step in steps for apdu in step):
        if len(raw) == 1 and raw[0] in (0x00, 0x01, 0x02, 0x04):
            continue  # answered above; each costs the link's 2 s control wait
        if not raw:
            with pytest.raises(TransportError, match="Invalid parameter"):
                link.transmit(raw)  # pcscd refuses an empty command itself
            continue
        reply = link.transmit(raw)
        assert len(reply) >= 2
        assert not any(secret in reply for secret in secrets)
    assert _lock_counters(card) == locks
    assert link.transmit(SELECT_MF)[-2:] == b"\x90\x00"
