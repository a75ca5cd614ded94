"""A recorded run replays offline to the same verdicts; a tampered transcript does not."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from healthcard_apdu.conformance import ConformanceError, Status, replay_suite
from healthcard_apdu.security import KeySet, SoftwareSecurityModule
from healthcard_apdu.sim.defects import Defect, defective_card
from test_conformance_support import (
    failing_ids,
    fresh_card,
    fresh_image,
    keyset,
    profile_info,
    run_on,
    seeded_rng,
)


def _commands(trace: Path) -> list[str]:
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    return [r["command"] for r in lines if "command" in r]


def test_recorded_run_replays_to_the_same_verdicts(tmp_path: Path) -> None:
    # a defective card gives passes, failures and power cuts in one transcript
    card = defective_card(fresh_image(), Defect.TORN_WRITE_PARTIAL, rng=seeded_rng())
    live = run_on(card, destructive=True, trace=tmp_path / "live.jsonl")
    assert failing_ids(live) == {"HC-TEAR-002"}

    replay = replay_suite(tmp_path / "live.jsonl", SoftwareSecurityModule(keyset()),
                          profile=profile_info(), trace=tmp_path / "replay.jsonl")
    assert replay.mode == "replay"
    assert replay.verdicts() == live.verdicts()
    assert [r.message for r in replay.results] == [r.message for r in live.results]
    assert (replay.atr, replay.card_factor, replay.seed) == (live.atr, live.card_factor, live.seed)
    assert _commands(tmp_path / "replay.jsonl") == _commands(tmp_path / "live.jsonl")


def test_timing_verdicts_come_from_the_recorded_durations(tmp_path: Path) -> None:
    card = defective_card(fresh_image(), Defect.SLOW_INTERNAL_AUTH, delay=0.55,
                          rng=seeded_rng())
    live = run_on(card, groups=["timing"], trace=tmp_path / "live.jsonl")
    assert failing_ids(live) == {"HC-TIM-006"}
    replay = replay_suite(tmp_path / "live.jsonl", SoftwareSecurityModule(keyset()))
    assert replay.verdicts() == live.verdicts()  # replayed answers are instant, verdicts not


def test_a_tampered_answer_changes_only_its_case(tmp_path: Path) -> None:
    live = run_on(fresh_card(), trace=tmp_path / "live.jsonl")
    records = [json.loads(line) for line in (tmp_path / "live.jsonl").read_text().splitlines()]
    current = ""
    for record in records:
        if record.get("event") == "case":
            current = record["id"]
        elif current == "HC-ISS-005" and record.get("command", "").startswith("80E8"):
            record["response"] = record["sw"] = "9000"
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("".join(json.dumps(r) + "\n" for r in records))
    replay = replay_suite(tampered, SoftwareSecurityModule(keyset()))
    changed = {i for i, v in replay.verdicts().items() if v != live.verdicts()[i]}
    assert changed == {"HC-ISS-005"}
    assert replay.verdicts()["HC-ISS-005"] == Status.FAILED.value


def test_other_keys_diverge_from_the_transcript(tmp_path: Path) -> None:
    """Other keys do not confirm the recorded card's factor: the setup stops (the card's
    INTERNAL AUTHENTICATE answer is not theirs and the transcript holds no second try), so
    no case runs against keys that are not the card's."""
    run_on(fresh_card(), groups=["auth", "issuance"], trace=tmp_path / "live.jsonl")
    other = SoftwareSecurityModule(KeySet.generate())
    replay = replay_suite(tmp_path / "live.jsonl", other)
    assert "replay" in replay.setup_error and "0088" in replay.setup_error
    assert {r.status for r in replay.results} == {Status.ERROR}
    assert all(r.message.startswith("setup failed") for r in replay.results)


def test_replay_refuses_another_profile_and_foreign_traces(tmp_path: Path) -> None:
    run_on(fresh_card(), groups=["issuance"], trace=tmp_path / "live.jsonl")
    other = dataclasses.replace(profile_info(), sha256="0" * 64)
    with pytest.raises(ConformanceError, match="not the recorded profile"):
        replay_suite(tmp_path / "live.jsonl", SoftwareSecurityModule(keyset()), profile=other)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"n": 1, "name": "SELECT", "command": "00A4000000", '
                       '"response": "9000", "sw": "9000", "ms": 0.1}\n')
    with pytest.raises(ConformanceError, match="no conformance run header"):
        replay_suite(foreign, SoftwareSecurityModule(keyset()))
