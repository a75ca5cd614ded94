"""The channel above the link: 61xx GET RESPONSE loops, 6Cxx resends, chaining, limits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from healthcard_apdu.apdu import ApduFormatError, CommandApdu, NotFound, WrongLength
from healthcard_apdu.apdu import commands as c
from healthcard_apdu.transport import Channel, InProcessTransport, ProtocolError, Transport
from healthcard_apdu.transport.testing import TinyCard
from healthcard_apdu.transport.trace import Tracer


class ScriptedLink(Transport):
    """A link that checks each command against a script and answers from it."""

    def __init__(self, script: list[tuple[str, str]]) -> None:
        self.script = [(bytes.fromhex(cmd), bytes.fromhex(rsp)) for cmd, rsp in script]
        self.sent: list[bytes] = []

    @property
    def name(self) -> str:
        return "scripted"

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        index = len(self.sent) - 1
        assert index < len(self.script), f"unexpected extra command {apdu.hex().upper()}"
        expected, response = self.script[index]
        assert apdu == expected, (
            f"step {index + 1}: {apdu.hex().upper()} != {expected.hex().upper()}"
        )
        return response

    def atr(self) -> bytes:
        return bytes.fromhex("3B00")

    def reset(self, cold: bool = False) -> bytes:
        return self.atr()

    def close(self) -> None:
        pass

    def done(self) -> bool:
        return len(self.sent) == len(self.script)


def test_61xx_fetches_the_response_with_get_response() -> None:
    link = ScriptedLink(
        [
            ("00A40000023F0000", "6106"),
            ("00C0000006", "6F0483023F009000"),
        ]
    )
    response = Channel(link).call(c.select_fid(0x3F00, fci=True))
    assert response.data == bytes.fromhex("6F0483023F00")
    assert response.sw == 0x9000
    assert link.done()


def test_data_before_61xx_and_several_rounds_are_concatenated() -> None:
    link = ScriptedLink(
        [
            ("00B0000000", "AABB6102"),
            ("00C0000002", "CCDD6101"),
            ("00C0000001", "EE9000"),
        ]
    )
    response = Channel(link).send(c.read_binary(0, 256))
    assert response.data == bytes.fromhex("AABBCCDDEE")
    assert response.ok
    assert link.done()


def test_t0_card_with_many_rounds_returns_the_whole_file() -> None:
    card = TinyCard(t0=True, t0_chunk=0x30)
    channel = Channel(InProcessTransport(card))
    response = channel.call(c.read_binary(0, 256))
    assert response.data == bytes(card.binary[:256])
    get_responses = [apdu for apdu in card.received if apdu[1] == 0xC0]
    assert len(get_responses) == -(-256 // 0x30)  # ceil(256 / 48) rounds


def test_6100_means_256_bytes_available() -> None:
    link = ScriptedLink([("0084000000", "6100"), ("00C0000000", "00" * 256 + "9000")])
    response = Channel(link).call(c.get_challenge(256))
    assert len(response.data) == 256


def test_endless_61xx_raises_instead_of_hanging() -> None:
    card = TinyCard(endless_61=True)
    channel = Channel(InProcessTransport(card), max_get_response=20)
    with pytest.raises(ProtocolError, match=r"GET CHALLENGE: card still answers 6101 after 20"):
        channel.send(c.get_challenge(8))
    assert len(card.received) == 1 + 20


def test_total_response_size_is_bounded() -> None:
    link = ScriptedLink(
        [("0084000000", "00" * 200 + "61FF")] + [("00C00000FF", "00" * 255 + "61FF")] * 3
    )
    channel = Channel(link, max_response_bytes=600)
    with pytest.raises(ProtocolError, match="exceeds 600 bytes"):
        channel.send(c.get_challenge(256))
    assert len(link.sent) == 3  # 200, +255, +255 > 600: stops before asking for more


def test_6cxx_resends_once_with_the_le_the_card_names() -> None:
    card = TinyCard(data_object=bytes(range(0x14)))
    channel = Channel(InProcessTransport(card))
    response = channel.call(CommandApdu(0x00, 0xCA, 0x01, 0x02, le=256, name="GET DATA"))
    assert response.data == bytes(range(0x14))
    assert card.received == [bytes.fromhex("00CA010200"), bytes.fromhex("00CA010214")]


def test_6cxx_followed_by_61xx_is_completed() -> None:
    card = TinyCard(t0=True, data_object=bytes(range(10)))
    response = Channel(InProcessTransport(card)).call(
        CommandApdu(0x00, 0xCA, 0x00, 0x00, le=1, name="GET DATA")
    )
    assert response.data == bytes(range(10))
    assert [apdu[1] for apdu in card.received] == [0xCA, 0xCA, 0xC0]


def test_repeated_6cxx_is_not_resent_again() -> None:
    link = ScriptedLink([("00CA000001", "6C05"), ("00CA000005", "6C07")])
    with pytest.raises(WrongLength) as info:
        Channel(link).call(CommandApdu(0x00, 0xCA, 0x00, 0x00, le=1, name="GET DATA"))
    assert info.value.sw == 0x6C07
    assert info.value.command == "GET DATA"
    assert link.done()


def test_chaining_splits_long_data_and_the_card_reassembles_it() -> None:
    card = TinyCard(binary=bytes(1024), max_command_data=255)
    channel = Channel(InProcessTransport(card), max_command_data=255)
    payload = bytes((i * 7) & 0xFF for i in range(600))
    channel.call(c.update_binary(0x10, payload))
    assert bytes(card.binary[0x10 : 0x10 + 600]) == payload
    parts = card.received
    assert [p[0] for p in parts] == [0x10, 0x10, 0x00]
    assert [p[4] for p in parts] == [255, 255, 90]
    assert all(p[2:4] == b"\x00\x10" for p in parts)


def test_chaining_puts_le_only_on_the_last_part() -> None:
    link = ScriptedLink(
        [
            ("10880000 04 01020304".replace(" ", ""), "9000"),
            ("00880000 02 0506 00".replace(" ", ""), "AABB9000"),
        ]
    )
    channel = Channel(link, max_command_data=4)
    response = channel.call(CommandApdu(0x00, 0x88, 0, 0, bytes(range(1, 7)), 256, name="X"))
    assert response.data == b"\xaa\xbb"
    assert link.done()


def test_chaining_stops_at_the_first_refused_part() -> None:
    link = ScriptedLink([("10D6000004" + "00" * 4, "6A80")])
    response = Channel(link, max_command_data=4).send(c.update_binary(0, bytes(10)))
    assert response.sw == 0x6A80
    assert link.done()


def test_secure_messaging_commands_are_not_chained() -> None:
    channel = Channel(ScriptedLink([]), max_command_data=16)
    with pytest.raises(ApduFormatError, match="CLA 04 is secure-messaging protected"):
        channel.send(c.update_binary(0, bytes(20), cla=0x04))


def test_long_data_without_chaining_is_refused_with_the_sizes() -> None:
    channel = Channel(ScriptedLink([]), max_command_data=16, chaining=False)
    with pytest.raises(ApduFormatError, match=r"UPDATE BINARY: 20 bytes .* maximum of 16"):
        channel.send(c.update_binary(0, bytes(20)))


def test_le_above_the_card_maximum_is_refused() -> None:
    channel = Channel(ScriptedLink([]), max_response=128)
    with pytest.raises(ApduFormatError, match=r"READ BINARY: Le 200 exceeds .* 128"):
        channel.send(c.read_binary(0, 200))


def test_call_raises_typed_error_with_command_name() -> None:
    link = ScriptedLink([("00A40000020001", "6A82")])
    with pytest.raises(NotFound, match="SELECT 0001: SW 6A82"):
        Channel(link).call(c.select_fid(0x0001))


def test_response_without_status_word_is_a_protocol_error() -> None:
    link = ScriptedLink([("0084000008", "90")])
    with pytest.raises(ProtocolError, match="GET CHALLENGE: response of 1 bytes"):
        Channel(link).send(c.get_challenge())


def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        Channel(ScriptedLink([]), max_command_data=0)


# -- the untraced fast path of call() behaves like the traced general path -------------------

_SCRIPTS = {
    "9000": [("00B2010405", "01020304059000")],
    "61xx": [("00B2010405", "6105"), ("00C0000005", "01020304059000")],
    "6Cxx": [("00B2010405", "6C03"), ("00B2010403", "0102039000")],
    "refused": [("00B2010405", "6A83")],
    "9000 without data": [("00B2010405", "9000")],
    "no status word": [("00B2010405", "90")],
}


def _outcome(channel: Channel, data_only: bool = False) -> tuple[str, object]:
    try:
        if data_only:
            data = channel.call_data(c.read_record(1, 5))
            return "ok", (data, 0x9000, type(data))
        response = channel.call(c.read_record(1, 5))
    except Exception as exc:  # the typed error is part of the behaviour compared
        return type(exc).__name__, str(exc)
    return "ok", (response.data, response.sw, type(response.data))


@pytest.mark.parametrize("data_only", [False, True], ids=["call", "call_data"])
@pytest.mark.parametrize("case", sorted(_SCRIPTS))
def test_call_without_trace_answers_as_with_trace(
    case: str, data_only: bool, tmp_path: Path
) -> None:
    fast_link, traced_link = ScriptedLink(_SCRIPTS[case]), ScriptedLink(_SCRIPTS[case])
    fast = _outcome(Channel(fast_link), data_only)
    with Tracer(tmp_path / "trace.jsonl") as tracer:
        traced = _outcome(Channel(traced_link, trace=tracer), data_only)
    assert fast == traced == _outcome(Channel(ScriptedLink(_SCRIPTS[case])))
    assert fast_link.sent == traced_link.sent
    assert fast_link.done()


def test_call_with_a_bytearray_link_returns_bytes() -> None:
    class BytearrayLink(ScriptedLink):
        def transmit(self, apdu: bytes) -> bytes:
            return bytearray(super().transmit(apdu))  # type: ignore[return-value]

    response = Channel(BytearrayLink(_SCRIPTS["9000"])).call(c.read_record(1, 5))
    assert type(response.data) is bytes and response.data == bytes.fromhex("0102030405")
    data = Channel(BytearrayLink(_SCRIPTS["9000"])).call_data(c.read_record(1, 5))
    assert type(data) is bytes and data == bytes.fromhex("0102030405")


def test_memoized_commands_encode_once_and_copies_re_encode() -> None:
    first, again = c.read_record(3, 0x20), c.read_record(3, 0x20)
    assert first is again and first.to_bytes() == bytes.fromhex("00B2030420")
    longer = first.with_le(0x30)
    assert longer.to_bytes() == bytes.fromhex("00B2030430")
    replaced = dataclasses.replace(first, p1=4)
    assert replaced.to_bytes() == bytes.fromhex("00B2040420") and replaced != first
