"""``healthcard conformance``: run the conformance suite (reader, simulator or replay) and list it.

Exit codes of ``run``: 0 every selected case passed (skipped and not-applicable cases do not
count against it), 1 a case failed or erred, 2 bad options (also: destructive cases asked for on
a production profile), 3 the card or reader could not be used, 4 the security module could not
be used (wrong passphrase, unreadable key file, PKCS#11 or PSAM error).
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from healthcard_apdu.app.connect import (
    CardOptions,
    check_card_options,
    open_card_link,
    open_security,
)
from healthcard_apdu.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    die,
    emit,
    exit_on_errors,
)
from healthcard_apdu.cli.options import (
    card_options,
    factor_options,
    pop_card_options,
    pop_factor_options,
    pop_security_options,
    security_options,
)
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
from healthcard_apdu.crypto import BlockCipher


def _card_target(card: CardOptions, legacy_sim: Path | None, replay: Path | None) -> CardOptions:
    """The card to test; ``--sim`` is the old spelling of ``--sim-card``."""
    if legacy_sim is not None:
        if card.sim_card is not None:
            die("--sim is the old name of --sim-card; give one of them", EXIT_USAGE)
        card = CardOptions(card.reader, legacy_sim)
    if sum(x is not None for x in (card.reader, card.sim_card, replay)) != 1:
        die("give exactly one of --reader, --sim-card and --replay", EXIT_USAGE)
    return card


def _profile_algorithm(profile: str | None) -> BlockCipher | None:
    """The cipher a PSAM or PKCS#11 token works with: the profile's (None without one)."""
    if profile is None:
        return None
    from healthcard_apdu.perso.profile import load_profile

    return load_profile(profile).algorithm


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
@card_options
@click.option("--sim", "legacy_sim", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              hidden=True, help="Deprecated: --sim-card.")
@click.option("--replay", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Transcript (trace.jsonl) of an earlier run: check it again offline.")
@click.option("--profile", help="Issuance profile file or built-in name (default national-32k; "
              "a replay uses the recorded one).")
@security_options
@click.option("--destructive", is_flag=True,
              help="Also run destructive cases (blocks keys and the card; never on production).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path, file_okay=False),
              required=True, help="Directory for report.json, junit.xml, report.html, trace.jsonl.")
@click.option("--case", "patterns", multiple=True, help="Case ID or pattern (HC-ACC-*); repeat.")
@click.option("--group", "groups", multiple=True, help="Case group (access, sm, ...); repeat.")
@click.option("--seed", help="Host randomness seed as hex (default: random, recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@factor_options
def run_command(legacy_sim: Path | None, replay: Path | None, profile: str | None,
                destructive: bool, report_dir: Path, patterns: tuple[str, ...],
                groups: tuple[str, ...], seed: str | None, as_json: bool,
                **connection: Any) -> None:
    """Run the suite against a reader, a simulated card or a recorded transcript.

    --keys may also be a plain JSON key set (test keys). Before any case the card factor of
    the profile's card-product rule (or --factor-rule) is confirmed with INTERNAL AUTHENTICATE;
    when no candidate is confirmed no case runs and no try is spent.
    """
    card = _card_target(pop_card_options(connection), legacy_sim, replay)
    security = pop_security_options(connection)
    factor = pop_factor_options(connection)
    if replay is None and profile is None:
        from healthcard_apdu.perso.profile import DEFAULT_PROFILE

        profile = DEFAULT_PROFILE
    if replay is not None and (destructive or patterns or groups or seed or factor.rule
                               or not factor.confirm):
        die("a replay runs what the transcript recorded; drop --destructive/--case/--group/"
            "--seed/--factor-rule/--no-factor-check", EXIT_USAGE)
    try:
        seed_bytes = bytes.fromhex(seed) if seed else None
        profile_info = ProfileInfo.load(profile) if profile else None
        options = RunOptions(patterns=patterns, groups=groups, destructive=destructive,
                             seed=seed_bytes, factor_rule=factor.rule,
                             confirm_factor=factor.confirm)
        if profile_info is not None and destructive and profile_info.production:
            raise ConformanceError(
                f"refusing destructive cases: profile {profile_info.name} is marked production")
        select_cases(patterns, groups)
    except ValueError:
        die(f"--seed {seed!r} is not hex", EXIT_USAGE)
    except ConformanceError as exc:
        die(str(exc), EXIT_USAGE)
    if replay is None:
        check_card_options(card, required=True)
    with exit_on_errors(), ExitStack() as stack:
        opened = stack.enter_context(open_security(
            security, algorithm=_profile_algorithm(profile), plain_keys=True))
        module = opened.module
        if opened.sam is not None:
            # A refused PSAM PIN means the module cannot be used (exit 4), not that every
            # case errs. The PIN is verified once here, as it would be by the first case.
            opened.sam.security.unlock()
        report_dir.mkdir(parents=True, exist_ok=True)
        trace = report_dir / ("replay-trace.jsonl" if replay is not None else "trace.jsonl")
        try:
            if replay is not None:
                run = replay_suite(replay, module, profile=profile_info, trace=trace)
            else:
                link = stack.enter_context(open_card_link(card, required=True))
                faults: PowerFaults | None = (
                    SimPowerFaults(link.sim_card) if link.sim_card is not None else None)
                run = run_suite(link.transport, module, profile=profile_info, options=options,
                                faults=faults, trace=trace)
        except ConformanceError as exc:
            die(str(exc), EXIT_USAGE)
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
        die(str(exc), EXIT_USAGE)
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
