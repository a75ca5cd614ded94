"""Personal data at rest (issue 11, docs/batch.md "Personal data"): journals, validation
reports, plans and traces are created 0600; ``batch purge`` drops the personal data of
finished rows after a retention period and keeps what audit needs."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from batch_support import valid_row, write_csv
from healthcard_apdu import model
from healthcard_apdu.apdu import commands
from healthcard_apdu.batch.journal import Journal, NewRow
from healthcard_apdu.cli.batch import batch
from healthcard_apdu.cli.perso import personalize_command
from healthcard_apdu.transport import Channel, InProcessTransport
from healthcard_apdu.transport.testing import TinyCard
from healthcard_apdu.transport.trace import Tracer
from perso_support import keyset

ISSUER = ["--issuer", "batch_support:make_issuer", "--no-progress"]


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the usual umask: without care, new files would be 0644
    yield
    os.umask(old)


def _private(path: Path) -> bool:
    return path.stat().st_mode & 0o777 == 0o600


def test_journal_and_validation_report_are_created_0600(tmp_path: Path) -> None:
    rows = [valid_row(i) for i in range(3)]
    rows[1]["SFZH"] = "110105194001010000"  # a wrong check digit: the report quotes it
    path = write_csv(tmp_path / "people.csv", rows)
    report = tmp_path / "report.json"
    result = CliRunner().invoke(batch, ["run", str(path), "--sim", "1", *ISSUER,
                                        "--report", str(report)])
    assert result.exit_code == 0, result.output
    journal = tmp_path / "people.journal.sqlite"
    assert _private(journal) and _private(report)
    for side in ("-wal", "-shm"):
        extra = journal.with_name(journal.name + side)
        assert not extra.exists() or _private(extra)
    assert "110105194001010000" in report.read_text(encoding="utf-8")


def test_a_dry_run_plan_and_a_trace_are_created_0600(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keyset().save(keys, "pass", scrypt_n=2**10)
    data = tmp_path / "resident.json"
    data.write_text(json.dumps(model.sample_resident().to_json(), ensure_ascii=False),
                    encoding="utf-8")
    plan = tmp_path / "plan.json"
    args = ["--data", str(data), "--keys", str(keys), "--dry-run", "--card-factor",
            "0102030405060708", "--out", str(plan)]
    done = CliRunner().invoke(personalize_command, args,
                              env={"HEALTHCARD_KEYS_PASSPHRASE": "pass"})
    assert done.exit_code == 0, done.output
    assert _private(plan)
    trace = tmp_path / "trace.jsonl"
    with Tracer(trace) as tracer, InProcessTransport(TinyCard()) as link:
        Channel(link, trace=tracer).send(commands.select_fid(0xEF05))
    assert _private(trace) and trace.read_text()


def _issued_journal(path: Path, *, days_ago: float, rows: int = 3, batch_name: str = "b"
                    ) -> Journal:
    journal = Journal.open(path)
    journal.ensure_batch(batch_name, f"{batch_name}.csv", "f" * 64, "utf-8", "csv")
    fresh = [NewRow(i, f"K{batch_name}{i}", f"I{batch_name}{i}",
                    {"DDF1EF06": {"XM": f"姓名{batch_name}{i}"}}) for i in range(1, rows + 1)]
    journal.load_rows(batch_name, [*fresh, NewRow(rows + 1, None, None, None,
                                                  [{"field": "XM", "value": f"坏名字{batch_name}",
                                                    "reason": "bad"}])])
    journal.finish_load(batch_name, rows + 1)
    for _ in range(rows):
        row = journal.claim_next(batch_name, "s", "r")
        assert row is not None
        row = journal.start_personalizing(row, f"C{batch_name}{row.row_no}", "F",
                                          station="s", reader="r")
        journal.finish_issued(row, "national-32k", "SM4:AB")
    old = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(timespec="microseconds")
    conn = journal._conn()  # backdate, as if the batch ran ``days_ago`` days ago
    conn.execute("UPDATE rows SET finished_at = ? WHERE batch = ?", (old, batch_name))
    conn.execute("UPDATE batches SET loaded_at = ? WHERE name = ?", (old, batch_name))
    return journal


def test_purge_drops_personal_data_and_keeps_the_audit_trail(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with _issued_journal(path, days_ago=40, batch_name="old") as journal:
        pass
    with _issued_journal(path, days_ago=1, batch_name="new") as journal:
        purged = journal.purge(datetime.now(UTC) - timedelta(days=30))
        assert purged == {"old": 4}  # 3 issued rows and 1 invalid row
        kept = list(journal.rows("old"))
        assert [r.state for r in kept] == ["issued"] * 3 + ["invalid"]
        assert all(r.record is None and r.card_number is None and r.id_number is None
                   and r.issues is None for r in kept)
        assert [r.chip_serial for r in kept[:3]] == ["Cold1", "Cold2", "Cold3"]
        assert all(r.finished_at for r in kept[:3]) and kept[0].profile_version
        assert all(r.record is not None for r in journal.rows("new", ["issued"]))
        assert journal.events("old")[-1]["kind"] == "purged"
        # overwritten on disk (database file and WAL), while the journal is still open
        raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
        for gone in ("姓名old1", "坏名字old"):
            assert gone.encode() not in raw
        assert "姓名new1".encode() in raw and "坏名字new".encode() in raw
        assert journal.purge(datetime.now(UTC) - timedelta(days=30)) == {}


def test_batch_purge_command(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    _issued_journal(path, days_ago=10).close()
    none = CliRunner().invoke(batch, ["purge", "--journal", str(path), "--older-than", "30"])
    assert none.exit_code == 0 and "nothing to purge" in none.output
    done = CliRunner().invoke(batch, ["purge", "--journal", str(path), "--older-than", "7",
                                      "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["purged"] == {"b": 4}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM rows WHERE record IS NOT NULL").fetchone() \
            == (0,)
    missing = CliRunner().invoke(batch, ["purge", "--journal", str(tmp_path / "none.sqlite"),
                                         "--older-than", "7"])
    assert missing.exit_code == 2
