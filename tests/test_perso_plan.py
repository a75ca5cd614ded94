"""The personalization plan: pure, deterministic, minimal, masked."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthcard_apdu import model
from healthcard_apdu.card.signing import valid_signature
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.perso.chunks import cover
from healthcard_apdu.perso.errors import ProfileError, SecurityModuleUnsuitable
from healthcard_apdu.perso.minimum import minimum_cost
from healthcard_apdu.perso.plan import Plan, build_plan
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.security import CardFactors, KeySpec, SoftwareSecurityModule
from healthcard_apdu.security.errors import UnsupportedOperation
from perso_support import (
    CARD_FACTOR,
    card_keys,
    keyset,
    profile_variant,
    resident_for,
    software,
)

_AUDITING: list[list[str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _AUDITING or event.split(".")[0] not in ("open", "socket", "subprocess", "os"):
        return
    if event == "open" and str(args[0]).endswith((".py", ".pyc")):
        return  # a lazy import (e.g. the GBK codec), not I/O of the code under test
    _AUDITING[-1].append(f"{event} {args[0]!r}")


sys.addaudithook(_audit)


@contextmanager
def _io_events() -> Iterator[list[str]]:
    events: list[str] = []
    _AUDITING.append(events)
    try:
        yield events
    finally:
        _AUDITING.pop()


def _plan(name: str = "national-32k", **kwargs: Any) -> Plan:
    profile = load_profile(name)
    algorithm = profile.algorithm
    return build_plan(profile, resident_for(name), CARD_FACTOR, software(algorithm), **kwargs)


def _commands(plan: Plan) -> list[tuple[str, str, bytes | None]]:
    return [(s.name, s.kind, None if s.command is None else s.command.to_bytes())
            for s in plan.steps]


def test_plan_is_deterministic_and_does_no_io() -> None:
    profile = load_profile("national-32k")
    module = software()
    resident = model.sample_resident()
    with _io_events() as events:
        first = build_plan(profile, resident, CARD_FACTOR, module)
        second = build_plan(profile, resident, CARD_FACTOR, module)
    assert events == []
    assert _commands(first) == _commands(second)
    other = build_plan(profile, resident, bytes(8), module)
    assert _commands(other) != _commands(first)


@pytest.mark.parametrize("name", ["national-32k", "compact-8k"])
def test_plan_meets_the_documented_minimum(name: str) -> None:
    plan = _plan(name)
    assert plan.record is not None  # the record as written: EE/ED signed by the module
    minimum = minimum_cost(plan.profile, plan.record)
    assert (plan.apdus, plan.bytes) == (minimum.apdus, minimum.bytes)
    counts = plan.counts()
    for part, (apdus, _bytes) in minimum.parts.items():
        assert counts[part] == apdus, part
    # fixed structure: one CREATE per DF, key file, key and EF
    profile = plan.profile
    assert counts["create_df"] == counts["create_key_file"] == len(profile.dfs)
    assert counts["write_key"] == len(profile.keys)
    assert counts["create_ef"] == len(profile.files)
    assert counts["write"] == counts["read"]
    assert counts["end_issuance"] == 1 and plan.steps[-1].kind == "end_issuance"
    assert plan.steps[0].command is not None
    assert plan.steps[0].command.to_bytes()[:4] == bytes.fromhex("80E03F00")


def test_plan_without_read_back_or_end_issuance(tmp_path: Path) -> None:
    full = _plan()
    bare = _plan(read_back=False)
    assert "read" not in bare.counts() and "authenticate" not in bare.counts()
    assert bare.apdus == full.apdus - full.counts()["read"] - 2 * full.counts()["authenticate"]
    assert bare.record is not None
    assert bare.apdus == minimum_cost(bare.profile, bare.record, read_back=False).apdus
    profile = profile_variant("national-32k", {"end_issuance = true": "end_issuance = false"},
                              tmp_path)
    plan = build_plan(profile, model.sample_resident(), CARD_FACTOR, software())
    assert plan.steps[-1].kind != "end_issuance" and plan.apdus == full.apdus - 1


def test_unknown_binary_fill_writes_every_byte(tmp_path: Path) -> None:
    profile = profile_variant("national-32k", {"binary_fill = 0x00": "binary_fill = -1"},
                              tmp_path)
    assert profile.card.binary_fill is None
    plan = build_plan(profile, model.sample_resident(), CARD_FACTOR, software())
    photo = [s for s in plan.steps if s.kind == "write" and s.file == "DDF1/EF07"]
    assert len(photo) == -(-3074 // 255)
    assert sum(len(s.command.data) for s in photo if s.command is not None) == 3074
    assert plan.record is not None
    assert plan.apdus == minimum_cost(profile, plan.record).apdus


def test_read_back_is_preceded_by_the_read_key_in_each_df() -> None:
    plan = _plan()
    current_df = None
    authenticated: set[str] = set()
    for step in plan.steps:
        if step.kind == "create_df":
            current_df = step.df
        if step.kind == "authenticate":
            assert step.df == current_df and step.role == f"RK1_{current_df}"
            authenticated.add(step.role or "")
        if step.kind == "read" and step.file != "DDF1/EF05":
            assert f"RK1_{step.df}" in authenticated
    assert authenticated == {"RK1_DDF1", "RK1_DF01", "RK1_DF02", "RK1_DF03"}


def test_binary_writes_rebuild_the_file_image() -> None:
    plan = _plan()
    sample = model.sample_resident()
    images: dict[str, bytearray] = {}
    sizes = {"DDF1/EF07": 3074, "DF03/EE01": 1893, "DF03/ED01": 3267}
    for step in plan.steps:
        if step.kind == "write" and step.command is not None and step.command.ins == 0xD6:
            cmd = step.command
            offset = cmd.p2 if cmd.p1 & 0x80 else (cmd.p1 << 8) | cmd.p2
            image = images.setdefault(step.file or "", bytearray(sizes[step.file or ""]))
            image[offset : offset + len(cmd.data)] = cmd.data
            assert len(cmd.data) <= plan.profile.card.max_command_data
    assert bytes(images["DDF1/EF07"]) == sample.photo.to_bytes()
    inpatient, outpatient = sample.inpatient[0], sample.outpatient[0]
    assert inpatient is not None and outpatient is not None
    # the data part as given; the signature and certificate the module added verify over it
    written_in = type(inpatient).from_bytes(bytes(images["DF03/EE01"]))
    written_out = type(outpatient).from_bytes(bytes(images["DF03/ED01"]))
    size_in, size_out = type(inpatient).data_length(), type(outpatient).data_length()
    assert bytes(images["DF03/EE01"])[:size_in] == inpatient.to_bytes()[:size_in]
    assert bytes(images["DF03/ED01"])[:size_out] == outpatient.to_bytes()[:size_out]
    assert valid_signature(written_in) and valid_signature(written_out)
    assert not valid_signature(inpatient)  # the sample record came unsigned
    assert set(images) == set(sizes)  # empty EE/ED slots are not written


def test_dry_run_masks_every_key_value() -> None:
    plan = _plan()
    document = json.dumps(plan.to_json(include_erase=True))
    texts = [document, repr(plan), *map(repr, plan.steps), str(plan.steps)]
    ks = keyset()
    secrets = [k.value for k in ks.keys.values()]
    secrets += list(card_keys(ks, plan.profile).values())
    for secret in secrets:
        for text in texts:
            for form in (secret.hex(), secret.hex().upper(), secret[:8].hex().upper()):
                assert form not in text
    parsed = json.loads(document)
    write_keys = [s for s in parsed["steps"] if s["kind"] == "write_key"]
    assert len(write_keys) == len(plan.profile.keys)
    assert all(s["apdu"].endswith("*" * 32) and s["secret"] for s in write_keys)
    assert parsed["apdus"] == parsed["minimum"]["apdus"] == plan.apdus
    auths = [s for s in parsed["steps"] if s["kind"] == "authenticate"]
    assert auths and all(s["apdu"] is None for s in auths)
    # the last erase step is sent only for a card torn before its MF master key was written
    assert [s["kind"] for s in parsed["erase_steps"]] == ["challenge", "authenticate", "erase",
                                                          "write_key"]
    assert parsed["erase_steps"][3]["apdu"].endswith("*" * 32)


def test_invalid_record_and_wrong_module_are_refused_before_the_card() -> None:
    profile = load_profile("national-32k")
    data = model.sample_resident().to_json(keys="code")
    data["DDF1EF06"]["XB"] = 7
    data["DDF1EF06"]["MZ"] = "77"
    with pytest.raises(ProfileError) as caught:
        build_plan(profile, data, CARD_FACTOR, software())
    assert {p.path for p in caught.value.problems} == {"record.DDF1EF06.XB",
                                                       "record.DDF1EF06.MZ"}
    with pytest.raises(SecurityModuleUnsuitable, match=r"SM4 keys.*3DES keys"):
        build_plan(profile, model.sample_resident(), CARD_FACTOR, software(BlockCipher.TDES))
    with pytest.raises(ProfileError, match="card_factor"):
        build_plan(profile, model.sample_resident(), b"\x01\x02", software())

    class NoDerive(SoftwareSecurityModule):
        name = "psam-like"

        def derive_card_key(self, key: KeySpec, factors: CardFactors) -> bytes:
            raise UnsupportedOperation("a PSAM does not give card keys")

    with pytest.raises(SecurityModuleUnsuitable, match="cannot derive the card key MK_MF"):
        build_plan(profile, model.sample_resident(), CARD_FACTOR, NoDerive(keyset()))


def test_every_key_missing_from_the_key_set_is_reported_before_the_card() -> None:
    profile = load_profile("national-32k")
    full = keyset()
    partial = dataclasses.replace(full, keys={role: key for role, key in full.keys.items()
                                              if role not in ("UK1_DF01", "RK1_DF02")})
    resident = model.sample_resident()
    with _io_events() as events, pytest.raises(SecurityModuleUnsuitable) as caught:
        build_plan(profile, resident, CARD_FACTOR, SoftwareSecurityModule(partial))
    assert "2 key(s)" in str(caught.value)
    assert "'UK1_DF01'" in str(caught.value) and "'RK1_DF02'" in str(caught.value)
    assert events == []


# --- the chunking that defines the binary minimum ------------------------------------------


def _brute_force(data: bytes, fill: int, window: int) -> tuple[int, int]:
    """O(n^2) lexicographic optimum (count, bytes) over all covers of the non-fill bytes."""
    positions = [i for i, b in enumerate(data) if b != fill]
    best: list[tuple[int, int]] = [(0, 0)]
    for j in range(1, len(positions) + 1):
        options = [
            (best[i - 1][0] + 1, best[i - 1][1] + positions[j - 1] - positions[i - 1] + 1)
            for i in range(1, j + 1)
            if positions[j - 1] - positions[i - 1] < window
        ]
        best.append(min(options))
    return best[-1]


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([0, 0, 0, 0, 1, 0xFF]), max_size=120).map(bytes),
    window=st.integers(1, 20),
)
def test_cover_is_optimal_and_covers_every_byte(data: bytes, window: int) -> None:
    ranges = cover(data, 0, window)
    covered: set[int] = set()
    previous_end = -1
    for offset, length in ranges:
        assert 1 <= length <= window and offset > previous_end
        assert data[offset] != 0 and data[offset + length - 1] != 0
        covered.update(range(offset, offset + length))
        previous_end = offset + length - 1
    assert {i for i, b in enumerate(data) if b} <= covered
    assert (len(ranges), sum(n for _, n in ranges)) == _brute_force(data, 0, window)


def test_cover_without_known_fill_writes_everything() -> None:
    assert cover(bytes(600), None, 255) == [(0, 255), (255, 255), (510, 90)]
    assert cover(bytes(600), 0, 255) == []
