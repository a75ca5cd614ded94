"""The validation pass: every bad row reported with row, field and reason; valid rows kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batch_support import valid_row, write_csv
from healthcard_apdu.batch.input import InputRow, scan_file
from healthcard_apdu.batch.journal import Journal
from healthcard_apdu.batch.runner import load_batch, validate_file
from healthcard_apdu.batch.validate import RecordChecker, validate_rows
from healthcard_apdu.model.validators import id_check_digit


def _fields(verdict_issues: object) -> set[str]:
    return {issue.field for issue in verdict_issues}  # type: ignore[attr-defined]


def _other_check_digit(sfzh: str) -> str:
    right = sfzh[-1]
    return sfzh[:-1] + ("0" if right != "0" else "1")


def test_valid_row_becomes_nested_record_with_card_number() -> None:
    verdict = RecordChecker()(InputRow(2, valid_row(1)))
    assert verdict.valid, verdict.issues
    assert verdict.record is not None
    sfzh = valid_row(1)["SFZH"]
    assert verdict.record["DDF1EF06"]["SFZH"] == sfzh
    assert verdict.record["DDF1EF06"]["XB"] == 1  # b-format code coerced to an integer
    assert verdict.record["DDF1EF05"]["KH"] == sfzh  # card number = ID number
    assert verdict.card_number == verdict.id_number == sfzh


def test_english_names_and_flags() -> None:
    row = valid_row(3)
    values = {"name": row["XM"], "sex": row["XB"], "birth_date": row["CSRQ"],
              "resident_id_number": row["SFZH"], "asthma_flag": "是", "pacemaker_flag": "0"}
    verdict = RecordChecker()(InputRow(2, values))
    assert verdict.valid, verdict.issues
    assert verdict.record is not None
    assert verdict.record["DF02EF05"] == {"XCBZ": True, "XZQBQBZ": False}


@pytest.mark.parametrize("change, field, words", [
    ({"SFZH": "wrong"}, "SFZH", "17 digits"),
    ({"CSRQ": "19000101"}, "CSRQ", "birth date"),
    ({"XM": "张" * 16}, "XM", "GBK"),
    ({"MZ": "99"}, "MZ", "table"),
    ({"XB": "7"}, "XB", "table sex"),
    ({"NOSUCH": "1"}, "NOSUCH", "not a data item"),
])
def test_bad_values_name_field_and_reason(change: dict[str, str], field: str,
                                          words: str) -> None:
    values = valid_row(5) | change
    verdict = RecordChecker()(InputRow(7, values))
    assert not verdict.valid
    assert verdict.record is None
    issue = next(i for i in verdict.issues if i.field == field)
    assert issue.row == 7
    assert words in issue.reason
    assert issue.reason


def test_check_digit_error_names_expected_digit() -> None:
    values = valid_row(9)
    values["SFZH"] = _other_check_digit(values["SFZH"])
    (issue,) = [i for i in RecordChecker()(InputRow(3, values)).issues if i.field == "SFZH"]
    assert id_check_digit(values["SFZH"][:17]) in issue.reason
    assert issue.value == values["SFZH"]
    assert issue.item_no == 15


def test_missing_name_and_identity() -> None:
    verdict = RecordChecker()(InputRow(4, {"XB": "1"}))
    assert {"XM", "SFZH"} <= _fields(verdict.issues)


def test_unreadable_row_is_reported_as_a_whole() -> None:
    verdict = RecordChecker()(InputRow(9, problem="has 2 fields, the header has 3"))
    assert [(i.row, i.field, i.reason) for i in verdict.issues] == [
        (9, "-", "has 2 fields, the header has 3")]


def test_duplicates_inside_the_file_point_at_first_row() -> None:
    a, b = valid_row(1), valid_row(2)
    rows = [InputRow(2, a), InputRow(3, b), InputRow(4, dict(a)),
            InputRow(5, b | {"KH": a["SFZH"]})]
    verdicts = list(validate_rows(rows))
    assert [v.valid for v in verdicts] == [True, True, False, False]
    dup = verdicts[2].issues
    assert all("also on row 2" in i.reason for i in dup)
    assert verdicts[3].issues[0].field == "KH"
    assert "card number" in verdicts[3].issues[0].reason


def test_nested_jsonl_record_is_accepted() -> None:
    row = valid_row(11)
    nested = {"holder": {"name": row["XM"], "resident_id_number": row["SFZH"],
                         "birth_date": row["CSRQ"], "sex": int(row["XB"])},
              "allergies": [{"allergen_name": "青霉素", "allergic_reaction": "皮疹"}]}
    verdict = RecordChecker()(InputRow(1, nested))
    assert verdict.valid, verdict.issues
    assert verdict.record is not None
    assert verdict.record["DF02EF07"][0]["GMWZMC"] == "青霉素"


def test_validate_file_report_and_json(tmp_path: Path) -> None:
    rows = [valid_row(i) for i in range(30)]
    rows[3]["SFZH"] = _other_check_digit(rows[3]["SFZH"])
    rows[8] = dict(rows[1])
    path = write_csv(tmp_path / "r.csv", rows)
    report = validate_file(path)
    assert (report.rows, report.valid, report.invalid) == (30, 28, 2)
    assert {i.row for i in report.issues} == {5, 10}  # data rows 4 and 9 are lines 5 and 10
    out = tmp_path / "report.json"
    report.write(out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["invalid"] == 2
    assert data["sha256"] == scan_file(path).fingerprint
    assert all({"row", "field", "reason"} <= set(i) for i in data["issues"])


def test_numbers_already_in_journal_are_reported(tmp_path: Path) -> None:
    first = write_csv(tmp_path / "first.csv", [valid_row(i) for i in range(5)])
    second = write_csv(tmp_path / "second.csv", [valid_row(i) for i in range(3, 8)])
    with Journal.open(tmp_path / "j.sqlite") as journal:
        load_batch(journal, scan_file(first), "first")
        report = validate_file(second, journal=journal)
        assert report.invalid == 2
        reasons = [i.reason for i in report.issues]
        assert all("already in the journal: batch 'first'" in r for r in reasons)
        # validating the already loaded file against its own batch finds no clash
        assert validate_file(first, journal=journal, batch="first").invalid == 0
        # loading the second batch stores those two rows as invalid, the others as queued
        loaded = load_batch(journal, scan_file(second), "second")
        assert (loaded.valid, loaded.invalid) == (3, 2)
        counts = journal.counts("second")
        assert counts["queued"] == 3 and counts["invalid"] == 2


def test_load_finds_duplicates_between_chunks_and_resumes(tmp_path: Path) -> None:
    rows = [valid_row(i) for i in range(1200)]
    rows[1100] = dict(rows[3])  # same person as line 5, in the third chunk of 500
    path = write_csv(tmp_path / "r.csv", rows)
    info = scan_file(path)
    with Journal.open(tmp_path / "j.sqlite") as journal:
        # an interrupted earlier load: only the first chunk made it into the journal
        journal.ensure_batch("r", str(path), info.fingerprint, info.encoding, info.format)
        from healthcard_apdu.batch.input import read_residents
        from healthcard_apdu.batch.journal import NewRow

        first = [v for _, v in zip(range(500), validate_rows(read_residents(info)),
                                   strict=False)]
        journal.load_rows("r", [NewRow(v.row, v.card_number, v.id_number, v.record)
                                for v in first])
        report = load_batch(journal, info, "r")
        assert (report.rows, report.invalid) == (1200, 1)
        (issue,) = report.issues
        assert issue.row == 1102 and "also on row 5" in issue.reason
        assert journal.batch("r").loaded_at is not None  # type: ignore[union-attr]
        assert journal.counts("r")["queued"] == 1199
