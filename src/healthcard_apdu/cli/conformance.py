"""``healthcard conformance``: run the conformance suite (reader, simulator or replay) and list it.

Exit codes of ``run``: 0 every selected case passed (skipped and not-applicable cases do not
count against it), 1 a case failed or erred, 2 bad options (also: destructive cases asked for on
a production profile), 3 the card or reader could not be used, 4 the key file could not be used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from healthcard_apdu.cli.common import (
    EXIT_CARD,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SECURITY,
    EXIT_USAGE,
    emit,
    fail,
)
from healthcard_apdu.cli.keys import PASSPHRASE_ENV
from healthcard_apdu.conformance import (
    ConformanceError,
    PowerFaults,
    ProfileInfo,
    RunOptions,
    SimPowerFaults,
    SuiteRun,
    all_cases,
    replay_suite,
    run_suite,
    select_cases,
    write_reports,
)
from healthcard_apdu.security import KeySet, SoftwareSecurityModule
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.security.keyset import FILE_FORMAT
from healthcard_apdu.transport.base import Transport, TransportError


def _die(message: str, code: int) -> NoReturn:
    fail(message, code)
    raise SystemExit(code)  # fail() exits; this keeps type checkers informed


def _load_keys(path: Path, passphrase_env: str) -> KeySet:
    """An encrypted key file (passphrase from the environment or a hidden prompt) or plain JSON."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _die(f"{path}: not a readable JSON key file ({exc.__class__.__name__})", EXIT_SECURITY)
    try:
        if isinstance(document, dict) and document.get("format") == FILE_FORMAT:
            passphrase = os.environ.get(passphrase_env) or click.prompt(
                "Key-file passphrase", hide_input=True, err=True)
            return KeySet.load(path, passphrase)
        if not isinstance(document, dict):
            _die(f"{path}: expected a JSON object", EXIT_SECURITY)
        return KeySet.from_plain_dict(document, str(path))
    except SecurityModuleError as exc:
        _die(str(exc), EXIT_SECURITY)


@contextmanager
def _live_target(reader: str | None, sim: Path | None) -> Iterator[tuple[Transport,
                                                                         PowerFaults | None]]:
    """The transport to test and, for the in-process simulator, its power faults."""
    if sim is not None:
        from healthcard_apdu.sim import SimCard
        from healthcard_apdu.sim.errors import SimError
        from healthcard_apdu.transport.inprocess import InProcessTransport

        try:
            card = SimCard.open(sim)
        except SimError as exc:
            _die(str(exc), EXIT_CARD)
        with InProcessTransport(card, name=f"sim:{sim.name}") as transport:
            yield transport, SimPowerFaults(card)
        return
    from healthcard_apdu.transport.pcsc import PcscTransport

    target: str | int | None = int(reader) if reader and reader.isdigit() else reader
    with PcscTransport(target) as transport:
        yield transport, None


def _print_summary(run: SuiteRun, paths: dict[str, Path], as_json: bool) -> None:
    counts = run.counts()
    failing = [r for r in run.results if r.status.is_problem]
    if as_json:
        emit({"passed": run.passed, "summary": counts,
              "failures": [{"id": r.info.id, "status": r.status.value, "message": r.message}
                           for r in failing],
              "reports": {k: str(v) for k, v in paths.items()}}, True)
        return
    if run.setup_error:
        click.echo(f"setup failed: {run.setup_error}")
    click.echo(f"{'PASS' if run.passed else 'FAIL'}: {counts['passed']} passed, "
               f"{counts['failed']} failed, {counts['error']} errors, {counts['skipped']} skipped, "
               f"{counts['not_applicable']} not applicable of {counts['total']}")
    for result in failing:
        click.echo(f"  {result.info.id} {result.status.value}: {result.message}")
    for kind, path in paths.items():
        click.echo(f"{kind}: {path}")


@click.group("conformance")
def conformance_group() -> None:
    """Conformance suite for test labs: JUnit, JSON and HTML reports."""


@conformance_group.command("run")
@click.option("--reader", help="PC/SC reader (name, unique part of it, or index).")
@click.option("--sim", "sim", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Simulated card image file, run in-process (power loss available).")
@click.option("--replay", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Transcript (trace.jsonl) of an earlier run: check it again offline.")
@click.option("--profile", help="Issuance profile file or built-in name (not needed to replay).")
@click.option("--keys", "keys", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              required=True, help="Key file (encrypted, or plain JSON for test keys).")
@click.option("--passphrase-env", default=PASSPHRASE_ENV, show_default=True,
              help="Environment variable holding the key-file passphrase (else a prompt).")
@click.option("--destructive", is_flag=True,
              help="Also run destructive cases (blocks keys and the card; never on production).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="Directory for report.json, junit.xml, report.html, trace.jsonl.")
@click.option("--case", "patterns", multiple=True, help="Case ID or pattern (HC-ACC-*); repeat.")
@click.option("--group", "groups", multiple=True, help="Case group (access, sm, ...); repeat.")
@click.option("--seed", help="Host randomness seed as hex (default: random, recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def run_command(reader: str | None, sim: Path | None, replay: Path | None, profile: str | None,
                keys: Path, passphrase_env: str, destructive: bool, report_dir: Path,
                patterns: tuple[str, ...], groups: tuple[str, ...], seed: str | None,
                as_json: bool) -> None:
    """Run the suite against a reader, a simulated card or a recorded transcript."""
    if sum(x is not None for x in (reader, sim, replay)) != 1:
        _die("give exactly one of --reader, --sim and --replay", EXIT_USAGE)
    if replay is None and profile is None:
        _die("--profile is required unless --replay is given", EXIT_USAGE)
    if replay is not None and (destructive or patterns or groups or seed):
        _die("a replay runs what the transcript recorded; drop --destructive/--case/--group/"
             "--seed", EXIT_USAGE)
    try:
        seed_bytes = bytes.fromhex(seed) if seed else None
        profile_info = ProfileInfo.load(profile) if profile else None
        options = RunOptions(patterns=patterns, groups=groups, destructive=destructive,
                             seed=seed_bytes)
        if profile_info is not None and destructive and profile_info.production:
            raise ConformanceError(
                f"refusing destructive cases: profile {profile_info.name} is marked production")
        select_cases(patterns, groups)
    except ValueError:
        _die(f"--seed {seed!r} is not hex", EXIT_USAGE)
    except ConformanceError as exc:
        _die(str(exc), EXIT_USAGE)
    keyset = _load_keys(keys, passphrase_env)
    report_dir.mkdir(parents=True, exist_ok=True)
    trace = report_dir / ("replay-trace.jsonl" if replay is not None else "trace.jsonl")
    with ExitStack() as stack:
        security = stack.enter_context(SoftwareSecurityModule(keyset))
        try:
            if replay is not None:
                run = replay_suite(replay, security, profile=profile_info, trace=trace)
            else:
                transport, faults = stack.enter_context(_live_target(reader, sim))
                run = run_suite(transport, security, profile=profile_info, options=options,
                                faults=faults, trace=trace)
        except ConformanceError as exc:
            _die(str(exc), EXIT_USAGE)
        except TransportError as exc:
            _die(str(exc), EXIT_CARD)
    paths = dict(write_reports(run, report_dir))
    paths["trace"] = trace
    _print_summary(run, paths, as_json)
    raise SystemExit(EXIT_OK if run.passed else EXIT_FAILED)


@conformance_group.command("list")
@click.option("--group", "groups", multiple=True, help="Only these groups.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(groups: tuple[str, ...], as_json: bool) -> None:
    """List the cases: ID, group, severity, destructive, title, reference."""
    try:
        cases = select_cases((), groups) if groups else all_cases()
    except ConformanceError as exc:
        _die(str(exc), EXIT_USAGE)
    rows: list[dict[str, Any]] = [
        {"id": c.id, "group": c.group.slug, "severity": c.severity,
         "destructive": "yes" if c.destructive else "", "title": c.title,
         "reference": c.reference}
        for c in cases
    ]
    if as_json:
        for row in rows:
            row["destructive"] = row["destructive"] == "yes"
    emit(rows, as_json, columns=("id", "group", "severity", "destructive", "title", "reference"))
