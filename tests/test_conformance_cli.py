"""``healthcard conformance run / list``: exit codes, report files, replay, production guard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from healthcard_apdu.cli.conformance import conformance_group
from healthcard_apdu.conformance import all_cases
from healthcard_apdu.perso.profile import builtin_profile_path
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.defects import Defect, defective_card
from healthcard_apdu.sim.image import load_image, save_image
from test_conformance_support import PROFILE, fresh_image, keyset


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(keyset().to_plain_dict()))
    card = tmp_path / "card.json"
    save_image(fresh_image(), card, durable=False)
    return {"keys": keys, "card": card, "dir": tmp_path}


def _run(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(conformance_group, ["run", *map(str, args)])
    return result.exit_code, result.output


def test_list_shows_every_case_and_filters_by_group() -> None:
    result = CliRunner().invoke(conformance_group, ["list", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert [r["id"] for r in rows] == [c.id for c in all_cases()]
    assert {r["destructive"] for r in rows if r["id"] == "HC-BLK-004"} == {True}
    table = CliRunner().invoke(conformance_group, ["list", "--group", "issuance"])
    assert table.exit_code == 0
    assert "HC-ISS-001" in table.output and "HC-SM-001" not in table.output
    assert CliRunner().invoke(conformance_group, ["list", "--group", "nope"]).exit_code == 2


def test_run_on_a_conforming_simulated_card_exits_0(files: dict[str, Path]) -> None:
    out = files["dir"] / "out"
    code, output = _run("--sim-card", files["card"], "--profile", PROFILE, "--keys", files["keys"],
                        "--report", out, "--group", "sm", "--group", "issuance")
    assert code == 0, output
    assert output.startswith("PASS")
    assert {p.name for p in out.iterdir()} == {"report.json", "junit.xml", "report.html",
                                              "trace.jsonl"}
    # the replay of that transcript reaches the same verdicts, offline
    again = files["dir"] / "again"
    code, output = _run("--replay", out / "trace.jsonl", "--keys", files["keys"],
                        "--report", again, "--json")
    assert code == 0, output
    live = json.loads((out / "report.json").read_text())
    replayed = json.loads((again / "report.json").read_text())
    assert [(c["id"], c["status"]) for c in replayed["cases"]] == [
        (c["id"], c["status"]) for c in live["cases"]]
    assert replayed["mode"] == "replay"


def test_run_with_a_failing_case_exits_1_and_replays_to_1(files: dict[str, Path]) -> None:
    broken = defective_card(load_image(files["card"]), Defect.READ_WITHOUT_AUTH).image
    save_image(broken, files["card"], durable=False)
    out = files["dir"] / "out"
    code, output = _run("--sim-card", files["card"], "--profile", PROFILE, "--keys", files["keys"],
                        "--report", out, "--case", "HC-ACC-04*", "--json")
    assert code == 1
    summary = json.loads(output)
    assert summary["passed"] is False
    assert {f["id"] for f in summary["failures"]} == {"HC-ACC-043", "HC-ACC-044"}
    code, _ = _run("--replay", out / "trace.jsonl", "--keys", files["keys"], "--report",
                   files["dir"] / "again")
    assert code == 1


def test_destructive_run_on_a_production_profile_is_refused(files: dict[str, Path]) -> None:
    text = builtin_profile_path(PROFILE).read_text(encoding="utf-8")
    production = files["dir"] / "production.toml"
    production.write_text(text.replace("production = false", "production = true"))
    before = files["card"].read_bytes()
    code, output = _run("--sim-card", files["card"], "--profile", production, "--keys",
                        files["keys"], "--report", files["dir"] / "out", "--destructive")
    assert code == 2
    assert "production" in output
    assert files["card"].read_bytes() == before
    assert not (files["dir"] / "out").exists()


def test_the_former_sim_option_still_runs(files: dict[str, Path]) -> None:
    code, output = _run("--sim", files["card"], "--profile", PROFILE, "--keys", files["keys"],
                        "--report", files["dir"] / "out", "--group", "issuance", "--json")
    assert code == 0, output
    assert json.loads(output)["summary"]["passed"] == 5


@pytest.mark.parametrize(
    "args",
    [
        ["--profile", PROFILE],  # no target
        ["--reader", "0", "--sim-card", "card.json", "--profile", PROFILE],
        ["--sim-card", "card.json", "--profile", "no-such-profile"],  # unknown profile
        ["--sim-card", "card.json", "--profile", PROFILE, "--case", "HC-NOPE-1"],
        ["--sim-card", "card.json", "--profile", PROFILE, "--seed", "xyz"],
    ],
)
def test_bad_options_exit_2(files: dict[str, Path], args: list[str]) -> None:
    args = [str(files["card"]) if a == "card.json" else a for a in args]
    code, _output = _run(*args, "--keys", files["keys"], "--report", files["dir"] / "out")
    assert code == 2


def test_unreadable_key_file_exits_4(files: dict[str, Path]) -> None:
    files["keys"].write_text("not json")
    code, output = _run("--sim-card", files["card"], "--profile", PROFILE, "--keys", files["keys"],
                        "--report", files["dir"] / "out")
    assert code == 4, output


def test_refused_sam_pin_exits_4_before_any_case(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from healthcard_apdu.security.export import simulator_sam_document

    sam = files["dir"] / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    monkeypatch.setenv("HEALTHCARD_SAM_PIN", "999999")
    out = files["dir"] / "out"
    code, output = _run("--sim-card", files["card"], "--profile", PROFILE, "--sim-sam", sam,
                        "--report", out, "--group", "sm")
    assert code == 4, output
    assert "PIN refused" in output and "999999" not in output
    assert not (out / "report.json").exists()


@pytest.mark.pcsc
def test_run_through_a_pcsc_reader(files: dict[str, Path], vpcd_slot: Any) -> None:
    """The simulated card served on a vpcd reader: same verdicts, tearing not applicable."""
    card = SimCard(fresh_image())
    reader = vpcd_slot(card)
    out = files["dir"] / "out"
    code, output = _run("--reader", reader, "--profile", PROFILE, "--keys", files["keys"],
                        "--report", out, "--group", "atr", "--group", "sm", "--group",
                        "tearing", "--destructive", "--json")
    assert code == 0, output
    cases = json.loads((out / "report.json").read_text())["cases"]
    statuses = {c["id"]: c["status"] for c in cases}
    assert {statuses[i] for i in ("HC-TEAR-001", "HC-TEAR-002")} == {"not_applicable"}
    assert all(s == "passed" for i, s in statuses.items() if not i.startswith("HC-TEAR"))
    assert json.loads((out / "report.json").read_text())["card"]["transport"].startswith("pcsc")
