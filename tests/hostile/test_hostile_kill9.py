"""A bounded ``kill -9`` campaign on the batch runner (issue 11): one batch, killed again and
again while cards are in the readers, then finished. Every row ends issued exactly once: no
card number on two cards, every half-done card found again by its chip serial."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from batch_support import check_invariants, kill_9_when, state_counter, valid_row, write_csv
from healthcard_apdu.batch.journal import Journal

TESTS = Path(__file__).resolve().parents[1]
DRIVER = "import sys; from healthcard_apdu.cli.batch import batch; batch(prog_name='batch')"
ROWS = 80
KILLS = 10

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    return env


def _command(residents: Path, journal: str, pool: Path, latency: int) -> list[str]:
    return [sys.executable, "-c", DRIVER, "run", str(residents), "--sim", "3",
            "--issuer", "batch_support:make_issuer", "--journal", journal, "--station", "st",
            "--sim-pool", str(pool), "--sim-latency", str(latency), "--no-progress", "--json"]


def test_a_batch_killed_again_and_again_issues_every_row_exactly_once(tmp_path: Path) -> None:
    residents = write_csv(tmp_path / "residents.csv", [valid_row(i) for i in range(ROWS)])
    journal = str(tmp_path / "residents.journal.sqlite")
    pool = tmp_path / "cards"
    counts = state_counter(journal)
    rng = random.Random(11)
    issued = 0
    for _ in range(KILLS):
        target = issued + rng.randint(1, 5)
        at_kill = kill_9_when(
            _command(residents, journal, pool, 115200), _env(), counts,
            lambda now, target=target: (now.get("issued", 0) >= target
                                        and now.get("personalizing", 0) >= 1),
            timeout=90,
        )
        assert at_kill.get("issued", 0) < ROWS, at_kill
        issued = at_kill.get("issued", 0)
    finished = subprocess.run(_command(residents, journal, pool, 0), env=_env(),
                              capture_output=True, text=True, timeout=180, check=False)
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert summary["complete"] and summary["counts"]["issued"] == ROWS
    with Journal.open(journal) as jnl:
        check_invariants(jnl, "residents", [pool], expected_rows=ROWS)
        recovered = jnl.events("residents", kinds=["recovered"])
        assert len(recovered) >= KILLS  # each kill left at least one card in a reader
