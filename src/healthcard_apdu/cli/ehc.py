"""``healthcard ehc``: the electronic health card -- IDs, QR codes, verification, use records.

The commands parse options, call :mod:`healthcard_apdu.ehc` and print (``--json``
everywhere). Exit codes: 0 valid / done, 1 a code that does not verify (the reason is printed),
2 bad input or registry problem, 4 key problem. Platform keys come from ``--keys`` (a key file
with the EHC_* roles, ``keys generate --platform``); its passphrase from an environment variable
or a hidden prompt.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from healthcard_apdu.app.connect import SecurityOptions, env_secret, open_security
from healthcard_apdu.cli.common import EXIT_FAILED, EXIT_USAGE, die, emit, exit_on_errors
from healthcard_apdu.cli.options import hidden_prompt, passphrase_env_option, pkcs11_options
from healthcard_apdu.ehc import (
    STATIC,
    EhcPlatform,
    NationalQr,
    Person,
    PlatformKeys,
    QrRejected,
    Registry,
    RevocationList,
    TrustList,
    UseContext,
    Verifier,
    VerifyPolicy,
    is_signed_text,
    issue_from_identity,
    parse_envelope,
    parse_national,
    qr_version,
    save_image,
    terminal_text,
)
from healthcard_apdu.ehc.errors import EhcInputError
from healthcard_apdu.ehc.national import normalize_ehc_id
from healthcard_apdu.ehc.trust import parse_time

__all__ = ["ehc_group"]

C = TypeVar("C", bound=Callable[..., Any])

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_NEW_FILE = click.Path(dir_okay=False, path_type=Path)


def _keys_options(command: C) -> C:
    command = pkcs11_options(command)
    command = passphrase_env_option(command)
    return click.option(
        "--keys",
        type=_FILE,
        metavar="KEYFILE",
        help="Key file holding the platform keys (EHC_SECURITY, EHC_PROTECTION, EHC_SIGNING).",
    )(command)


def _json_option(command: C) -> C:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(command)


def _registry_option(command: C) -> C:
    return click.option(
        "--registry",
        metavar="DB",
        help="E-card registry: an SQLite file or a postgresql:// URL (several terminals).",
    )(command)


def _person_options(command: C) -> C:
    for option in reversed(
        [
            click.option("--id-type", metavar="CODE", help="ID type, CV02.01.101 (01 = ID card)."),
            click.option("--id-number", metavar="NUMBER", help="ID number."),
            click.option("--name", metavar="NAME", help="Name as on the ID."),
        ]
    ):
        command = option(command)
    return command


def _person(values: dict[str, Any]) -> Person | None:
    fields = {name: values.pop(name) for name in ("id_type", "id_number", "name")}
    if not any(fields.values()):
        return None
    missing = [f"--{name.replace('_', '-')}" for name, value in fields.items() if not value]
    if missing:
        die(f"give {', '.join(missing)} as well", EXIT_USAGE)
    return Person(id_type=fields["id_type"], id_number=fields["id_number"], name=fields["name"])


@contextmanager
def _platform(values: dict[str, Any], *, required: bool) -> Iterator[PlatformKeys | None]:
    """The platform keys the options name (or None when none is given and not required)."""
    options = SecurityOptions(
        keys=values.pop("keys"),
        passphrase=env_secret(values.pop("passphrase_env"), "Key-file passphrase", hidden_prompt),
        pkcs11_token=values.pop("pkcs11_token"),
        pkcs11_module=values.pop("pkcs11_module"),
        pkcs11_pin=env_secret(values.pop("pkcs11_pin_env"), "PKCS#11 user PIN", hidden_prompt),
    )
    if not options.chosen():
        if required:
            die("give --keys KEYFILE (the platform key file)", EXIT_USAGE)
        yield None
        return
    with open_security(options) as connection:
        yield PlatformKeys(connection.module)


@contextmanager
def _registry(target: str | None) -> Iterator[Registry | None]:
    if target is None:
        yield None
        return
    with Registry.open(target) as registry:
        yield registry


def _read_text(text: str) -> str:
    """The QR text argument; ``-`` reads one line from standard input (a scanner)."""
    if text == "-":
        return sys.stdin.readline()
    return text


@click.group("ehc")
def ehc_group() -> None:
    """The electronic health card: IDs, QR codes, verification, use records (docs/ehc.md)."""


# -- ehc id ----------------------------------------------------------------------------------


@ehc_group.command("id")
@_person_options
@click.option("--decode", "decode_id", metavar="EHC_ID", help="Decode this e-card ID instead.")
@click.option("--master-index", metavar="HEX", help="Master index of --decode's e-card.")
@_registry_option
@click.option("--terminal", metavar="ID", help="Terminal or window recorded with --registry.")
@click.option("--card-number", metavar="KH", help="Physical card number to link (--registry).")
@_keys_options
@_json_option
def id_command(as_json: bool, **values: Any) -> None:
    """Derive the master index and e-card ID of a person (with --registry: issue it there),
    or decode an e-card ID back to its ID type and number (--decode, --master-index)."""
    decode_id, mindex = values.pop("decode_id"), values.pop("master_index")
    registry_target, terminal = values.pop("registry"), values.pop("terminal")
    card_number = values.pop("card_number")
    with exit_on_errors():
        person = _person(values)
        if decode_id is not None:
            if person is not None or mindex is None:
                die("--decode takes --master-index and no person options", EXIT_USAGE)
            with _platform(values, required=True) as keys:
                assert keys is not None
                id_type, id_number = EhcPlatform(keys).identity_of(decode_id, mindex)
            emit({"ehc_id": decode_id.upper(), "id_type": id_type, "id_number": id_number},
                 as_json)
            return
        if person is None:
            die("give --id-type, --id-number and --name (or --decode)", EXIT_USAGE)
        with _platform(values, required=True) as keys, _registry(registry_target) as registry:
            assert keys is not None
            issued = issue_from_identity(EhcPlatform(keys), person, registry,
                                         card_number=card_number, terminal=terminal)
        out = issued.to_dict()
        if not as_json:
            out = {
                "master_index": issued.master_index,
                "ehc_id": issued.ehc_id,
                "static_qr": issued.static_qr().text(),
                **({} if issued.record is None else {
                    "registry": "created" if issued.created else "already registered",
                    "card_number": issued.record.card_number or "",
                }),
            }
        emit(out, as_json)


# -- ehc qr ----------------------------------------------------------------------------------


@ehc_group.group("qr")
def qr_group() -> None:
    """Make, parse and verify QR codes."""


@qr_group.command("make")
@click.option(
    "--kind",
    type=click.Choice(["static", "dynamic", "signed"]),
    default="dynamic",
    show_default=True,
    help="National static or dynamic text, or our signed EHC1 envelope.",
)
@click.option("--ehc-id", metavar="ID", help="The e-card ID (else derive it from a person).")
@_person_options
@click.option(
    "--carry",
    type=click.Choice(["dynamic", "static"]),
    default="dynamic",
    show_default=True,
    help="National text inside a signed envelope.",
)
@click.option("--valid-for", type=click.IntRange(1, 86400), metavar="SECONDS",
              help="Life of a dynamic or signed code (default 120).")
@click.option("--issuer-code", metavar="CODE", help="Provincial fourth field (e.g. 5100A0013).")
@click.option("--png", "png_path", type=_NEW_FILE, metavar="FILE", help="Write a PNG image.")
@click.option("--svg", "svg_path", type=_NEW_FILE, metavar="FILE", help="Write an SVG image.")
@click.option("--scale", type=click.IntRange(1, 40), default=6, show_default=True,
              help="Pixels per module of the images.")
@click.option("--no-terminal", is_flag=True, help="Do not draw the code on the terminal.")
@_keys_options
@_json_option
def make_command(as_json: bool, **values: Any) -> None:
    """Make a QR code: print its text, draw it on the terminal, write PNG/SVG files."""
    kind, ehc_id = values.pop("kind"), values.pop("ehc_id")
    carry, valid_for = values.pop("carry"), values.pop("valid_for")
    png_path, svg_path, scale = values.pop("png_path"), values.pop("svg_path"), values.pop("scale")
    issuer_code, no_terminal = values.pop("issuer_code"), values.pop("no_terminal")
    with exit_on_errors():
        person = _person(values)
        if (person is None) == (ehc_id is None):
            die("give either --ehc-id or --id-type/--id-number/--name", EXIT_USAGE)
        needs_keys = kind != "static" or person is not None
        with _platform(values, required=needs_keys) as keys:
            if keys is None:  # a static code of a known ID needs no key
                text = NationalQr(normalize_ehc_id(ehc_id), STATIC, None, issuer_code).text()
            else:
                platform = EhcPlatform(keys, issuer_code=issuer_code)
                target = ehc_id if person is None else platform.ecard_id(person)
                life = None if valid_for is None else dt.timedelta(seconds=valid_for)
                if kind == "static":
                    text = platform.static_qr(target).text()
                elif kind == "dynamic":
                    text = platform.dynamic_qr(target, valid_for=life).text()
                else:
                    text = platform.signed_qr(target, carry=carry, valid_for=life)
        version = qr_version(text)
        for path, image in ((png_path, "png"), (svg_path, "svg")):
            if path is not None:
                save_image(text, path, kind=image, scale=scale)
    if as_json:
        emit({"kind": kind, "text": text, "qr_version": version, "error_level": "M",
              "png": None if png_path is None else str(png_path),
              "svg": None if svg_path is None else str(svg_path)}, True)
        return
    click.echo(text)
    if not no_terminal:
        click.echo(terminal_text(text), nl=False)
    for path in (png_path, svg_path):
        if path is not None:
            click.echo(f"wrote {path} (QR version {version}, level M)", err=True)


@qr_group.command("parse")
@click.argument("text")
@_json_option
def parse_command(text: str, as_json: bool) -> None:
    """Show the fields of a QR text (TEXT, or - for one line of standard input). An EHC1
    envelope is decoded but NOT verified here (use qr verify)."""
    with exit_on_errors():
        raw = _read_text(text)
        if is_signed_text(raw):
            envelope = parse_envelope(raw)
            claims = envelope.claims()
            national = claims.national()
            out: dict[str, Any] = {
                "kind": "signed",
                "verified": False,
                "kid": envelope.kid.hex().upper(),
                "issued_at": claims.issued().isoformat(),
                "expires_at": claims.expires().isoformat(),
                "jti": claims.jti.hex().upper(),
            }
        else:
            national = parse_national(raw)
            out = {"kind": national.kind}
        out.update(
            ehc_id=national.ehc_id,
            code_type=national.code_type,
            validity=national.validity,
            issuer_code=national.issuer_code,
            national_text=national.text(),
        )
    emit(out, as_json)


def _use_context(values: dict[str, Any]) -> UseContext | None:
    names = ("org_code", "terminal", "channel", "medstep", "scene", "city_code", "department",
             "cost_type")
    given = {name: values.pop(name) for name in names}
    if all(value is None for value in given.values()):
        return None
    missing = [f"--{name.replace('_', '-')}" for name in names[:4] if given[name] is None]
    if missing:
        die(f"recording a use needs {', '.join(missing)} as well", EXIT_USAGE)
    return UseContext(**given)


def _use_options(command: C) -> C:
    options = [
        click.option("--org-code", metavar="CODE", help="Organisation (hospital) code."),
        click.option("--terminal", metavar="ID", help="Terminal ID."),
        click.option("--channel", metavar="CODE", help="Channel: 01/02/99 or 0100..0402."),
        click.option("--medstep", metavar="CODE", help="Medical step, e.g. 010101 挂号."),
        click.option("--scene", metavar="CODE", help="Tencent scene, e.g. 0101011."),
        click.option("--city-code", metavar="CODE", help="City (GB/T 2260, 6 digits)."),
        click.option("--department", metavar="TEXT", help="Department name or code."),
        click.option("--cost-type", metavar="CODE", help="Fee type 0100/0200/0300/0000."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@qr_group.command("verify")
@click.argument("text")
@click.option("--trust-list", type=_FILE, metavar="FILE", help="Trusted EHC1 signing keys.")
@click.option("--revocations", type=_FILE, metavar="FILE", help="Revocation list.")
@_registry_option
@click.option("--skew", type=click.IntRange(0, 3600), default=30, show_default=True,
              metavar="SECONDS", help="Clock skew tolerated.")
@click.option("--max-lifetime", type=click.IntRange(1, 86400), default=600, show_default=True,
              metavar="SECONDS", help="Longest validity accepted (signed exp - iat; national "
              "expiry ahead of now).")
@click.option("--now", "now_text", metavar="ISO-TIME", help="Verify at this time (testing).")
@_use_options
@_keys_options
@_json_option
def verify_command(text: str, as_json: bool, **values: Any) -> None:
    """Verify a scanned code (TEXT, or - for standard input); with the use options (and
    --registry) record the use. Exit 0 valid, 1 not valid (reason printed), 2 bad input."""
    trust_path, revocations_path = values.pop("trust_list"), values.pop("revocations")
    registry_target, skew, lifetime = values.pop("registry"), values.pop("skew"), \
        values.pop("max_lifetime")
    now_text = values.pop("now_text")
    with exit_on_errors():
        use = _use_context(values)
        now = parse_time(now_text, "--now") if now_text else None
        raw = _read_text(text)
        life = dt.timedelta(seconds=lifetime)
        policy = VerifyPolicy(clock_skew=dt.timedelta(seconds=skew), max_signed_lifetime=life,
                              max_national_validity=life)
        trust = None if trust_path is None else TrustList.load(trust_path)
        revocations = None if revocations_path is None else RevocationList.load(revocations_path)
        if use is not None and registry_target is None:
            die("recording a use needs --registry", EXIT_USAGE)
        with ExitStack() as stack:
            needs_keys = not is_signed_text(raw) and parse_national(raw).dynamic
            keys = stack.enter_context(_platform(values, required=False))
            if needs_keys and keys is None:
                die("a dynamic national code is checked with the protection key: give --keys",
                    EXIT_USAGE)
            registry = stack.enter_context(_registry(registry_target))
            verifier = Verifier(keys=keys, trust_list=trust, revocations=revocations,
                                policy=policy)
            try:
                result = verifier.verify(raw, now=now, registry=registry, use=use)
            except QrRejected as rejected:
                if as_json:
                    emit({"valid": False, "reason": rejected.reason,
                          "message": rejected.detail}, True)
                else:
                    click.echo(f"invalid: {rejected}", err=True)
                sys.exit(EXIT_FAILED)
    out = result.to_dict()
    if not as_json:
        out = {key: value for key, value in out.items()
               if value is not None and key not in ("card", "use")}
        if result.card is not None:
            out["holder"] = result.card.person.name
            out["card_number"] = result.card.card_number or ""
        if result.use is not None:
            out["use_recorded"] = result.use.id
    emit(out, as_json)


# -- ehc uses / revoke -----------------------------------------------------------------------


@ehc_group.command("uses")
@click.option("--registry", required=True, metavar="DB", help="E-card registry.")
@click.option("--since", metavar="ISO-TIME", help="Uses at or after this time.")
@click.option("--until", metavar="ISO-TIME", help="Uses before this time.")
@click.option("--ehc-id", metavar="ID", help="Uses of one e-card.")
@click.option("--out", type=_NEW_FILE, metavar="FILE", help="Write JSON Lines to FILE.")
@_json_option
def uses_command(registry: str, since: str | None, until: str | None, ehc_id: str | None,
                 out: Path | None, as_json: bool) -> None:
    """Export recorded uses as JSON Lines (standard output or --out); --json: one array."""
    with exit_on_errors():
        filters: dict[str, Any] = {
            "since": parse_time(since, "--since") if since else None,
            "until": parse_time(until, "--until") if until else None,
            "ehc_id": None if ehc_id is None else normalize_ehc_id(ehc_id, "--ehc-id"),
        }
        with Registry.open(registry) as opened:
            if as_json:
                emit([record.to_dict() for record in opened.uses(**filters)], True)
                return
            if out is None:
                opened.export_uses(sys.stdout, **filters)
                return
            with open(out, "w", encoding="utf-8") as handle:
                count = opened.export_uses(handle, **filters)
    click.echo(f"wrote {count} uses to {out}", err=True)


@ehc_group.command("revoke")
@click.argument("ehc_id")
@click.option("--reason", required=True, help="Why (recorded).")
@_registry_option
@click.option("--revocations", type=_NEW_FILE, metavar="FILE",
              help="Add the e-card to this revocation list (created if missing).")
@click.option("--terminal", metavar="ID", help="Who revokes (recorded with --registry).")
@_json_option
def revoke_command(ehc_id: str, reason: str, registry: str | None, revocations: Path | None,
                   terminal: str | None, as_json: bool) -> None:
    """Revoke an e-card in a registry and/or a revocation list."""
    if registry is None and revocations is None:
        die("give --registry and/or --revocations", EXIT_USAGE)
    out: dict[str, Any] = {}
    with exit_on_errors():
        ehc_id = normalize_ehc_id(ehc_id, "EHC_ID")
        if not reason.strip():
            raise EhcInputError("--reason", "must not be empty")
        listed = None
        if revocations is not None:  # read (and check) the list before changing anything
            listed = RevocationList.load(revocations) if revocations.exists() else RevocationList()
        if registry is not None:
            with Registry.open(registry) as opened:
                record = opened.revoke(ehc_id, reason, terminal=terminal)
            out["registry"] = record.status
        if listed is not None and revocations is not None:
            listed.ehc_ids.add(ehc_id)
            listed.save(revocations)
            out["revocations"] = str(revocations)
    emit({"ehc_id": ehc_id, **out}, as_json)
