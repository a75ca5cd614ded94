"""``healthcard read`` / ``healthcard write``: the card's files as a table or JSON, and back.

The commands only parse options and print; connecting is ``app.connect.connect`` (options:
``cli.options``) and the documents are ``card.document``. Passphrases and PINs come from
environment variables or a hidden prompt, never from the command line.
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
    content_json,
    document_rows,
    read_selection,
    write_document,
)
from healthcard_apdu.cli.common import EXIT_USAGE, die, emit, exit_on_errors
from healthcard_apdu.cli.options import (
    card_options,
    pop_card_options,
    pop_security_options,
    security_options,
    trace_option,
)
from healthcard_apdu.fileio import parse_json
from healthcard_apdu.transport.trace import Tracer

__all__ = ["read_command", "write_command"]

_SIGN_MODES = {"auto": None, "always": True, "never": False}


def _connection_options(command: Any) -> Any:
    return card_options(security_options(trace_option(command)))


@contextmanager
def _connect(options: dict[str, Any], *, verify: bool = True) -> Iterator[CardConnection]:
    """The card and security module the options name; library errors -> exit codes."""
    card = pop_card_options(options)
    security = pop_security_options(options)
    trace_file: Path | None = options.pop("trace")
    with exit_on_errors(), ExitStack() as stack:
        tracer = stack.enter_context(Tracer(trace_file)) if trace_file is not None else None
        with connect(card, security, trace=tracer, verify_signatures=verify) as connection:
            yield connection


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
def read_command(
    files: tuple[str, ...],
    as_json: bool,
    keys_by: str,
    all_items: bool,
    no_verify: bool,
    **options: Any,
) -> None:
    """Read the card (or chosen files); a table of item code, name and value by default."""
    keys: KeysBy = "code" if keys_by == "code" else "name"
    with _connect(options, verify=not no_verify) as connection:
        selection = read_selection(connection.card, files or None)
        if as_json:
            document = {s.key(keys): content_json(c, keys) for s, c in selection}
            emit(document, True)
        else:
            rows = document_rows(selection, keys=keys, all_items=all_items)
            emit(rows, False, columns=("file", "item", "code", "name", "value"))


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
