"""In-process transport over a card object, and the tiny test card it is tested with."""

from __future__ import annotations

import pytest

from healthcard_apdu.apdu import commands as c
from healthcard_apdu.transport import (
    CardLike,
    CardRemovedError,
    Channel,
    InProcessTransport,
    NoCardError,
    ProtocolError,
    TransportError,
)
from healthcard_apdu.transport.testing import T0_ATR, T1_ATR, TinyCard


def test_tiny_card_is_card_like() -> None:
    assert isinstance(TinyCard(), CardLike)


def test_opening_powers_the_card_on_and_closing_powers_it_off() -> None:
    card = TinyCard()
    with InProcessTransport(card, name="sim") as transport:
        assert card.powered
        assert transport.name == "sim"
        assert transport.atr() == T1_ATR
    assert not card.powered


def test_protocol_is_the_cards_mode_else_what_its_atr_offers() -> None:
    from healthcard_apdu.sim import SimCard

    assert InProcessTransport(TinyCard()).protocol == "T=1"  # no own mode: from the ATR
    assert InProcessTransport(TinyCard(t0=True)).protocol == "T=0"
    garbled = TinyCard()
    garbled.atr = lambda: b"\x00"  # type: ignore[method-assign]
    assert InProcessTransport(garbled).protocol is None
    card = SimCard.blank(bytes(8), protocol="T=0")
    transport = InProcessTransport(card)
    assert transport.protocol == "T=0"
    card.set_protocol("T=1")  # the simulator's mode, followed at run time
    assert transport.protocol == "T=1"


def test_absent_card_cannot_be_opened() -> None:
    card = TinyCard()
    card.present = False
    with pytest.raises(NoCardError, match="no card"):
        InProcessTransport(card)


def test_removed_card_raises_card_removed() -> None:
    card = TinyCard()
    transport = InProcessTransport(card)
    card.present = False
    with pytest.raises(CardRemovedError):
        transport.transmit(c.select_fid(0x3F00).to_bytes())
    transport.close()  # no power-off of a card that is gone


def test_closed_transport_refuses() -> None:
    transport = InProcessTransport(TinyCard())
    transport.close()
    transport.close()  # idempotent
    with pytest.raises(TransportError, match="closed"):
        transport.transmit(c.select_fid(0x3F00).to_bytes())


def test_warm_and_cold_reset_clear_pending_state() -> None:
    card = TinyCard(t0=True)
    transport = InProcessTransport(card)
    assert transport.transmit(c.get_challenge(8).to_bytes()) == b"\x61\x08"
    assert transport.reset() == T0_ATR
    assert transport.transmit(c.get_response(8).to_bytes()) == b"\x69\x85"  # nothing pending
    transport.reset(cold=True)
    assert card.power_ons == 3


class _Mute:
    present = True

    def atr(self) -> bytes:
        return T1_ATR

    def process(self, apdu: bytes) -> bytes:
        return b"\x90"

    def power_on(self) -> None:
        pass

    def power_off(self) -> None:
        pass


def test_response_without_status_word_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="no status word"):
        InProcessTransport(_Mute()).transmit(b"\x00\xa4\x00\x00")


def test_tiny_card_commands() -> None:
    card = TinyCard()
    channel = Channel(InProcessTransport(card))
    assert channel.call(c.select_fid(0x3F00)).data == b""
    assert channel.call(c.select_fid(0x3F00, fci=True)).data == bytes.fromhex("6F0483023F00")
    assert channel.send(c.select_fid(0x1234)).sw == 0x6A82
    assert channel.call(c.select_name(b"\xa0\x01")).data == bytes.fromhex("6F048402A001")
    first, second = channel.call(c.get_challenge(8)).data, channel.call(c.get_challenge(8)).data
    assert len(first) == 8 and first != second
    channel.call(c.update_binary(4, b"\xde\xad"))
    assert channel.call(c.read_binary(3, 4)).data == bytes((3, 0xDE, 0xAD, 6))
    assert channel.send(c.read_binary(0x7FFF, 1)).sw == 0x6B00
    assert channel.send(c.erase_df()).sw == 0x6D00
    assert card.received[0] == bytes.fromhex("00A40000023F00")
