"""``healthcard read`` / ``healthcard write``: the card's files as a table or JSON, and back.

The commands only parse options and print; connecting is ``app.connect.connect`` (options:
``cli.options``) and the documents are ``card.document``. Passphrases and PINs come from
environment variables or a hidden prompt, never from the command line. Notices of the read
(items out of spec, the card-factor check) go to stderr as ``warning:`` lines and, with
``--json``, into the document's ``warnings``; they do not change the exit code. So do the
files a whole-card read cannot read because the card lacks their read key (``6A88``): the rest
is read and shown (docs/cli.md "read", docs/spec-choices.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import click

from healthcard_apdu.app.connect import CardConnection, connect
from healthcard_apdu.card.document import (
    KeysBy,
    UnreadableFile,
    content_json,
    document_rows,
    read_selection,
    write_document,
)
from healthcard_apdu.card.errors import SignatureInvalid
from healthcard_apdu.card.healthcard import HealthCard
from healthcard_apdu.cli.common import (
    EXIT_FAILED,
    EXIT_SECURITY,
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
    product_factor_rule,
    profile_option,
    security_options,
    trace_option,
)
from healthcard_apdu.fileio import parse_json
from healthcard_apdu.transport.trace import Tracer

__all__ = ["read_command", "write_command"]

_SIGN_MODES = {"auto": None, "always": True, "never": False}


def _connection_options(command: Any) -> Any:
    return card_options(security_options(trace_option(factor_options(profile_option(command)))))


@contextmanager
def _connect(
    options: dict[str, Any], *, verify: bool = True, require_signatures: bool = False
) -> Iterator[CardConnection]:
    """The card and security module the options name; library errors -> exit codes."""
    card = pop_card_options(options)
    security = pop_security_options(options)
    factor = pop_factor_options(options)
    profile_name: str | None = options.pop("profile_name")
    trace_file: Path | None = options.pop("trace")
    with exit_on_errors(), ExitStack() as stack:
        rule = product_factor_rule(factor, profile_name)
        tracer = stack.enter_context(Tracer(trace_file)) if trace_file is not None else None
        with connect(card, security, trace=tracer, verify_signatures=verify,
                     require_signatures=require_signatures,
                     factor_rule=rule,
                     confirm_factor=factor.confirm) as connection:
            try:
                yield connection
            finally:
                _print_notices(connection.card)


def _print_notices(card: HealthCard) -> None:
    for notice in card.warnings:
        click.echo(f"warning: {notice.message}", err=True)


@click.command("read")
@_connection_options
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="FILE",
    help="File to read (repeatable): DDF1EF06, holder, DF03EE (all inpatient "
    "records), DF03EE02, ... Default: the whole card.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document.")
@click.option(
    "--keys-by",
    type=click.Choice(["code", "name"]),
    default="code",
    show_default=True,
    help="Key files and items by pinyin code/path or by name.",
)
@click.option("--all-items", is_flag=True, help="Table: also show empty items.")
@click.option("--no-verify", is_flag=True, help="Do not verify EE/ED record signatures.")
@click.option("--require-signatures", is_flag=True,
              help="Fail (exit 1) on an unsigned EE/ED record too (unsigned records are normal "
              "in the field).")
@click.option(
    "--require-all-files",
    is_flag=True,
    help="Fail (exit 4) when a file cannot be read because the card lacks its read key "
    "(otherwise it is reported as a warning and the rest is read, exit 0).",
)
def read_command(
    files: tuple[str, ...],
    as_json: bool,
    keys_by: str,
    all_items: bool,
    no_verify: bool,
    require_signatures: bool,
    require_all_files: bool,
    **options: Any,
) -> None:
    """Read the card (or chosen files); a table of item code, name and value by default.

    Items the card holds out of spec are shown as read, with a warning on stderr (exit 0).
    A file the card holds no read key for (EXTERNAL AUTHENTICATE 6A88, no try spent) is
    named in a warning and the rest is read (exit 0; exit 4 when nothing could be read, or
    with --require-all-files). An EE/ED record whose signature is present and wrong is shown
    too, then exit 1.
    """
    keys: KeysBy = "code" if keys_by == "code" else "name"
    failures: list[SignatureInvalid] = []
    unreadable: list[UnreadableFile] = []
    with _connect(options, verify=not no_verify,
                  require_signatures=require_signatures) as connection:
        card = connection.card
        selection = read_selection(card, files or None, failures=failures, unreadable=unreadable)
        signatures = {path.replace("/", ""): status.value
                      for path, status in card.signatures.items()}
        if as_json:
            document: dict[str, Any] = {s.key(keys): content_json(c, keys) for s, c in selection}
            if card.warnings:
                document["warnings"] = [n.to_json() for n in card.warnings]
            if signatures:
                document["signatures"] = signatures
            emit(document, True)
        else:
            rows = document_rows(selection, keys=keys, all_items=all_items)
            rows += [{"file": path, "item": "", "code": "", "name": "signature", "value": status}
                     for path, status in signatures.items()]
            rows += [entry.row(keys) for entry in unreadable]
            emit(rows, False, columns=("file", "item", "code", "name", "value"))
    for failure in failures:
        click.echo(f"error: {failure}", err=True)
    if unreadable and require_all_files:
        click.echo(f"error: {len(unreadable)} file(s) not read (--require-all-files)", err=True)
        raise SystemExit(EXIT_SECURITY)
    if failures:
        raise SystemExit(EXIT_FAILED)


@click.command("write")
@_connection_options
@click.option(
    "--data",
    "data_file",
    required=True,
    metavar="FILE.json",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON document (as printed by `healthcard read --json`).",
)
@click.option(
    "--file",
    "files",
    multiple=True,
    metavar="FILE",
    help="Write only these files of the document (repeatable).",
)
@click.option(
    "--sign",
    type=click.Choice(list(_SIGN_MODES)),
    default="auto",
    show_default=True,
    help="EE/ED records: auto keeps a signature that still verifies and signs "
    "otherwise; always re-signs; never writes them as given.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def write_command(
    data_file: Path, files: tuple[str, ...], sign: str, as_json: bool, **options: Any
) -> None:
    """Update card files from a JSON document over the same connection options as `read`."""
    try:
        document = parse_json(data_file.read_bytes())
    except OSError as exc:
        die(f"{data_file}: cannot read ({exc.strerror})", EXIT_USAGE)
    except ValueError as exc:
        die(f"{data_file}: not a readable JSON document ({exc})", EXIT_USAGE)
    with _connect(options) as connection:
        results = write_document(connection.card, document, files or None, sign=_SIGN_MODES[sign])
        rows = [{"file": r.file, "action": r.action, "note": r.note} for r in results]
        emit(rows, as_json, columns=("file", "action", "note"))
