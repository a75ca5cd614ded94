"""Crash safety with real processes: ``kill -9`` mid-batch then resume (SQLite, PostgreSQL),
and two runner processes sharing one PostgreSQL journal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from batch_support import (
    check_invariants,
    drop_pg_database,
    fresh_pg_database,
    kill_9_when,
    pg_server,
    state_counter,
    valid_row,
    write_csv,
)
from healthcard_apdu.batch.journal import Journal

TESTS = Path(__file__).resolve().parent
DRIVER = "import sys; from healthcard_apdu.cli.batch import batch; batch(prog_name='batch')"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    return env


def _command(residents: Path, journal: str, pool: Path, station: str, readers: int,
             latency: int) -> list[str]:
    return [sys.executable, "-c", DRIVER, "run", str(residents), "--sim", str(readers),
            "--issuer", "batch_support:make_issuer", "--journal", journal,
            "--station", station, "--sim-pool", str(pool), "--sim-latency", str(latency),
            "--no-progress", "--json"]


def test_kill_9_mid_batch_then_resume(tmp_path: Path, journal_target: str) -> None:
    rows = 120
    residents = write_csv(tmp_path / "residents.csv", [valid_row(i) for i in range(rows)])
    pool = tmp_path / "cards"
    counts = state_counter(journal_target)
    at_kill = kill_9_when(
        _command(residents, journal_target, pool, "st1", 3, 115200), _env(), counts,
        lambda now: now.get("issued", 0) >= 8 and now.get("personalizing", 0) >= 1,
        timeout=60,
    )
    assert at_kill.get("claimed", 0) + at_kill.get("personalizing", 0) >= 1, at_kill
    assert at_kill.get("issued", 0) < rows

    resumed = subprocess.run(_command(residents, journal_target, pool, "st1", 3, 0),
                             env=_env(), capture_output=True, text=True, timeout=120,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    recovered = summary["recovered_at_start"]
    assert recovered["needs_erase"] + recovered["requeued"] >= 1
    assert summary["complete"] and summary["counts"]["issued"] == rows
    with Journal.open(journal_target) as journal:
        check_invariants(journal, "residents", [pool], expected_rows=rows)
        # the half-done card was found again by its chip serial and finished or redone
        recoveries = journal.events("residents", kinds=["recovered"])
        assert {e["state_from"] for e in recoveries} <= {"claimed", "personalizing"}
        for event in recoveries:
            if event["state_to"] == "needs-erase":
                row = journal.row(event["row_id"])
                assert row is not None and row.state == "issued"
                assert row.chip_serial == event["chip_serial"]


def test_two_runners_share_one_postgres_queue(tmp_path: Path) -> None:
    server = pg_server()
    dsn, name = fresh_pg_database(server)
    try:
        rows = 100
        residents = write_csv(tmp_path / "residents.csv", [valid_row(i) for i in range(rows)])
        def start(station: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                _command(residents, dsn, tmp_path / f"cards-{station}", station, 2, 115200),
                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        # B starts once A has loaded the batch and is issuing, so both share a live queue
        # (started together, one station could load the file while the other found no work)
        counts_now = state_counter(dsn)
        procs = [start("A")]
        deadline = time.monotonic() + 60
        while sum(counts_now().get(k, 0) for k in ("claimed", "personalizing", "issued")) < 1:
            assert procs[0].poll() is None, procs[0].communicate()
            assert time.monotonic() < deadline, "station A never started issuing"
            time.sleep(0.02)
        procs.append(start("B"))
        outputs = [proc.communicate(timeout=180) for proc in procs]
        for proc, (_out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode in (0, 1), err  # 1: the other station was still busy
        with Journal.open(dsn) as journal:
            counts = check_invariants(journal, "residents",
                                      [tmp_path / "cards-A", tmp_path / "cards-B"],
                                      expected_rows=rows)
            assert counts["issued"] == rows
            claims = journal.events("residents", kinds=["claimed"])
            per_row = Counter(event["row_id"] for event in claims)
            assert len(per_row) == rows and set(per_row.values()) == {1}
            stations = Counter(event["station"] for event in claims)
            assert set(stations) == {"A", "B"} and min(stations.values()) > 5
            issued_by = Counter(row.station for row in journal.rows("residents", ["issued"]))
            assert issued_by == stations
    finally:
        drop_pg_database(server, name)
