"""``healthcard batch``: issue a resident file on several readers with a crash-safe journal."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from healthcard_apdu.app.batch import (
    DEFAULT_ISSUER,
    SimCardStore,
    default_sim_pool,
    open_issuer,
    profile_checker,
    reader_slots,
    tear_faults,
)
from healthcard_apdu.app.batch import load_issuer as _load_issuer
from healthcard_apdu.batch.errors import BatchError
from healthcard_apdu.batch.input import Format
from healthcard_apdu.batch.issuer import CardIssuer
from healthcard_apdu.batch.journal import Journal, default_journal_path, is_postgres_target
from healthcard_apdu.batch.runner import (
    BatchRunner,
    RunSummary,
    default_batch_name,
    default_station,
    validate_file,
)
from healthcard_apdu.batch.slots import ReaderSlot
from healthcard_apdu.batch.validate import ValidationReport
from healthcard_apdu.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    die,
    emit,
    exit_on_errors,
)
from healthcard_apdu.cli.options import (
    factor_options,
    pop_factor_options,
    pop_security_options,
    security_options,
)

__all__ = ["DEFAULT_ISSUER", "SimCardStore", "batch", "load_issuer", "tear_faults"]

EXIT_INTERRUPTED = 130


def load_issuer(spec: str, profile: str | None, keys: str | None) -> CardIssuer:
    """Import ``module:factory`` and call it with the profile and the keys string
    (``app.batch.load_issuer``; kept here for scripts that import it from the CLI)."""
    return _load_issuer(spec, profile, keys)


def _journal_target(journal: str | None, residents: str | None) -> str:
    if journal:
        return journal
    if residents:
        return str(default_journal_path(residents))
    raise click.UsageError("give RESIDENTS or --journal")


@click.group("batch")
def batch() -> None:
    """Issue resident files in bulk: validation, journal, several readers."""


@batch.command("run")
@click.argument("residents", type=click.Path(exists=True, dir_okay=False))
@click.option("--profile", help="Issuance profile (built-in name or TOML file).")
@security_options
@click.option("--reader", "readers", multiple=True, help="PC/SC reader (repeatable).")
@click.option("--sim", "sim_readers", type=click.IntRange(0, 64), default=0,
              help="Use N simulated readers instead of PC/SC.")
@click.option("--journal", help="SQLite path or postgresql:// URL "
                                "(default: RESIDENTS' name + .journal.sqlite).")
@click.option("--batch", "batch_name", help="Batch name (default: the file's stem).")
@click.option("--station", help="Station name for shared journals (default: host name).")
@click.option("--encoding", help="File encoding (default: UTF-8, else GBK).")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), help="File format.")
@click.option("--validate-only", is_flag=True, help="Only validate; write the report.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write the validation "
                                                                "report (JSON) here.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--issuer", "issuer_spec", default=DEFAULT_ISSUER, show_default=True,
              help="MODULE:FACTORY returning a CardIssuer. Another factory than the default "
                   "is called with the profile and the --keys path (or pkcs11:LABEL).")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Attempts per row before a failed row is no longer retried.")
@click.option("--idle-timeout", type=float, default=600.0, show_default=True,
              help="PC/SC: stop a reader after this many seconds without a card once the "
                   "queue is empty.")
@click.option("--reader-grace", type=float, default=60.0, show_default=True,
              help="Seconds to wait for unplugged readers once no other reader works.")
@click.option("--sim-pool", type=click.Path(file_okay=False),
              help="Simulated card stock directory (default: next to the journal).")
@click.option("--sim-latency", type=int, default=0, help="Model card I/O at this baud rate "
                                                         "in real time (0 = off).")
@click.option("--sim-tear-rate", type=click.FloatRange(0.0, 1.0), default=0.0,
              help="Fraction of simulated cards torn during their first insertion.")
@click.option("--sim-seed", type=int, default=1, help="Seed of the simulated faults.")
@click.option("--progress/--no-progress", default=True, help="Live progress on stderr.")
@factor_options
def run_command(residents: str, profile: str | None, readers: tuple[str, ...],
                sim_readers: int, journal: str | None, batch_name: str | None,
                station: str | None, encoding: str | None, fmt: str | None,
                validate_only: bool, report: str | None, as_json: bool, issuer_spec: str,
                max_attempts: int, idle_timeout: float, reader_grace: float,
                sim_pool: str | None, sim_latency: int, sim_tear_rate: float, sim_seed: int,
                progress: bool, **security: Any) -> None:
    """Validate RESIDENTS, load it into the journal and issue it on the readers.

    The default issuer personalizes with --profile and one security module (--keys or
    --pkcs11-token; a PSAM cannot personalize). Before it erases an issued card, the card
    factor is confirmed with INTERNAL AUTHENTICATE (no try counter).
    """
    factor = pop_factor_options(security)
    file_format: Format | None = "csv" if fmt == "csv" else "jsonl" if fmt == "jsonl" else None
    target = _journal_target(journal, residents)
    security_choice = pop_security_options(security)
    try:
        if validate_only:
            existing = is_postgres_target(target) or Path(target).exists()
            with _maybe_journal(target if existing else None) as jnl:
                result = validate_file(residents, encoding=encoding, fmt=file_format,
                                       journal=jnl, batch=batch_name,
                                       checker=profile_checker(profile))
            if report:
                result.write(report)
            emit(result.to_dict() if as_json else "\n".join(result.lines()), as_json)
            sys.exit(EXIT_OK if result.invalid == 0 else EXIT_FAILED)
        if not readers and not sim_readers:
            raise click.UsageError("give --reader (repeatable) or --sim N")
        if readers and sim_readers:
            raise click.UsageError("--reader and --sim exclude each other")
        name = batch_name or default_batch_name(residents)
        with exit_on_errors(((BatchError, EXIT_USAGE),)), \
                open_issuer(issuer_spec, profile, security_choice, factor_rule=factor.rule,
                            confirm_factor=factor.confirm) as opened:
            pool_dir = None
            if sim_readers:
                pool_dir = Path(sim_pool) if sim_pool else default_sim_pool(target, residents,
                                                                             name)
            slots = reader_slots(readers, sim_readers, pool_dir=pool_dir,
                                 sim_latency=sim_latency, tear_rate=sim_tear_rate,
                                 seed=sim_seed)
            summary, validation = _run(opened.issuer, slots, target, name, residents,
                                       station=station, max_attempts=max_attempts,
                                       idle_timeout=None if sim_readers else idle_timeout,
                                       reader_grace=reader_grace if not sim_readers else 0.0,
                                       progress=progress, encoding=encoding, fmt=file_format,
                                       report=report)
        if as_json:
            emit(summary.to_dict() | {"validation": validation.to_dict()
                                      | {"issues": len(validation.issues)}}, True)
        else:
            click.echo("\n".join(summary.lines()))
        sys.exit(EXIT_OK if summary.complete else EXIT_FAILED)
    except BatchError as exc:
        die(str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        die("aborted; the journal is consistent: run again to recover and continue",
             EXIT_INTERRUPTED)


def _run(issuer: CardIssuer, slots: list[ReaderSlot], target: str, name: str, residents: str,
         *, station: str | None, max_attempts: int, idle_timeout: float | None,
         reader_grace: float, progress: bool, encoding: str | None, fmt: Format | None,
         report: str | None) -> tuple[RunSummary, ValidationReport]:
    """Load the file into the journal and issue it; the summary and the validation result."""
    with Journal.open(target) as jnl:
        runner = BatchRunner(
            jnl, issuer, slots, station=station or default_station(),
            max_attempts=max_attempts, idle_timeout=idle_timeout, reader_grace=reader_grace,
            progress=sys.stderr if progress else None,
        )
        with runner:
            _, validation = runner.load(residents, batch=name, encoding=encoding, fmt=fmt)
            if report:
                validation.write(report)
            if progress and validation.invalid:
                for line in validation.lines(limit=20):
                    click.echo(line, err=True)
            return runner.run(name), validation


class _maybe_journal:
    """Open a journal when there is one (validation also checks numbers it already holds)."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self.journal: Journal | None = None

    def __enter__(self) -> Journal | None:
        if self.target is not None:
            self.journal = Journal.open(self.target)
        return self.journal

    def __exit__(self, *exc: object) -> None:
        if self.journal is not None:
            self.journal.close()


@batch.command("status")
@click.argument("residents", required=False, type=click.Path(dir_okay=False))
@click.option("--journal", help="SQLite path or postgresql:// URL.")
@click.option("--batch", "batch_name", help="Only this batch (default: every batch).")
@click.option("--events", "show_events", type=int, default=0,
              help="Also show the last N events of the batch.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(residents: str | None, journal: str | None, batch_name: str | None,
                   show_events: int, as_json: bool) -> None:
    """Rows per state, failures and cards that need erasing, per batch."""
    target = _journal_target(journal, residents)
    if not is_postgres_target(target) and not Path(target).exists():
        die(f"no journal at {target}", EXIT_USAGE)
    try:
        with Journal.open(target, migrate=False) as jnl:
            infos = jnl.batches()
            if batch_name is None and residents is not None and not journal:
                batch_name = default_batch_name(residents)
            if batch_name is not None:
                infos = [i for i in infos if i.name == batch_name]
                if not infos:
                    die(f"no batch {batch_name!r} in {jnl.describe()}", EXIT_USAGE)
            out: list[dict[str, Any]] = []
            for info in infos:
                entry: dict[str, Any] = {
                    "batch": info.name, "source": info.source,
                    "loaded": info.loaded_at is not None, "counts": jnl.counts(info.name),
                    "failed": [{"row": r.row_no, "reason": r.reason, "attempts": r.attempts}
                               for r in jnl.rows(info.name, ["failed"])],
                    "needs_erase": [{"row": r.row_no, "chip_serial": r.chip_serial,
                                     "reason": r.reason}
                                    for r in jnl.rows(info.name, ["needs-erase"])],
                    "in_flight": [{"row": r.row_no, "state": r.state, "station": r.station,
                                   "reader": r.reader}
                                  for r in jnl.rows(info.name, ["claimed", "personalizing"])],
                }
                if show_events:
                    entry["events"] = jnl.events(info.name)[-show_events:]
                out.append(entry)
    except BatchError as exc:
        die(str(exc), EXIT_USAGE)
    if as_json:
        emit(out, True)
        return
    for entry in out:
        counts = entry["counts"]
        click.echo(f"batch {entry['batch']!r} ({entry['source']})"
                   + ("" if entry["loaded"] else " [loading incomplete]"))
        click.echo("  " + ", ".join(f"{state} {count}" for state, count in counts.items()))
        for row in entry["failed"]:
            click.echo(f"  failed row {row['row']} (attempts {row['attempts']}): {row['reason']}")
        for row in entry["needs_erase"]:
            click.echo(f"  needs erase row {row['row']}: card {row['chip_serial']} "
                       f"({row['reason']})")
        for row in entry["in_flight"]:
            click.echo(f"  {row['state']} row {row['row']} on station {row['station']} reader "
                       f"{row['reader']}")
        for event in entry.get("events", []):
            click.echo(f"  {event['at']} {event['kind']} row {event['row_no']} "
                       f"{event['reader'] or ''} {event['detail'] or ''}".rstrip())


@batch.command("void")
@click.argument("chip_serial")
@click.option("--journal", required=True, help="SQLite path or postgresql:// URL.")
@click.option("--reason", required=True, help="Why the card is given up (lost, destroyed...).")
def void_command(chip_serial: str, journal: str, reason: str) -> None:
    """Give up a half-done card: its row is queued again; the card is erased if it returns."""
    try:
        with Journal.open(journal) as jnl:
            row = jnl.void_card(chip_serial.upper(), reason)
    except BatchError as exc:
        die(str(exc), EXIT_USAGE)
    if row is None:
        click.echo(f"card {chip_serial.upper()} is not bound to any row; remembered as void")
    else:
        click.echo(f"card {chip_serial.upper()} void; batch {row.batch!r} row {row.row_no} "
                   "queued again")


@batch.command("purge")
@click.argument("residents", required=False, type=click.Path(dir_okay=False))
@click.option("--journal", help="SQLite path or postgresql:// URL.")
@click.option("--batch", "batch_name", help="Only this batch (default: every batch).")
@click.option("--older-than", "days", type=click.FloatRange(min=0.0), required=True,
              metavar="DAYS", help="Retention period: purge rows finished more than DAYS "
                                   "days ago.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def purge_command(residents: str | None, journal: str | None, batch_name: str | None,
                  days: float, as_json: bool) -> None:
    """Drop the personal data of issued (and invalid) rows after a retention period; keep
    what audit needs: row number, chip serial, times, outcome (docs/batch.md)."""
    target = _journal_target(journal, residents)
    if not is_postgres_target(target) and not Path(target).exists():
        die(f"no journal at {target}", EXIT_USAGE)
    before = datetime.now(UTC) - timedelta(days=days)
    try:
        with Journal.open(target) as jnl:
            if batch_name is not None and jnl.batch(batch_name) is None:
                die(f"no batch {batch_name!r} in {jnl.describe()}", EXIT_USAGE)
            purged = jnl.purge(before, batch_name)
    except BatchError as exc:
        die(str(exc), EXIT_USAGE)
    if as_json:
        emit({"before": before.isoformat(timespec="seconds"), "purged": purged}, True)
        return
    if not purged:
        click.echo(f"nothing to purge: no issued or invalid row finished before "
                   f"{before.isoformat(timespec='seconds')}")
    for name, count in purged.items():
        click.echo(f"batch {name!r}: personal data of {count} rows dropped")


@batch.command("recover")
@click.option("--journal", required=True, help="SQLite path or postgresql:// URL.")
@click.option("--station", required=True, help="The station that stopped for good.")
def recover_command(journal: str, station: str) -> None:
    """Release the rows a stopped station left claimed or half done."""
    try:
        with Journal.open(journal) as jnl:
            if jnl.station_alive(station):
                die(f"station {station!r} is still running", EXIT_USAGE)
            counts = jnl.recover_station(station)
    except BatchError as exc:
        die(str(exc), EXIT_USAGE)
    click.echo(f"station {station!r}: {counts['requeued']} claims queued again, "
               f"{counts['needs_erase']} cards need erasing (insert them at any station)")


if __name__ == "__main__":  # pragma: no cover - python -m healthcard_apdu.cli.batch
    batch()
