"""The vpcd card link against a fake vpcd on loopback (no pcscd needed)."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import pytest

from healthcard_apdu.sim.vpcd import VpcdLink
from healthcard_apdu.transport.testing import T1_ATR, TinyCard

TIMEOUT = 5.0


class FakeVpcd:
    """The reader side: listens like vpcd and speaks its framing."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(TIMEOUT)
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        conn, _ = self.server.accept()
        conn.settimeout(TIMEOUT)
        self.conn = conn
        return conn

    def recv_exact(self, size: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < size:
            chunk = self.conn.recv(size - len(buf))
            if not chunk:
                raise ConnectionError("card closed")
            buf += chunk
        return buf

    def ask(self, payload: bytes, *, split: bool = False) -> bytes:
        assert self.conn is not None
        frame = struct.pack(">H", len(payload)) + payload
        if split:  # like old vpcd: length first, then the payload in pieces
            for piece in (frame[:2], frame[2:5], frame[5:]):
                self.conn.sendall(piece)
                time.sleep(0.01)
        else:
            self.conn.sendall(frame)
        (size,) = struct.unpack(">H", self.recv_exact(2))
        return self.recv_exact(size)

    def control(self, op: int) -> None:
        assert self.conn is not None
        self.conn.sendall(b"\x00\x01" + bytes((op,)))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    fake = FakeVpcd()
    yield fake
    fake.close()


def _link(card: TinyCard, vpcd: FakeVpcd, **kwargs: bool) -> VpcdLink:
    return VpcdLink(card, port=vpcd.port, retry_interval=0.02, **kwargs).start()


def test_atr_power_and_apdus(vpcd: FakeVpcd) -> None:
    card = TinyCard()
    link = _link(card, vpcd)
    try:
        vpcd.accept()
        assert vpcd.ask(b"\x04") == T1_ATR
        vpcd.control(0x01)
        assert vpcd.ask(bytes.fromhex("00A40000023F00")) == b"\x90\x00"
        assert card.powered
        assert (
            vpcd.ask(bytes.fromhex("00B0000004"), split=True) == bytes((0, 1, 2, 3)) + b"\x90\x00"
        )
        vpcd.control(0x00)
        assert vpcd.ask(b"\x04") == T1_ATR  # control messages are handled in order
        assert not card.powered
        assert link.apdus == 2 and link.atr_requests == 2
    finally:
        link.stop()


def test_large_extended_apdu_round_trip(vpcd: FakeVpcd) -> None:
    card = TinyCard(binary=bytes(4096), max_command_data=4000)
    link = _link(card, vpcd)
    try:
        vpcd.accept()
        data = bytes(range(256)) * 12
        apdu = bytes.fromhex("00D60000") + b"\x00" + len(data).to_bytes(2, "big") + data
        assert vpcd.ask(apdu, split=True) == b"\x90\x00"
        assert bytes(card.binary[: len(data)]) == data
    finally:
        link.stop()


def test_removed_card_drops_the_connection_until_reinserted(vpcd: FakeVpcd) -> None:
    card = TinyCard()
    link = _link(card, vpcd)
    try:
        vpcd.accept()
        assert vpcd.ask(b"\x04") == T1_ATR
        card.present = False
        with pytest.raises(ConnectionError):  # no (empty) ATR: the connection is closed
            vpcd.ask(b"\x04")
        vpcd.server.settimeout(0.3)
        with pytest.raises(TimeoutError):  # and it stays away while the card is out
            vpcd.accept()
        card.present = True
        vpcd.server.settimeout(TIMEOUT)
        vpcd.accept()
        assert vpcd.ask(b"\x04") == T1_ATR
    finally:
        link.stop()


def test_reconnects_after_vpcd_closes(vpcd: FakeVpcd) -> None:
    link = _link(TinyCard(), vpcd)
    try:
        first = vpcd.accept()
        first.close()
        vpcd.accept()
        assert vpcd.ask(b"\x04") == T1_ATR
    finally:
        link.stop()


def test_card_exception_answers_6f00_and_keeps_serving(
    vpcd: FakeVpcd, caplog: pytest.LogCaptureFixture
) -> None:
    card = TinyCard()

    def broken(apdu: bytes) -> bytes:
        raise RuntimeError("simulated card bug")

    card.process = broken  # type: ignore[method-assign]
    link = _link(card, vpcd)
    try:
        vpcd.accept()
        assert vpcd.ask(bytes.fromhex("00A40000023F00")) == b"\x6f\x00"
        assert vpcd.ask(b"\x04") == T1_ATR
    finally:
        link.stop()
    assert "answering 6F00" in caplog.text


def test_stop_unblocks_a_waiting_link_promptly(vpcd: FakeVpcd) -> None:
    link = _link(TinyCard(), vpcd)
    vpcd.accept()
    assert link.connected.wait(TIMEOUT)
    started = time.monotonic()
    link.stop()
    assert time.monotonic() - started < 1.0
    assert not link.connected.is_set()
    assert vpcd.conn is not None
    assert vpcd.conn.recv(1) == b""  # the card side closed


def test_stop_while_vpcd_is_unreachable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    link = VpcdLink(TinyCard(), port=port, retry_interval=0.02).start()
    time.sleep(0.1)
    started = time.monotonic()
    link.stop()
    assert time.monotonic() - started < 1.0


def test_quickack_can_be_turned_off() -> None:
    assert not VpcdLink(TinyCard(), quickack=False).quickack
    assert VpcdLink(TinyCard()).quickack == hasattr(socket, "TCP_QUICKACK")


# --- 1-byte messages: control where the protocol puts it, every APDU answered (issue 11) ----


def test_a_one_byte_apdu_is_answered_not_taken_for_control(vpcd: FakeVpcd) -> None:
    """Before: any 1-byte payload was a control message; ``80`` got no answer and vpcd (which
    waits for one, holding the slot's lock) hung the reader for good."""
    card = TinyCard()
    link = _link(card, vpcd)
    try:
        vpcd.accept()
        vpcd.control(0x01)
        for byte in (0x80, 0x03, 0xFF, 0x05):
            assert vpcd.ask(bytes((byte,))) == b"\x67\x00"
        assert card.received[-1] == b"\x05" and card.powered
    finally:
        link.stop()


@pytest.mark.parametrize("byte", [0x00, 0x01, 0x02])
def test_a_control_byte_not_followed_by_a_message_was_an_apdu(vpcd: FakeVpcd,
                                                              byte: int) -> None:
    """``00``/``01``/``02`` are power control only when vpcd goes on talking (it always polls
    the ATR right after); silence means it waits for an answer: ``6700``, power untouched."""
    card = TinyCard()
    link = VpcdLink(card, port=vpcd.port, retry_interval=0.02, control_wait=0.3).start()
    try:
        vpcd.accept()
        vpcd.control(0x01)
        assert vpcd.ask(b"\x04") == T1_ATR
        started = time.monotonic()
        assert vpcd.ask(bytes((byte,))) == b"\x67\x00"
        assert 0.25 < time.monotonic() - started < 3.0
        assert card.powered  # a 1-byte "power off" APDU did not power the card off
        vpcd.control(byte)  # the real control message, followed by the ATR poll
        assert vpcd.ask(b"\x04") == T1_ATR
        assert card.powered is (byte != 0x00)
    finally:
        link.stop()
