"""``healthcard batch`` commands: validate-only, run on simulated readers, status, void, recover."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from batch_support import (
    PERSO_PASSPHRASE,
    PERSO_PROFILE,
    perso_keyset,
    perso_row,
    save_perso_keys,
    valid_row,
    write_csv,
    write_jsonl,
)
from healthcard_apdu.batch.journal import Journal
from healthcard_apdu.cli.batch import batch

ISSUER = ["--issuer", "batch_support:make_issuer"]


def _file(tmp_path: Path, n: int = 12, bad: bool = True) -> Path:
    rows = [valid_row(i) for i in range(n)]
    if bad:
        rows[2]["MZ"] = "77"
    return write_csv(tmp_path / "people.csv", rows)


def test_validate_only_writes_report_and_exit_code(tmp_path: Path) -> None:
    rows = [perso_row(i) for i in range(12)]
    rows[2]["DDF1EF06"]["MZ"] = "77"
    path = write_jsonl(tmp_path / "people.jsonl", rows)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(batch, ["run", str(path), "--validate-only", "--report",
                                        str(report)])
    assert result.exit_code == 1, result.output
    assert "row 3: MZ" in result.output
    data = json.loads(report.read_text(encoding="utf-8"))
    assert (data["rows"], data["invalid"]) == (12, 1)
    assert data["issues"][0]["row"] == 3 and data["issues"][0]["field"] == "MZ"
    assert not (tmp_path / "people.journal.sqlite").exists()  # validation writes no journal
    good = write_jsonl(tmp_path / "good.jsonl", [perso_row(i) for i in range(3)])
    ok = CliRunner().invoke(batch, ["run", str(good), "--validate-only", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["invalid"] == 0


def test_validate_only_applies_the_profile(tmp_path: Path) -> None:
    """Rows the model accepts but the profile cannot issue (no region code for the city-factor
    keys) are invalid before any card is touched."""
    path = _file(tmp_path, n=3, bad=False)  # flat rows without YYCSDM
    result = CliRunner().invoke(batch, ["run", str(path), "--validate-only", "--json"])
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    assert report["invalid"] == 3
    assert {issue["field"] for issue in report["issues"]} == {"YYCSDM"}


def test_run_sim_then_status_json(tmp_path: Path) -> None:
    path = _file(tmp_path)
    result = CliRunner().invoke(batch, ["run", str(path), "--sim", "2", *ISSUER, "--json",
                                        "--no-progress", "--station", "t1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["counts"]["issued"] == 11 and summary["counts"]["invalid"] == 1
    assert summary["validation"]["invalid"] == 1
    assert (tmp_path / "people.journal.sqlite").exists()
    assert len(list((tmp_path / "people.simcards" / "done").glob("*.card.json"))) == 11

    status = CliRunner().invoke(batch, ["status", str(path), "--json", "--events", "3"])
    assert status.exit_code == 0, status.output
    (entry,) = json.loads(status.output)
    assert entry["batch"] == "people" and entry["counts"]["issued"] == 11
    assert len(entry["events"]) == 3
    human = CliRunner().invoke(batch, ["status", str(path)])
    assert "issued 11" in human.output

    again = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER,
                                       "--no-progress", "--station", "t1"])
    assert again.exit_code == 0, again.output
    assert "issued 0" in again.output  # nothing left: this run issued no card


def test_run_usage_errors(tmp_path: Path) -> None:
    path = _file(tmp_path)
    none = CliRunner().invoke(batch, ["run", str(path), *ISSUER])
    assert none.exit_code == 2 and "--reader" in none.output
    both = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", "--reader", "x", *ISSUER])
    assert both.exit_code == 2
    bad_issuer = CliRunner().invoke(batch, ["run", str(path), "--sim", "1",
                                            "--issuer", "no_such_module:factory"])
    assert bad_issuer.exit_code == 2 and "cannot load issuer" in bad_issuer.output
    missing = CliRunner().invoke(batch, ["status", "--journal", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 2 and "no journal" in missing.output


def test_changed_file_is_refused_for_the_same_batch(tmp_path: Path) -> None:
    path = _file(tmp_path, n=3, bad=False)
    first = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER, "--no-progress"])
    assert first.exit_code == 0, first.output
    write_csv(path, [valid_row(i) for i in range(4)])
    second = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER,
                                        "--no-progress"])
    assert second.exit_code == 2
    assert "different contents" in second.output


@pytest.mark.parametrize("encoding", ["gbk", "ascii"])
def test_a_wrong_encoding_is_an_input_error_before_the_journal(tmp_path: Path,
                                                              encoding: str) -> None:
    rows = [valid_row(i) | {"XM": "王五丽"} for i in range(3)]  # UTF-8, and not GBK
    path = write_csv(tmp_path / "people.csv", rows)
    result = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER,
                                        "--no-progress", "--encoding", encoding])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: ") and f"row 2: not valid {encoding}: byte 0x" in line
    with Journal.open(tmp_path / "people.journal.sqlite") as journal:
        assert journal.batches() == []  # nothing registered: no "loading incomplete" batch
    fixed = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER,
                                       "--no-progress"])
    assert fixed.exit_code == 0, fixed.output


def test_a_load_that_failed_half_way_can_be_run_again_after_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows 2-5 load (chunks of 2), row 6 breaks the CSV reader: exit 2. The fixed file
    then runs under the same batch name (the failed load does not pin the contents)."""
    monkeypatch.setattr("healthcard_apdu.batch.runner.LOAD_CHUNK", 2)
    rows = [valid_row(i) for i in range(6)]
    rows[4]["XM"] = "x" * 200_000  # beyond the csv module's field limit
    path = write_csv(tmp_path / "people.csv", rows)
    broken = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER,
                                        "--no-progress"])
    assert broken.exit_code == 2, broken.output
    assert "row 6: not valid CSV" in broken.output and len(broken.output) < 300
    write_csv(path, [valid_row(i) for i in range(6)])
    fixed = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER,
                                       "--no-progress", "--json"])
    assert fixed.exit_code == 0, fixed.output
    assert json.loads(fixed.output)["counts"]["issued"] == 6


def test_void_and_recover_commands(tmp_path: Path) -> None:
    journal_path = tmp_path / "j.sqlite"
    with Journal.open(journal_path) as journal:
        from healthcard_apdu.batch.journal import NewRow

        journal.ensure_batch("b", "b.csv", "0" * 64, "utf-8", "csv")
        journal.load_rows("b", [NewRow(1, "K1", "I1", {}), NewRow(2, "K2", "I2", {})])
        row = journal.claim_next("b", "gone", "r1")
        other = journal.claim_next("b", "gone", "r2")
        assert row is not None and other is not None
        started = journal.start_personalizing(row, "ABCD", "ABCD", station="gone", reader="r1")
        journal.mark_needs_erase(started, "pulled")
    recover = CliRunner().invoke(batch, ["recover", "--journal", str(journal_path),
                                         "--station", "gone"])
    assert recover.exit_code == 0, recover.output
    assert "1 claims queued again" in recover.output
    void = CliRunner().invoke(batch, ["void", "abcd", "--journal", str(journal_path),
                                      "--reason", "card broke"])
    assert void.exit_code == 0, void.output
    assert "row 1 queued again" in void.output
    with Journal.open(journal_path) as journal:
        assert journal.counts("b")["queued"] == 2
        assert journal.is_void("ABCD")


def test_run_with_the_default_issuer_and_the_shared_security_options(tmp_path: Path) -> None:
    """The personalizer with ``--keys`` and a passphrase from the variable ``--passphrase-env``
    names; the same options as ``personalize``."""
    keys = save_perso_keys(tmp_path / "keys.json", perso_keyset())
    path = write_jsonl(tmp_path / "people.jsonl", [perso_row(i) for i in range(2)])
    args = ["run", str(path), "--sim", "1", "--profile", PERSO_PROFILE, "--keys", str(keys),
            "--passphrase-env", "MY_BATCH_PASS", "--no-progress", "--json"]
    result = CliRunner().invoke(batch, args, env={"MY_BATCH_PASS": PERSO_PASSPHRASE,
                                                  "HEALTHCARD_KEYS_PASSPHRASE": ""},
                                input="")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["issued"] == 2
    wrong = CliRunner().invoke(batch, args, env={"MY_BATCH_PASS": "wrong"})
    assert wrong.exit_code == 4 and "wrong passphrase" in wrong.output
    assert "wrong" not in wrong.output.replace("wrong passphrase", "")
