"""JSONL tracing: record fields, secret masking (never written), and replay of recorded traces."""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import pytest

from healthcard_apdu.apdu import CommandApdu
from healthcard_apdu.apdu import commands as c
from healthcard_apdu.transport import (
    CardRemovedError,
    Channel,
    InProcessTransport,
    ReplayTransport,
    Tracer,
    read_trace,
)
from healthcard_apdu.transport.testing import TinyCard

KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
PIN = bytes.fromhex("123456")


def _records(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def _exchanges(stream: io.StringIO) -> list[dict[str, object]]:
    return [r for r in _records(stream) if "command" in r]


def _traced(card: TinyCard | None = None, **channel_args: int) -> tuple[Channel, io.StringIO]:
    stream = io.StringIO()
    transport = InProcessTransport(card or TinyCard())
    return Channel(transport, trace=Tracer(stream), **channel_args), stream


def test_exchange_record_fields() -> None:
    channel, stream = _traced()
    channel.call(c.select_fid(0x3F00))
    channel.send(c.select_fid(0x1234))
    first, second = _exchanges(stream)
    assert first["n"] == 1 and second["n"] == 2
    assert first["name"] == "SELECT 3F00"
    assert first["command"] == "00A40000023F00"
    assert first["response"] == "9000" and first["sw"] == "9000"
    assert second["sw"] == "6A82"
    assert isinstance(first["ms"], float) and first["ms"] >= 0
    assert datetime.fromisoformat(str(first["t"])).tzinfo is not None


def test_open_event_records_transport_and_atr() -> None:
    _, stream = _traced()
    (opened,) = _records(stream)
    assert opened["event"] == "open"
    assert opened["transport"] == "inprocess"
    assert opened["atr"] == "3B800181"


def test_plaintext_write_key_value_never_reaches_the_trace() -> None:
    channel, stream = _traced()
    header = bytes.fromhex("39F0F0AA33")
    channel.send(c.write_key(0x01, 0x00, header + KEY))
    text = stream.getvalue()
    assert KEY.hex().upper() not in text.upper()
    (record,) = _exchanges(stream)
    assert record["command"] == "80D4010015" + "39F0F0AA33" + "*" * 32


def test_secured_write_key_masks_the_whole_cryptogram() -> None:
    channel, stream = _traced()
    cryptogram = KEY + bytes.fromhex("11223344")
    channel.send(c.write_key(0x39, 0x00, cryptogram, cla=0x84))
    (record,) = _exchanges(stream)
    assert record["command"] == "84D4390014" + "*" * 40
    assert KEY.hex().upper() not in stream.getvalue().upper()


@pytest.mark.parametrize(
    "cmd",
    [c.verify_pin(0x00, PIN), c.change_pin(0x00, PIN, bytes.fromhex("654321"))],
    ids=["verify", "change-pin"],
)
def test_pins_are_masked(cmd: CommandApdu) -> None:
    channel, stream = _traced()
    channel.send(cmd)
    (record,) = _exchanges(stream)
    command = str(record["command"])
    assert command[:10] == cmd.to_bytes()[:5].hex().upper()
    assert set(command[10:]) == {"*"}
    assert len(command) == 2 * len(cmd.to_bytes())
    assert PIN.hex() not in stream.getvalue().lower()


def test_sam_encrypt_input_is_masked() -> None:
    channel, stream = _traced()
    channel.send(c.sam_cipher(bytes(16) + KEY))
    (record,) = _exchanges(stream)
    assert record["command"] == "80FA000020" + "*" * 64


def test_caller_marked_secret_ranges() -> None:
    channel, stream = _traced()
    data = bytes.fromhex("A1A2A3A4A5A6A7A8")
    channel.send(CommandApdu(0x00, 0xD6, 0, 0, data, name="UPDATE"), secret=(2, 5))
    channel.send(CommandApdu(0x00, 0xD6, 0, 0, data, name="UPDATE"), secret=True)
    channel.send(CommandApdu(0x00, 0xD6, 0, 0, data, name="UPDATE"), secret=[(0, 1), (7, 8)])
    first, second, third = (str(r["command"]) for r in _exchanges(stream))
    assert first == "00D6000008" + "A1A2" + "******" + "A6A7A8"
    assert second == "00D6000008" + "*" * 16
    assert third == "00D6000008" + "**" + "A2A3A4A5A6A7" + "**"


def test_secret_crossing_chained_parts_is_masked_in_each_part() -> None:
    card = TinyCard(binary=bytes(64))
    channel, stream = _traced(card, max_command_data=8)
    secret = bytes.fromhex("5EC5E7")  # bytes 6..9 straddle the first part boundary (8)
    data = bytes(6) + secret + bytes(5)
    channel.call(c.update_binary(0, data), secret=(6, 9))
    commands = [str(r["command"]) for r in _exchanges(stream)]
    assert commands == [
        "10D6000008" + "000000000000" + "****",
        "00D6000006" + "**" + "0000000000",
    ]
    assert bytes(card.binary[:14]) == data  # the card got the real bytes


def test_trace_file_written_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    with Tracer(path) as tracer:
        channel = Channel(InProcessTransport(TinyCard()), trace=tracer)
        channel.call(c.select_fid(0x3F00))
        assert tracer.count == 1
    records = read_trace(path)
    assert [r.get("event") for r in records] == ["open", None]


def _session(channel: Channel) -> list[tuple[bytes, int]]:
    """A fixed command sequence; returns (data, sw) of each response."""
    out = []
    for cmd, secret in [
        (c.select_fid(0x3F00, fci=True), ()),
        (c.get_challenge(8), ()),
        (c.read_binary(0, 256), ()),
        (c.write_key(0x01, 0x01, bytes.fromhex("39F0F0AA33") + KEY), ()),
        (c.verify_pin(0x00, PIN), ()),
        (CommandApdu(0x00, 0xCA, 0, 0, le=1, name="GET DATA"), ()),
        (c.update_binary(0, bytes(range(20))), (0, 20)),
    ]:
        response = channel.send(cmd, secret=secret)
        out.append((response.data, response.sw))
    out.append((channel.reset(), 0))
    response = channel.send(c.select_fid(0xDF01))
    out.append((response.data, response.sw))
    return out


def test_recorded_trace_replays_with_the_same_results(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    card = TinyCard(t0=True, t0_chunk=0x50)
    with Tracer(path) as tracer:
        recorded = _session(Channel(InProcessTransport(card), trace=tracer))
    assert KEY.hex().upper() not in path.read_text().upper()
    assert PIN.hex().upper() not in path.read_text().upper()

    replay = ReplayTransport.from_jsonl(path)
    assert replay.atr() == card.atr()
    replayed = _session(Channel(replay))
    assert replayed == recorded
    replay.assert_done()


def test_replayed_trace_can_be_traced_again_identically(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with Tracer(first) as tracer:
        _session(Channel(InProcessTransport(TinyCard(t0=True)), trace=tracer))
    with Tracer(second) as tracer:
        _session(Channel(ReplayTransport.from_jsonl(first), trace=tracer))

    def strip(path: Path) -> list[dict[str, object]]:
        return [
            {k: v for k, v in r.items() if k not in ("t", "ms", "transport")}
            for r in read_trace(path)
        ]

    assert strip(first) == strip(second)


def test_transport_errors_are_traced_and_replayed(tmp_path: Path) -> None:
    path = tmp_path / "removed.jsonl"
    card = TinyCard()
    with Tracer(path) as tracer:
        channel = Channel(InProcessTransport(card), trace=tracer)
        channel.call(c.select_fid(0x3F00))
        card.present = False
        with pytest.raises(CardRemovedError):
            channel.call(c.select_fid(0x3F00))
    last = read_trace(path)[-1]
    assert last["error"] == "CardRemovedError"
    assert "response" not in last

    replay = Channel(ReplayTransport.from_jsonl(path))
    replay.call(c.select_fid(0x3F00))
    with pytest.raises(CardRemovedError, match="card removed"):
        replay.call(c.select_fid(0x3F00))
