"""Batch issuance with the real personalizer (``perso.batch_issuer.PersoCardIssuer``, national
profile, software keys) on simulated readers: the acceptance scenario, torn cards at any step,
link losses, the profile's record rules in the validation pass, readers working in parallel,
and ``kill -9`` + resume of a runner process (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from batch_support import (
    PERSO_PASSPHRASE,
    PERSO_PROFILE,
    FaultSchedule,
    SimStore,
    check_invariants,
    kill_9_when,
    perso_card_reader,
    perso_issuer,
    perso_keyset,
    perso_row,
    save_perso_keys,
    state_counter,
    write_jsonl,
)
from healthcard_apdu.apdu import commands
from healthcard_apdu.batch.input import InputRow
from healthcard_apdu.batch.journal import Journal
from healthcard_apdu.batch.runner import BatchRunner
from healthcard_apdu.batch.slots import CardPool, SimReaderFaults, SimReaderSlot
from healthcard_apdu.batch.validate import RecordChecker
from healthcard_apdu.perso.batch_issuer import PersoCardIssuer
from healthcard_apdu.perso.errors import EraseRefused
from healthcard_apdu.perso.plan import build_plan
from healthcard_apdu.perso.profile import load_profile
from healthcard_apdu.security import SoftwareSecurityModule
from healthcard_apdu.sim.card import SimCard
from healthcard_apdu.sim.faults import FaultPlan
from healthcard_apdu.transport import InProcessTransport, Transport
from healthcard_apdu.transport.base import TransportError
from healthcard_apdu.transport.channel import Channel

TESTS = Path(__file__).resolve().parent
KEYS = perso_keyset()
FACTOR = bytes.fromhex("0081866B00001015")


@pytest.fixture(scope="module")
def issuer() -> PersoCardIssuer:
    result: PersoCardIssuer = perso_issuer(KEYS)
    return result


def _issue_apdus(record: dict[str, Any]) -> int:
    """APDUs of one issuance, from the plan (not from running it)."""
    plan = build_plan(load_profile(PERSO_PROFILE), record, FACTOR,
                      SoftwareSecurityModule(KEYS))
    return plan.apdus


def _kh(record: dict[str, Any]) -> str:
    return str(record["DDF1EF05"]["KH"])


# ------------------------------------------------------------------ torn at any step
def _tear_and_recover(issuer: PersoCardIssuer, tear_at: int, applies: bool) -> str:
    """Tear a blank card at APDU ``tear_at`` (1 = the runner's inspection), insert it again
    and do what the runner does with a needs-erase card. Returns how it ended."""
    record = perso_row(tear_at)
    card = SimCard.blank(FACTOR)
    card.faults = FaultPlan(tear_at=tear_at, tear_applies=applies)
    with InProcessTransport(card) as link:
        assert not issuer.inspect(link).issued
        with pytest.raises(TransportError):  # a lost link, not a refused step
            issuer.issue(link, record)
    assert not card.present
    card.insert()
    with InProcessTransport(card) as link:
        ident = issuer.inspect(link)
        if ident.issued and ident.card_number == _kh(record):
            outcome = "complete"
        else:
            issuer.erase(link)
            assert not issuer.inspect(link).issued
            issuer.issue(link, record)
            outcome = "redone"
        final = issuer.inspect(link)
    assert final.issued and final.card_number == _kh(record)
    return outcome


def _tear_cases(last: int, sample: int | None) -> list[tuple[int, bool]]:
    """Every (APDU, applied) pair, or the MF part, the end and ``sample`` others."""
    everything = [(n, applies) for n in range(2, last + 1) for applies in (False, True)]
    if sample is None:
        return everything
    head = [case for case in everything if case[0] <= 12 or case[0] >= last - 2]
    rest = [case for case in everything if case not in head]
    return head + random.Random(5).sample(rest, sample)


def test_a_card_torn_at_any_step_is_recovered(issuer: PersoCardIssuer) -> None:
    """Including the MF key file written but not yet its master key (the erase then writes
    the master key first) and END ISSUANCE reached (found complete)."""
    last = 1 + _issue_apdus(perso_row(0))
    outcomes = {case: _tear_and_recover(issuer, *case) for case in _tear_cases(last, 24)}
    assert outcomes[(last, True)] == "complete"
    assert outcomes[(last, False)] == "redone"
    assert outcomes[(3, True)] == outcomes[(4, False)] == "redone"
    assert set(outcomes.values()) == {"complete", "redone"}


@pytest.mark.slow
def test_a_card_torn_at_every_step_is_recovered(issuer: PersoCardIssuer) -> None:
    last = 1 + _issue_apdus(perso_row(0))
    outcomes = [_tear_and_recover(issuer, *case) for case in _tear_cases(last, None)]
    assert outcomes.count("complete") == 1  # END ISSUANCE applied, answer lost


def _foreign_card(redefine_mf: bool) -> SimCard:
    """A card with DDF1 but no MF key file (not made by this profile); with
    ``redefine_mf`` the MF has the profile's attributes first (erase right: MF master key)."""
    profile = load_profile(PERSO_PROFILE)
    card = SimCard.blank(FACTOR)
    with InProcessTransport(card) as link:
        channel = Channel(link)
        if redefine_mf:
            channel.call(commands.create_file(0x3F00, profile.df("MF").create_data()))
        channel.call(commands.create_file(0xDDF1, profile.df("DDF1").create_data()))
    return card


def test_erase_makes_a_foreign_card_blank_or_refuses(issuer: PersoCardIssuer) -> None:
    """No MF master key to authenticate with: a DF under a free-to-erase MF is erased; one
    under an MF that needs its (missing) master key is refused, never reported blank."""
    select_ddf1 = commands.select_fid(0xDDF1).to_bytes()
    card = _foreign_card(redefine_mf=False)
    with InProcessTransport(card) as link:
        issuer.erase(link)
        assert link.transmit(select_ddf1)[-2:] == b"\x6a\x82"
        issuer.issue(link, perso_row(1))
        assert issuer.inspect(link).issued
    card = _foreign_card(redefine_mf=True)
    with InProcessTransport(card) as link:
        with pytest.raises(EraseRefused, match=r"DDF1 exist.*cannot be erased"):
            issuer.erase(link)
        assert link.transmit(select_ddf1)[-2:] == b"\x90\x00"


def test_inspect_tells_the_versions_only_for_its_own_keys(issuer: PersoCardIssuer) -> None:
    """A card found complete is journaled with the versions only when its internal key
    answers for this key set."""
    card = SimCard.blank(FACTOR)
    with InProcessTransport(card) as link:
        assert issuer.inspect(link).profile_version is None  # blank
        issuer.issue(link, perso_row(7))
        mine = issuer.inspect(link)
        other = perso_issuer(perso_keyset()).inspect(link)
    assert mine.issued and mine.card_number == _kh(perso_row(7))
    assert (mine.profile_version, mine.keys_version) == (PERSO_PROFILE, issuer.keys_version)
    assert other.issued and other.card_number == mine.card_number
    assert other.profile_version is None and other.keys_version is None


# ---------------------------------------------------------- readers work in parallel
class _Rendezvous(Transport):
    """Waits at its ``at``-th APDU until the other reader's card got there too."""

    def __init__(self, inner: Transport, barrier: threading.Barrier, at: int) -> None:
        self.inner = inner
        self.barrier = barrier
        self.at = at
        self.count = 0

    @property
    def name(self) -> str:
        return self.inner.name

    def transmit(self, apdu: bytes) -> bytes:
        self.count += 1
        if self.count == self.at:
            self.barrier.wait()
        return self.inner.transmit(apdu)

    def atr(self) -> bytes:
        return self.inner.atr()

    def reset(self, cold: bool = False) -> bytes:
        return self.inner.reset(cold)

    def close(self) -> None:
        self.inner.close()


def test_two_readers_personalize_at_the_same_time(issuer: PersoCardIssuer) -> None:
    """Only the security module is serialized: two cards are both mid-issuance at once (with
    one lock around the whole issuance the second card could not start: no speed-up from
    more readers)."""
    barrier = threading.Barrier(2, timeout=20)
    errors: list[BaseException] = []

    def issue(index: int) -> None:
        card = SimCard.blank(bytes((index,)) * 8)
        try:
            with InProcessTransport(card) as link:
                issuer.issue(_Rendezvous(link, barrier, at=100), perso_row(index))
            assert card.image.issued
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=issue, args=(i,)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors


# ------------------------------------------------------------ validation with the profile
def test_validation_refuses_rows_the_profile_cannot_issue(tmp_path: Path,
                                                          issuer: PersoCardIssuer) -> None:
    """The national profile's 2-level keys need YYCSDM: such a row is invalid at load, with
    the reason, instead of failing card after card at issuance."""
    good = perso_row(1)
    no_region = perso_row(2)
    del no_region["DDF1EF05"]["YYCSDM"]
    checker = RecordChecker(issuer.check_record)
    assert checker(InputRow(1, good)).valid
    verdict = checker(InputRow(2, no_region))
    assert not verdict.valid
    (issue,) = verdict.issues
    assert issue.field == "YYCSDM" and "city factor" in issue.reason
    assert RecordChecker()(InputRow(2, no_region)).valid  # the model alone accepts it
    path = write_jsonl(tmp_path / "r.jsonl", [good, no_region])
    with Journal.open(tmp_path / "j.sqlite") as journal:
        pool = CardPool(tmp_path / "cards", SimStore())
        with BatchRunner(journal, issuer, [SimReaderSlot("r", pool)], station="s",
                         reader_grace=0.0) as runner:
            batch, report = runner.load(path)
            summary = runner.run(batch)
        assert report.invalid == 1 and report.issues[0].row == 2
        assert summary.counts["issued"] == 1 and summary.counts["failed"] == 0
        assert pool.stats.created == 1  # no card was spent on the row that cannot be issued


# --------------------------------------------------------------------- acceptance
ROWS = 240


def _acceptance_rows() -> tuple[list[dict[str, Any]], set[int]]:
    """ROWS full residents; 10 invalid (check digit, birth date, GBK length, no YYCSDM for
    the profile's city factor, each twice) and two duplicates (same resident again). Returns
    the rows and the JSON Lines line numbers that must be rejected."""
    rows = [perso_row(i) for i in range(ROWS)]
    bad: set[int] = set()
    for k in range(8):
        i = 29 * k + 11
        holder = rows[i]["DDF1EF06"]
        kind = k % 4
        if kind == 0:
            last = holder["SFZH"][-1]
            holder["SFZH"] = holder["SFZH"][:-1] + ("0" if last != "0" else "1")
        elif kind == 1:
            holder["CSRQ"] = "19990909"
        elif kind == 2:
            holder["XM"] = "张" * 16
        else:
            del rows[i]["DDF1EF05"]["YYCSDM"]
        bad.add(i + 1)
    rows[ROWS - 1] = json.loads(json.dumps(rows[3]))
    rows[ROWS - 2] = json.loads(json.dumps(rows[50]))
    bad |= {ROWS, ROWS - 1}
    return rows, bad


def test_acceptance_real_issuer_four_readers_with_faults(tmp_path: Path,
                                                         issuer: PersoCardIssuer) -> None:
    rows, bad_lines = _acceptance_rows()
    path = write_jsonl(tmp_path / "residents.jsonl", rows)
    pool_dir = tmp_path / "cards"
    end = 1 + _issue_apdus(rows[0])  # END ISSUANCE, counted from the card's insertion
    faults = FaultSchedule(
        tear_rate=0.05, seed=11, tear_first=2, tear_last=end, remove_card=9, remove_at=120,
        # the MF key file without its master key (twice), and END ISSUANCE done / not done
        forced={2: (3, True), 3: (4, False), 4: (end, True), 5: (end, False)},
    )
    read_card = perso_card_reader(KEYS)
    with Journal.open(tmp_path / "residents.journal.sqlite", synchronous="NORMAL") as journal:
        pool = CardPool(pool_dir, SimStore(), fault_hook=faults)
        vanishing = SimReaderFaults(vanish_on_card=7, vanish_at_apdu=90)
        slots = [SimReaderSlot(f"sim{i}", pool, faults=vanishing if i == 3 else None)
                 for i in range(4)]
        with BatchRunner(journal, issuer, slots, station="desk-1", reader_grace=0.0) as runner:
            batch, report = runner.load(path)
            first = runner.run(batch)
        assert report.invalid == len(bad_lines) == 10
        assert {issue.row for issue in report.issues} == bad_lines
        assert any(i.field == "YYCSDM" and "city factor" in i.reason for i in report.issues)
        valid = ROWS - len(bad_lines)

        counts = check_invariants(journal, batch, [pool_dir], ROWS, issuer=issuer,
                                  read_card=read_card)
        # the vanished reader kept its card (bound to its row); everything else is issued
        assert counts["needs-erase"] == 1 and counts["issued"] == valid - 1
        assert counts["failed"] == 0  # every fault was a lost link: no row was failed
        assert [r["state"] for r in first.readers].count("reader-gone") == 1
        assert pool.stats.stuck == 1 and not first.complete
        (stuck,) = first.needs_erase
        assert "reader lost" in stuck["reason"]

        # the faults happened, and each torn / pulled card was recovered on its chip
        assert len(faults.torn) >= 8 and {3, 4, end} <= {t for t, _ in faults.torn.values()}
        set_aside = journal.events(batch, kinds=["needs-erase"])
        # every torn card, the pulled card and the vanished reader's card (which may be one
        # of the others)
        assert len(set_aside) >= len(faults.torn) + 1
        assert all("card link lost" in e["detail"] or "reader lost" in e["detail"]
                   for e in set_aside)
        assert first.this_run["recovered"] >= len(set_aside) - 1
        issued_events = journal.events(batch, kinds=["issued"])
        complete = [e for e in issued_events if "found complete" in (e["detail"] or "")]
        assert len(complete) >= 1  # END ISSUANCE applied, its answer lost
        assert len(journal.events(batch, kinds=["erased"])) >= len(set_aside) - 1 - len(
            complete)
        for event in set_aside:
            row = journal.row(event["row_id"])
            assert row is not None and row.chip_serial == event["chip_serial"]

        # second run: a fresh feeder inserts the card left in the vanished reader first
        pool2 = CardPool(pool_dir, SimStore())
        with BatchRunner(journal, issuer, [SimReaderSlot(f"sim{i}", pool2) for i in range(4)],
                         station="desk-1", reader_grace=0.0) as runner:
            runner.load(path)
            second = runner.run(batch)
        counts = check_invariants(journal, batch, [pool_dir], ROWS, issuer=issuer,
                                  read_card=read_card)
        assert second.complete and counts["issued"] == valid
        assert second.this_run["issued"] == 1 and second.this_run["recovered"] == 1
        assert second.counts["invalid"] == len(bad_lines)
        for row in journal.rows(batch, ["invalid"]):
            assert row.issues and json.loads(row.issues)
        # each issued row was claimed once per attempt, never by two readers at once
        claims: dict[int, int] = {}
        for event in journal.events(batch, kinds=["claimed"]):
            claims[event["row_id"]] = claims.get(event["row_id"], 0) + 1
        for row in journal.rows(batch, ["issued"]):
            assert claims[row.id] <= row.attempts
            assert row.profile_version == PERSO_PROFILE
            assert row.keys_version == issuer.keys_version


# ------------------------------------------------------------------ kill -9 and resume
DRIVER = "from healthcard_apdu.cli.batch import batch; batch(prog_name='batch')"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    env["HEALTHCARD_KEYS_PASSPHRASE"] = PERSO_PASSPHRASE
    return env


def _command(residents: Path, journal: str, pool: Path, keys: Path, latency: int
             ) -> list[str]:
    return [sys.executable, "-c", DRIVER, "run", str(residents), "--sim", "3",
            "--issuer", "healthcard_apdu.perso.batch_issuer:make_card_issuer",
            "--profile", PERSO_PROFILE, "--keys", str(keys), "--journal", journal,
            "--station", "st1", "--sim-pool", str(pool), "--sim-latency", str(latency),
            "--no-progress", "--json"]


@pytest.mark.slow
def test_kill_9_mid_batch_then_resume_with_the_real_issuer(tmp_path: Path,
                                                           journal_target: str) -> None:
    rows = 45
    residents = write_jsonl(tmp_path / "residents.jsonl", [perso_row(i) for i in range(rows)])
    keys = save_perso_keys(tmp_path / "keys.json", KEYS)
    pool = tmp_path / "cards"
    counts = state_counter(journal_target)
    # 115200 bd with real sleep: about 2 s per card, so the kill finds cards mid-issuance
    at_kill = kill_9_when(
        _command(residents, journal_target, pool, keys, 115200), _env(), counts,
        lambda now: now.get("issued", 0) >= 4 and now.get("personalizing", 0) >= 2,
        timeout=90,
    )
    assert at_kill.get("personalizing", 0) >= 1, at_kill
    assert at_kill.get("issued", 0) < rows

    resumed = subprocess.run(_command(residents, journal_target, pool, keys, 0), env=_env(),
                             capture_output=True, text=True, timeout=180, check=False)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["recovered_at_start"]["needs_erase"] >= 1
    assert summary["complete"] and summary["counts"]["issued"] == rows
    issuer = perso_issuer(KEYS)
    with Journal.open(journal_target) as journal:
        check_invariants(journal, "residents", [pool], rows, issuer=issuer,
                         read_card=perso_card_reader(KEYS))
        # each half-done card was found again by its chip serial and finished or redone
        recoveries = [e for e in journal.events("residents", kinds=["recovered"])
                      if e["state_to"] == "needs-erase"]
        assert len(recoveries) >= 1
        for event in recoveries:
            row = journal.row(event["row_id"])
            assert row is not None and row.state == "issued"
            assert row.chip_serial == event["chip_serial"]
