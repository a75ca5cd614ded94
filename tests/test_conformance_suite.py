"""The suite against the simulated card: the healthy card passes, each seeded defect is caught."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from healthcard_apdu.conformance import (
    ConformanceError,
    Group,
    RunOptions,
    SimPowerFaults,
    Status,
    all_cases,
    find_cases,
    run_suite,
    select_cases,
)
from healthcard_apdu.conformance.cases.access import expected_allowed
from healthcard_apdu.model import EFS
from healthcard_apdu.security import SoftwareSecurityModule
from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.security.psam import PsamSecurityModule
from healthcard_apdu.sim import SimCard, SimSam
from healthcard_apdu.sim.defects import Defect, defective_card
from healthcard_apdu.sim.image import encode_image
from healthcard_apdu.sim.sam import sam_state_from_json
from healthcard_apdu.transport import Channel, InProcessTransport
from test_conformance_support import (
    failing_ids,
    fresh_card,
    fresh_image,
    keyset,
    profile_info,
    run_on,
    seeded_rng,
)

REPO = Path(__file__).resolve().parents[1]


def _ids(**params: str) -> set[str]:
    found = {c.id for c in find_cases(**params)}
    assert found, f"no case with {params}"
    return found


# Which cases each seeded defect must fail, found through the cases' metadata where the
# cases are generated from the layout.
EXPECTED_FAILURES: dict[Defect, Callable[[], set[str]]] = {
    Defect.STATE_SURVIVES_WARM_RESET: lambda: {"HC-ATR-005"},
    Defect.WRONG_FCI: lambda: _ids(df="DF02"),
    Defect.WRONG_RECORD_LENGTH: lambda: {c for c in _ids(file="DF01/EF07")
                                         if c.startswith("HC-SIZ")},
    Defect.BAD_ITEM_ENCODING: lambda: {c for c in _ids(file="DDF1/EF05")
                                       if c.startswith("HC-ENC")},
    Defect.READ_WITHOUT_AUTH: lambda: _ids(file="DF01/EF08", op="read", expected="refused"),
    Defect.COUNTER_NEVER_BLOCKS: lambda: {"HC-AUTH-050"},
    Defect.MAC_NOT_CHECKED: lambda: {"HC-SM-002", "HC-SM-007"},
    Defect.CYCLIC_APPENDS_AT_END: lambda: {"HC-CYC-001", "HC-CYC-002"},
    Defect.BAD_RECORD_SIGNATURE: lambda: {"HC-SIG-001"},
    Defect.BLOCK_IGNORED: lambda: {"HC-BLK-001", "HC-BLK-003"},
    Defect.CREATE_AFTER_ISSUANCE: lambda: {"HC-ISS-001"},
    Defect.SLOW_INTERNAL_AUTH: lambda: {"HC-TIM-006"},
    Defect.TORN_WRITE_PARTIAL: lambda: {"HC-TEAR-002"},
}


def test_healthy_card_passes_every_case_including_destructive_ones() -> None:
    run = run_on(fresh_card(), destructive=True)
    assert len(run.results) == len(all_cases())
    not_passed = {r.info.id: (r.status.value, r.message) for r in run.results
                  if r.status is not Status.PASSED}
    assert not_passed == {}
    assert run.passed
    assert run.card_factor == "0081866B00001015"
    assert run.region_code == "110000"


def test_non_destructive_run_leaves_the_card_as_it_was() -> None:
    card = fresh_card()
    before = encode_image(card.image)
    run = run_on(card)
    assert run.passed
    skipped = {r.info.id for r in run.results if r.status is Status.SKIPPED}
    assert skipped == {c.id for c in all_cases() if c.destructive}
    assert encode_image(card.image) == before  # data, keys and every try counter


def test_destructive_cases_run_last_and_the_card_block_is_the_very_last() -> None:
    order = [c.id for c in all_cases()]
    destructive = [c.id for c in all_cases() if c.destructive]
    assert order[-len(destructive):] == destructive
    assert order[-1] == "HC-BLK-004"


@pytest.mark.parametrize("defect", list(Defect), ids=lambda d: d.value)
def test_each_seeded_defect_fails_exactly_the_cases_that_catch_it(defect: Defect) -> None:
    card = defective_card(fresh_image(), defect, rng=seeded_rng())
    run = run_on(card, destructive=True)
    assert failing_ids(run) == EXPECTED_FAILURES[defect]()
    assert all(r.status is Status.FAILED for r in run.results if r.status.is_problem)


def test_every_group_has_a_defect_that_only_it_catches() -> None:
    groups_caught = set()
    for expected in EXPECTED_FAILURES.values():
        groups = {c.group for c in all_cases() if c.id in expected()}
        if len(groups) == 1:
            groups_caught |= groups
    assert groups_caught == set(Group)


def test_defect_target_is_configurable() -> None:
    card = defective_card(fresh_image(), Defect.READ_WITHOUT_AUTH, target="DF02/EF05",
                          rng=seeded_rng())
    run = run_on(card, groups=["access"])
    assert failing_ids(run) == _ids(file="DF02/EF05", op="read", expected="refused")
    assert len(failing_ids(run)) == 4  # none, UK1, UK2, UK3 of DF02


def test_cases_do_not_depend_on_the_ones_before_them() -> None:
    full = run_on(fresh_card()).verdicts()
    card = fresh_card()
    for info in all_cases()[::9]:
        alone = run_on(card, patterns=[info.id])
        assert alone.verdicts() == {info.id: full[info.id]}, info.id


def test_t0_card_passes_too() -> None:
    image = fresh_image()
    image.protocol = "T=0"
    run = run_on(SimCard(image, rng=seeded_rng()), groups=["atr", "sm", "files"])
    assert run.passed and run.protocol == "T=0"


def test_tearing_is_not_applicable_without_power_control() -> None:
    card = fresh_card()
    run = run_suite(InProcessTransport(card), SoftwareSecurityModule(keyset()),
                    profile=profile_info(),
                    options=RunOptions(groups=["tearing"], destructive=True))
    assert {r.status for r in run.results} == {Status.NOT_APPLICABLE}


def test_destructive_run_is_refused_on_a_production_profile(tmp_path: Path) -> None:
    card = fresh_card()
    production = dataclasses.replace(profile_info(), production=True)
    with pytest.raises(ConformanceError, match="production"):
        run_suite(InProcessTransport(card), SoftwareSecurityModule(keyset()),
                  profile=production, options=RunOptions(destructive=True),
                  trace=tmp_path / "trace.jsonl")
    assert card.apdu_count == 0
    # without --destructive a production card is fine
    run = run_suite(InProcessTransport(card), SoftwareSecurityModule(keyset()),
                    profile=production, options=RunOptions(groups=["issuance"]))
    assert run.passed


def test_missing_city_data_fails_the_setup_not_the_run() -> None:
    image = fresh_image()
    ddf1 = image.mf.children[0xDDF1]
    ddf1.children[0xEF05].records = [r for r in ddf1.children[0xEF05].records  # type: ignore[union-attr]
                                     if r[0] != 0x39]
    run = run_on(SimCard(image, rng=seeded_rng()), groups=["atr"])
    assert "YYCSDM" in run.setup_error
    assert {r.status for r in run.results} == {Status.ERROR}
    assert not run.passed


def test_case_ids_are_unique_well_formed_and_reference_documents() -> None:
    cases = all_cases()
    assert len({c.id for c in cases}) == len(cases)
    for info in cases:
        document = info.reference.split()[0]
        if document.startswith("docs/"):
            assert (REPO / document).exists(), info.id
    assert {c.group for c in cases} == set(Group)


def test_access_matrix_covers_every_file_operation_and_state() -> None:
    access = [c for c in all_cases() if c.group is Group.ACCESS]
    for target in EFS:
        ops = {c.params["op"] for c in access if c.params["file"] == target.path}
        assert ops == ({"read", "write", "erase"} if target.erase_key else {"read", "write"})
    # nothing is writable without its update key, and no file is readable after an update key
    for info in access:
        target = next(e for e in EFS if e.path == info.params["file"])
        state = None if info.params["state"] == "none" else info.params["state"]
        allowed = expected_allowed(target, info.params["op"], state)
        assert info.params["expected"] == ("allowed" if allowed else "refused")
        if state is not None and state.startswith("UK") and info.params["op"] == "read":
            assert target.read_key is None or not allowed


def test_selection_by_pattern_and_group() -> None:
    assert {c.id for c in select_cases(["HC-ATR-00*"])} == {f"HC-ATR-00{n}" for n in range(1, 8)}
    assert {c.group for c in select_cases(groups=["sm"])} == {Group.SM}
    with pytest.raises(ConformanceError):
        select_cases(["HC-NOPE-*"])
    with pytest.raises(ConformanceError):
        select_cases(groups=["nope"])


def test_the_matching_simulated_sam_can_be_the_security_module() -> None:
    keys = keyset()
    sam = SimSam(sam_state_from_json(simulator_sam_document(keys)))
    psam = PsamSecurityModule(Channel(InProcessTransport(sam)), pin=keys.sam_pin,
                              algorithm=keys.algorithm)
    card = fresh_card()
    run = run_suite(InProcessTransport(card), psam, profile=profile_info(),
                    options=RunOptions(destructive=True), faults=SimPowerFaults(card))
    assert run.security == "psam"
    assert {r.status for r in run.results} == {Status.PASSED}
