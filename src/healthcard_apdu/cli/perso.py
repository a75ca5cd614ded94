"""``healthcard personalize`` and ``healthcard verify``: thin commands over
:mod:`healthcard_apdu.perso`.

Passphrases and PINs come from environment variables or hidden prompts, never from the command
line. Everything that can be checked without the card (profile, record, keys) is checked before
the reader is opened. Exit codes: docs/cli.md.
"""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from healthcard_apdu.apdu.errors import CardError
from healthcard_apdu.app.connect import (
    CardOptions,
    SecurityOptions,
    check_card_options,
    open_card_link,
    open_security,
)
from healthcard_apdu.card.factor import FactorConfirmation, FactorStatus
from healthcard_apdu.cli.common import (
    EXIT_CARD,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SECURITY,
    EXIT_USAGE,
    die,
    emit,
    exit_on_errors,
)
from healthcard_apdu.cli.options import (
    FactorChoice,
    card_options,
    factor_options,
    pop_card_options,
    pop_factor_options,
    pop_security_options,
    security_options,
    trace_option,
)
from healthcard_apdu.fileio import parse_json, write_file
from healthcard_apdu.model import CardData
from healthcard_apdu.perso.errors import (
    AuthenticationRefused,
    PersoError,
    ProfileError,
    SecurityModuleUnsuitable,
)
from healthcard_apdu.perso.profile import DEFAULT_PROFILE, Profile, check_record, load_profile
from healthcard_apdu.security import SecurityModule
from healthcard_apdu.transport.base import Transport
from healthcard_apdu.transport.trace import Tracer

__all__ = ["personalize_command", "verify_command"]

#: perso's reading of the exit codes (docs/cli.md): a card's refusal during a step is a card
#: error (3), a refused EXTERNAL AUTHENTICATE or an unsuitable module a security error (4).
_EXIT_CODES = (
    (ProfileError, EXIT_USAGE),
    ((AuthenticationRefused, SecurityModuleUnsuitable), EXIT_SECURITY),
    ((CardError, PersoError), EXIT_CARD),
)


# --- inputs ---------------------------------------------------------------------------------


def _load_inputs(profile_name: str, data: Path,
                 factor: FactorChoice | None = None) -> tuple[Profile, CardData]:
    profile = load_profile(profile_name)
    if factor is not None and factor.rule is not None:
        profile = profile.with_factor_rule(factor.rule)
    try:
        document = parse_json(data.read_bytes())
    except OSError as exc:
        die(f"{data}: cannot read ({exc.strerror})", EXIT_USAGE)
    except ValueError as exc:
        die(f"{data}: not a readable JSON record ({exc})", EXIT_USAGE)
    if not isinstance(document, dict):
        die(f"{data}: the record must be a JSON object", EXIT_USAGE)
    card, problems = check_record(profile, document)
    if card is None:
        raise ProfileError(str(data), problems)
    return profile, card


def _security(stack: ExitStack, options: SecurityOptions, profile: Profile,
              *, issuing: bool) -> SecurityModule:
    """The security module the options choose (closed with ``stack``); a PSAM is refused
    for personalization before anything is opened."""
    opened = open_security(options, algorithm=profile.algorithm, issuing=issuing)
    return stack.enter_context(opened).module


def _card(stack: ExitStack, options: CardOptions) -> Transport:
    return stack.enter_context(open_card_link(options, required=True)).transport


def _tracer(stack: ExitStack, trace: Path | None) -> Tracer | None:
    return None if trace is None else stack.enter_context(Tracer(trace))


# --- options --------------------------------------------------------------------------------

_inputs = [
    click.option("--profile", "profile_name", default=DEFAULT_PROFILE, show_default=True,
                 metavar="NAME|PATH", help="Issuance profile (built-in name or TOML file)."),
    click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 required=True, help="Resident record (model JSON, names or codes)."),
]


def _card_factor(text: str | None) -> bytes | None:
    if text is None:
        return None
    try:
        factor = bytes.fromhex(text)
    except ValueError:
        die(f"--card-factor {text!r} is not hex", EXIT_USAGE)
    if len(factor) != 8:
        die(f"--card-factor must be 8 bytes, got {len(factor)}", EXIT_USAGE)
    return factor


def _factor_notice(check: FactorConfirmation | None) -> None:
    """The card-factor check on stderr when it did not simply confirm the configured rule."""
    if check is not None and (check.status is FactorStatus.IMPOSSIBLE or check.by_other_rule):
        click.echo(f"warning: {check.message}", err=True)


def _with_common(func: Any) -> Any:
    func = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)
    func = click.option("--card-factor", metavar="HEX",
                        help="The card factor (16 hex digits) instead of the profile's rule "
                        "(the rule fixed:HEX; --dry-run: no card needed).")(func)
    func = factor_options(func)
    func = trace_option(func)
    func = security_options(func)
    for option in reversed(_inputs):
        func = option(func)
    return card_options(func)


@click.command("personalize")
@_with_common
@click.option("--erase", is_flag=True,
              help="Erase an issued card first (needs its MF master key; never retried).")
@click.option("--dry-run", is_flag=True, help="Print the plan (secrets masked); send nothing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="With --dry-run: write the plan JSON to this file.")
def personalize_command(**opts: Any) -> None:
    """Personalize a blank card from a profile, a resident record and master keys.

    With --erase the card factor of the issued card is first confirmed with INTERNAL
    AUTHENTICATE (no try counter); nothing confirmed: exit 4 before any try is spent.
    """
    card_target = pop_card_options(opts)
    security = pop_security_options(opts)
    factor = pop_factor_options(opts)
    with exit_on_errors(_EXIT_CODES), ExitStack() as stack:
        if not opts["dry_run"] and opts["out"]:
            die("--out goes with --dry-run", EXIT_USAGE)
        check_card_options(card_target, required=not opts["dry_run"])
        security.backend()
        card_factor = _card_factor(opts["card_factor"])
        profile, card = _load_inputs(opts["profile_name"], opts["data"], factor)
        module = _security(stack, security, profile, issuing=True)
        if opts["dry_run"]:
            _dry_run(stack, profile, card, module, card_target, opts)
            return
        from healthcard_apdu.perso.execute import Progress, personalize

        transport = _card(stack, card_target)
        tracer = _tracer(stack, opts["trace"])
        progress: Progress | None = None
        if not opts["as_json"] and sys.stderr.isatty():

            def show(done: int, total: int, name: str) -> None:
                end = "\n" if done == total else ""
                click.echo(f"\r[{done:>4}/{total}] {name[:60]:<60}", nl=False, err=True)
                if end:
                    click.echo("", err=True)

            progress = show

        result = personalize(transport, profile, card, module, erase=opts["erase"],
                             progress=progress, tracer=tracer, card_factor=card_factor,
                             confirm_factor=factor.confirm)
        _factor_notice(result.factor_check)
        out = result.to_json()
        if opts["as_json"]:
            emit(out, True)
        else:
            emit({k: v for k, v in out.items() if not isinstance(v, dict)}, False)
    raise SystemExit(EXIT_OK)


def _dry_run(stack: ExitStack, profile: Profile, card: CardData, security: SecurityModule,
             card_target: CardOptions, opts: dict[str, Any]) -> None:
    from healthcard_apdu.perso.execute import card_factor_of
    from healthcard_apdu.perso.plan import build_plan

    given = _card_factor(opts["card_factor"])
    if given is not None:
        factor = given
    else:
        if not card_target.given:
            die("--dry-run needs --card-factor, --reader or --sim-card", EXIT_USAGE)
        factor = card_factor_of(_card(stack, card_target).atr(), profile.product.factor_rule)
    plan = build_plan(profile, card, factor, security)
    document = plan.to_json(include_erase=opts["erase"])
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if opts["out"]:
        write_file(opts["out"], text + "\n")  # 0600: the plan holds the resident's data
        summary = {"plan": str(opts["out"]), "apdus": plan.apdus, "bytes": plan.bytes}
        emit(summary, opts["as_json"])
    else:
        click.echo(text)


@click.command("verify")
@_with_common
def verify_command(**opts: Any) -> None:
    """Check a card: data equal to the record, every key answers, forbidden accesses refused."""
    from healthcard_apdu.perso.verify import verify_card

    card_target = pop_card_options(opts)
    security = pop_security_options(opts)
    factor = pop_factor_options(opts)
    with exit_on_errors(_EXIT_CODES), ExitStack() as stack:
        check_card_options(card_target, required=True)
        security.backend()
        card_factor = _card_factor(opts["card_factor"])
        profile, card = _load_inputs(opts["profile_name"], opts["data"], factor)
        module = _security(stack, security, profile, issuing=False)
        transport = _card(stack, card_target)
        report = verify_card(transport, profile, card, module,
                             tracer=_tracer(stack, opts["trace"]), card_factor=card_factor,
                             confirm_factor=factor.confirm)
        _factor_notice(report.factor_check)
        if opts["as_json"]:
            emit(report.to_json(), True)
        else:
            click.echo(f"card {report.card_factor}, profile {report.profile}: "
                       f"{report.files_checked} files, {len(report.keys)} keys, "
                       f"{len(report.probes)} forbidden accesses checked")
            for line in report.problems():
                click.echo(f"  FAIL {line}")
            unused = report.not_exercised()
            if unused:
                click.echo("  not exercised (their commands block the card): "
                           + ", ".join(unused))
            click.echo("verify: OK" if report.ok else "verify: FAILED")
    raise SystemExit(EXIT_OK if report.ok else EXIT_FAILED)
