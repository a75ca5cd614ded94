"""``healthcard personalize`` and ``healthcard verify``: thin commands over
:mod:`healthcard_apdu.perso`.

Passphrases and PINs come from environment variables or hidden prompts, never from the command
line. Everything that can be checked without the card (profile, record, keys) is checked before
the reader is opened. Exit codes: docs/cli.md.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click

from healthcard_apdu.apdu.errors import CardError, HealthCardError
from healthcard_apdu.cli.common import (
    EXIT_CARD,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SECURITY,
    EXIT_USAGE,
    emit,
    fail,
)
from healthcard_apdu.model import CardData
from healthcard_apdu.perso.errors import (
    AuthenticationRefused,
    CardNotBlank,
    EraseRefused,
    PersoError,
    ProfileError,
    SecurityModuleUnsuitable,
    StepFailed,
)
from healthcard_apdu.perso.profile import DEFAULT_PROFILE, Profile, check_record, load_profile
from healthcard_apdu.security import SecurityModule
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.transport.base import Transport, TransportError

__all__ = ["personalize_command", "verify_command"]

PASSPHRASE_ENV = "HEALTHCARD_KEYS_PASSPHRASE"
PKCS11_PIN_ENV = "HEALTHCARD_PKCS11_PIN"
SAM_PIN_ENV = "HEALTHCARD_SAM_PIN"


def _die(message: str, code: int) -> NoReturn:
    fail(message, code)
    raise SystemExit(code)  # fail() exits; this keeps type checkers informed


def _secret(env: str, prompt: str) -> str:
    value = os.environ.get(env)
    if value:
        return value
    entered: str = click.prompt(prompt, hide_input=True, err=True)
    return entered


@contextmanager
def _exit_codes() -> Iterator[None]:
    """Map library errors to the documented exit codes (messages carry no secrets)."""
    try:
        yield
    except ProfileError as exc:
        _die(str(exc), EXIT_USAGE)
    except (AuthenticationRefused, SecurityModuleUnsuitable, SecurityModuleError) as exc:
        _die(str(exc), EXIT_SECURITY)
    except (CardNotBlank, EraseRefused, StepFailed, TransportError, CardError) as exc:
        _die(str(exc), EXIT_CARD)
    except PersoError as exc:
        _die(str(exc), EXIT_CARD)
    except HealthCardError as exc:
        _die(str(exc), EXIT_CARD)


# --- inputs ---------------------------------------------------------------------------------


def _load_inputs(profile_name: str, data: Path) -> tuple[Profile, CardData]:
    profile = load_profile(profile_name)
    try:
        document = json.loads(data.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _die(f"{data}: not a readable JSON record ({exc.__class__.__name__}: {exc})", EXIT_USAGE)
    if not isinstance(document, dict):
        _die(f"{data}: the record must be a JSON object", EXIT_USAGE)
    card, problems = check_record(profile, document)
    if card is None:
        raise ProfileError(str(data), problems)
    return profile, card


def _open_security(stack: ExitStack, profile: Profile, opts: dict[str, Any]) -> SecurityModule:
    """The security module chosen on the command line (closed with ``stack``)."""
    module: SecurityModule
    chosen = [name for name in ("keys", "pkcs11_token", "sam_reader") if opts.get(name)]
    if len(chosen) != 1:
        _die("give exactly one of --keys, --pkcs11-token, --sam-reader", EXIT_USAGE)
    if opts.get("keys"):
        from healthcard_apdu.security import SoftwareSecurityModule

        passphrase = _secret(opts["passphrase_env"], "Key-file passphrase")
        module = SoftwareSecurityModule.from_file(opts["keys"], passphrase)
    elif opts.get("pkcs11_token"):
        from healthcard_apdu.security.pkcs11 import DEFAULT_PKCS11_MODULE, Pkcs11SecurityModule

        pin = _secret(opts["pkcs11_pin_env"], "PKCS#11 user PIN")
        module = Pkcs11SecurityModule(
            opts["pkcs11_token"], pin, module_path=opts.get("pkcs11_module") or
            DEFAULT_PKCS11_MODULE, algorithm=profile.algorithm)
    else:
        from healthcard_apdu.security.psam import PsamSecurityModule
        from healthcard_apdu.transport.channel import Channel
        from healthcard_apdu.transport.pcsc import PcscTransport

        if opts.get("personalizing"):
            raise SecurityModuleUnsuitable(
                "a PSAM cannot derive card keys, which WRITE KEY needs; personalize with "
                "--keys or --pkcs11-token")
        sam = stack.enter_context(PcscTransport(_reader(opts["sam_reader"])))
        pin = _secret(opts["sam_pin_env"], "SAM PIN")
        module = PsamSecurityModule(Channel(sam), pin=pin, algorithm=profile.algorithm)
    stack.callback(module.close)
    return module


def _reader(value: str) -> str | int:
    return int(value) if value.isdigit() else value


def _open_card(stack: ExitStack, reader: str | None, sim_card: Path | None) -> Transport:
    if (reader is None) == (sim_card is None):
        _die("give exactly one of --reader, --sim-card", EXIT_USAGE)
    if sim_card is not None:
        from healthcard_apdu.sim import SimCard
        from healthcard_apdu.transport import InProcessTransport

        card = SimCard.open(sim_card)
        return stack.enter_context(InProcessTransport(card, name=f"sim:{sim_card}"))
    from healthcard_apdu.transport.pcsc import PcscTransport

    assert reader is not None
    return stack.enter_context(PcscTransport(_reader(reader)))


def _tracer(stack: ExitStack, trace: Path | None) -> Any:
    if trace is None:
        return None
    from healthcard_apdu.transport.trace import Tracer

    return stack.enter_context(Tracer(trace))


# --- options --------------------------------------------------------------------------------

_common = [
    click.option("--reader", metavar="NAME", help="PC/SC reader (name, unique part or index)."),
    click.option("--sim-card", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="A simulated card image (in process, no reader)."),
    click.option("--profile", "profile_name", default=DEFAULT_PROFILE, show_default=True,
                 metavar="NAME|PATH", help="Issuance profile (built-in name or TOML file)."),
    click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 required=True, help="Resident record (model JSON, names or codes)."),
    click.option("--keys", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                 help="Encrypted key file (software security module)."),
    click.option("--passphrase-env", default=PASSPHRASE_ENV, show_default=True, metavar="VAR",
                 help="Variable holding the key-file passphrase (else a hidden prompt)."),
    click.option("--pkcs11-token", metavar="LABEL", help="PKCS#11 token with the master keys."),
    click.option("--pkcs11-module", metavar="PATH",
                 help="PKCS#11 library (default: SoftHSM2)."),
    click.option("--pkcs11-pin-env", default=PKCS11_PIN_ENV, show_default=True, metavar="VAR",
                 help="Variable holding the token's user PIN (else a hidden prompt)."),
    click.option("--sam-reader", metavar="NAME", help="PSAM in this PC/SC reader."),
    click.option("--sam-pin-env", default=SAM_PIN_ENV, show_default=True, metavar="VAR",
                 help="Variable holding the SAM PIN (else a hidden prompt)."),
    click.option("--trace", type=click.Path(dir_okay=False, path_type=Path),
                 help="Write a JSONL APDU trace (secrets masked)."),
    click.option("--json", "as_json", is_flag=True, help="Print JSON."),
]


def _with_common(func: Any) -> Any:
    for option in reversed(_common):
        func = option(func)
    return func


@click.command("personalize")
@_with_common
@click.option("--erase", is_flag=True,
              help="Erase an issued card first (needs its MF master key; never retried).")
@click.option("--dry-run", is_flag=True, help="Print the plan (secrets masked); send nothing.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="With --dry-run: write the plan JSON to this file.")
@click.option("--card-factor", metavar="HEX",
              help="With --dry-run: the card factor (16 hex digits) instead of a card's ATR.")
def personalize_command(**opts: Any) -> None:
    """Personalize a blank card from a profile, a resident record and master keys."""
    with _exit_codes(), ExitStack() as stack:
        profile, card = _load_inputs(opts["profile_name"], opts["data"])
        opts["personalizing"] = True
        security = _open_security(stack, profile, opts)
        if opts["dry_run"]:
            _dry_run(stack, profile, card, security, opts)
            return
        if opts["out"] or opts["card_factor"]:
            _die("--out and --card-factor go with --dry-run", EXIT_USAGE)
        from healthcard_apdu.perso.execute import Progress, personalize

        transport = _open_card(stack, opts["reader"], opts["sim_card"])
        tracer = _tracer(stack, opts["trace"])
        progress: Progress | None = None
        if not opts["as_json"] and sys.stderr.isatty():

            def show(done: int, total: int, name: str) -> None:
                end = "\n" if done == total else ""
                click.echo(f"\r[{done:>4}/{total}] {name[:60]:<60}", nl=False, err=True)
                if end:
                    click.echo("", err=True)

            progress = show

        result = personalize(transport, profile, card, security, erase=opts["erase"],
                             progress=progress, tracer=tracer)
        out = result.to_json()
        if opts["as_json"]:
            emit(out, True)
        else:
            emit({k: v for k, v in out.items() if not isinstance(v, dict)}, False)
    raise SystemExit(EXIT_OK)


def _dry_run(stack: ExitStack, profile: Profile, card: CardData, security: Any,
             opts: dict[str, Any]) -> None:
    from healthcard_apdu.perso.execute import card_factor_of
    from healthcard_apdu.perso.plan import build_plan

    if opts["card_factor"]:
        try:
            factor = bytes.fromhex(opts["card_factor"])
        except ValueError:
            _die(f"--card-factor {opts['card_factor']!r} is not hex", EXIT_USAGE)
        if len(factor) != 8:
            _die(f"--card-factor must be 8 bytes, got {len(factor)}", EXIT_USAGE)
    else:
        if opts["reader"] is None and opts["sim_card"] is None:
            _die("--dry-run needs --card-factor, --reader or --sim-card", EXIT_USAGE)
        factor = card_factor_of(_open_card(stack, opts["reader"], opts["sim_card"]).atr())
    plan = build_plan(profile, card, factor, security)
    document = plan.to_json(include_erase=opts["erase"])
    text = json.dumps(document, ensure_ascii=False, indent=2)
    if opts["out"]:
        opts["out"].write_text(text + "\n", encoding="utf-8")
        summary = {"plan": str(opts["out"]), "apdus": plan.apdus, "bytes": plan.bytes}
        emit(summary, opts["as_json"])
    else:
        click.echo(text)


@click.command("verify")
@_with_common
def verify_command(**opts: Any) -> None:
    """Check a card: data equal to the record, every key answers, forbidden accesses refused."""
    from healthcard_apdu.perso.verify import verify_card

    with _exit_codes(), ExitStack() as stack:
        profile, card = _load_inputs(opts["profile_name"], opts["data"])
        security = _open_security(stack, profile, opts)
        transport = _open_card(stack, opts["reader"], opts["sim_card"])
        report = verify_card(transport, profile, card, security,
                             tracer=_tracer(stack, opts["trace"]))
        if opts["as_json"]:
            emit(report.to_json(), True)
        else:
            click.echo(f"card {report.card_factor}, profile {report.profile}: "
                       f"{report.files_checked} files, {len(report.keys)} keys, "
                       f"{len(report.probes)} forbidden accesses checked")
            for line in report.problems():
                click.echo(f"  FAIL {line}")
            click.echo("verify: OK" if report.ok else "verify: FAILED")
    raise SystemExit(EXIT_OK if report.ok else EXIT_FAILED)
