"""Replay transport: wildcard matching, mismatches that name the step, transcript loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthcard_apdu.apdu import commands as c
from healthcard_apdu.transport import Channel, ReplayMismatch, ReplayTransport, TransportError


def _replay(*steps: tuple[str, str]) -> ReplayTransport:
    return ReplayTransport.from_records(
        [
            {"name": f"step {i}", "command": cmd, "response": rsp}
            for i, (cmd, rsp) in enumerate(steps, 1)
        ]
    )


def test_matching_commands_get_the_recorded_responses() -> None:
    replay = _replay(("00A40000023F00", "9000"), ("0084000008", "0102030405060708 9000"))
    assert replay.transmit(bytes.fromhex("00A40000023F00")) == bytes.fromhex("9000")
    assert replay.transmit(bytes.fromhex("0084000008")) == bytes.fromhex("01020304050607089000")
    assert replay.remaining == 0
    replay.assert_done()


def test_mismatch_names_the_step_and_both_commands() -> None:
    replay = _replay(("00A40000023F00", "9000"), ("00A4000002DF01", "9000"))
    replay.transmit(bytes.fromhex("00A40000023F00"))
    with pytest.raises(ReplayMismatch) as info:
        replay.transmit(bytes.fromhex("00A4000002DF02"))
    error = info.value
    assert error.step == 2
    assert error.expected == "00A4000002DF01"
    assert error.got == "00A4000002DF02"
    assert "replay step 2" in str(error)
    assert "00A4000002DF01" in str(error) and "00A4000002DF02" in str(error)


def test_wildcards_match_any_value_but_not_another_length() -> None:
    replay = _replay(("0020000003******", "9000"), ("0020000003******", "9000"))
    assert replay.transmit(bytes.fromhex("0020000003123456")) == b"\x90\x00"
    with pytest.raises(ReplayMismatch, match="step 2"):
        replay.transmit(bytes.fromhex("002000000412345678"))


def test_mismatch_does_not_echo_a_secret_in_masked_positions() -> None:
    replay = _replay(("0020000103******", "9000"))
    with pytest.raises(ReplayMismatch) as info:
        replay.transmit(c.verify_pin(0x00, bytes.fromhex("987654")).to_bytes())
    assert "987654" not in str(info.value)
    assert info.value.got == "0020000003******"


def test_mismatch_masks_rule_secrets_even_where_the_transcript_is_not_masked() -> None:
    replay = _replay(("00A40000023F00", "9000"))
    with pytest.raises(ReplayMismatch) as info:
        replay.transmit(c.verify_pin(0x01, bytes.fromhex("246801")).to_bytes())
    assert "246801" not in str(info.value)


def test_transcript_end_and_unsent_steps_are_reported() -> None:
    replay = _replay(("00A40000023F00", "9000"), ("0084000008", "6D00"))
    with pytest.raises(ReplayMismatch, match="step 1: transcript step never sent"):
        replay.assert_done()
    replay.transmit(bytes.fromhex("00A40000023F00"))
    replay.transmit(bytes.fromhex("0084000008"))
    with pytest.raises(ReplayMismatch, match="step 3: transcript has ended"):
        replay.transmit(bytes.fromhex("00A40000023F00"))


def test_steps_are_the_recorded_exchange_numbers_of_a_trace_segment() -> None:
    # a segment cut from a longer trace (as conformance replays do): the step named in a
    # mismatch must be the trace's "n", so that it points at the right line of the file
    replay = ReplayTransport.from_records(
        [
            {"event": "reset", "atr": "3B00"},
            {"n": 5, "command": "00A40000023F00", "response": "9000"},
            {"n": 6, "command": "00A4000002DF01", "response": "9000"},
        ]
    )
    replay.reset()
    replay.transmit(bytes.fromhex("00A40000023F00"))
    with pytest.raises(ReplayMismatch, match="replay step 6: command differs") as info:
        replay.transmit(bytes.fromhex("00A4000002DF02"))
    assert info.value.step == 6
    replay.transmit(bytes.fromhex("00A4000002DF01"))
    with pytest.raises(ReplayMismatch, match="step 7: transcript has ended"):
        replay.transmit(bytes.fromhex("00A40000023F00"))


def test_channel_over_replay_reports_the_step_of_a_get_response() -> None:
    replay = _replay(("00A40000023F0000", "6104"), ("00C0000004", "6F0283029000"))
    channel = Channel(replay)
    assert channel.call(c.select_fid(0x3F00, fci=True)).data == bytes.fromhex("6F028302")
    replay = _replay(("00A40000023F0000", "6104"), ("00C0000008", "9000"))
    with pytest.raises(ReplayMismatch, match="step 2: command differs from step 2"):
        Channel(replay).call(c.select_fid(0x3F00, fci=True))


def test_reset_events_are_consumed_and_expected() -> None:
    replay = ReplayTransport.from_records(
        [
            {"event": "open", "atr": "3B00"},
            {"event": "reset", "atr": "3B800181"},
            {"command": "00A40000023F00", "response": "9000"},
        ]
    )
    assert replay.atr() == bytes.fromhex("3B00")
    with pytest.raises(ReplayMismatch, match="transcript expects a reset"):
        replay.transmit(bytes.fromhex("00A40000023F00"))
    assert replay.reset() == bytes.fromhex("3B800181")
    assert replay.transmit(bytes.fromhex("00A40000023F00")) == b"\x90\x00"


def test_from_jsonl_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"command": "00A4", "response": "9000"}) + "\n\n{not json\n")
    with pytest.raises(TransportError, match=r"bad.jsonl:3: not JSON"):
        ReplayTransport.from_jsonl(path)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"command": "00A4", "response": "90"}, "no status word"),
        ({"command": "00A4", "response": "90**"}, "is not hex"),
        ({"command": "00A", "response": "9000"}, "is not masked hex"),
        ({"response": "9000"}, "neither an exchange nor an event"),
    ],
)
def test_bad_records_are_rejected(record: dict[str, object], message: str) -> None:
    with pytest.raises(TransportError, match=message):
        ReplayTransport.from_records([record])


def test_closed_replay_refuses_to_transmit() -> None:
    replay = _replay(("00A40000023F00", "9000"))
    replay.close()
    with pytest.raises(TransportError, match="closed"):
        replay.transmit(bytes.fromhex("00A40000023F00"))
