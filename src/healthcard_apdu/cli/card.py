"""``healthcard read`` / ``healthcard write``: the card's files as a table or JSON, and back.

The commands only parse options and print; connecting is ``app.connect.open_card`` and the
documents are ``card.document``. Passphrases and PINs come from environment variables or a
hidden prompt, never from the command line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from healthcard_apdu.apdu.errors import HealthCardError, SecurityError
from healthcard_apdu.app.connect import CardConnection, open_card
from healthcard_apdu.card.document import (
    KeysBy,
    content_json,
    document_rows,
    read_selection,
    write_document,
)
from healthcard_apdu.card.errors import ConnectOptionsError, NotWritable, SignatureInvalid
from healthcard_apdu.cli.common import (
    EXIT_CARD,
    EXIT_FAILED,
    EXIT_SECURITY,
    EXIT_USAGE,
    emit,
    fail,
)
from healthcard_apdu.model import DecodeError, ModelError
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.transport.trace import Tracer

__all__ = ["read_command", "write_command"]

PASSPHRASE_ENV = "HEALTHCARD_KEYS_PASSPHRASE"
SAM_PIN_ENV = "HEALTHCARD_SAM_PIN"
_SIGN_MODES = {"auto": None, "always": True, "never": False}

C = TypeVar("C", bound=Callable[..., Any])


def _die(message: str, code: int) -> NoReturn:
    fail(message, code)
    raise SystemExit(code)  # fail() exits; this keeps type checkers informed


def _connection_options(command: C) -> C:
    options = [
        click.option(
            "--reader",
            metavar="NAME",
            help="PC/SC reader of the user card (name, "
            "unique part of it, or index); default: the first reader with a card.",
        ),
        click.option(
            "--sim-card",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            metavar="IMAGE",
            help="Simulated user card image (in-process).",
        ),
        click.option("--sam-reader", metavar="NAME", help="PC/SC reader holding the PSAM."),
        click.option(
            "--keys",
            "key_file",
            metavar="KEYFILE",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Software security module: an encrypted key file.",
        ),
        click.option(
            "--sim-sam",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            metavar="SAMKEYFILE",
            help="Simulated PSAM key file (in-process).",
        ),
        click.option(
            "--passphrase-env",
            default=PASSPHRASE_ENV,
            show_default=True,
            help="Environment variable with the key-file passphrase (else a prompt).",
        ),
        click.option(
            "--sam-pin-env",
            default=SAM_PIN_ENV,
            show_default=True,
            help="Environment variable with the PSAM PIN (else a prompt).",
        ),
        click.option(
            "--trace",
            "trace_file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Write a JSONL APDU trace (secrets masked).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _secret(env: str, prompt: str) -> Callable[[], str]:
    def ask() -> str:
        value = os.environ.get(env)
        if value:
            return value
        entered: str = click.prompt(prompt, hide_input=True, err=True)
        return entered

    return ask


def _reader(value: str | None) -> str | int | None:
    return int(value) if value is not None and value.isdigit() else value


@contextmanager
def _errors() -> Iterator[None]:
    """Library errors -> message on stderr and the documented exit code."""
    try:
        yield
    except SignatureInvalid as exc:
        _die(str(exc), EXIT_FAILED)
    except DecodeError as exc:  # bytes on the card, not the user's input
        _die(str(exc), EXIT_CARD)
    except (ConnectOptionsError, NotWritable, ModelError) as exc:
        _die(str(exc), EXIT_USAGE)
    except (SecurityError, SecurityModuleError) as exc:
        _die(str(exc), EXIT_SECURITY)
    except HealthCardError as exc:
        _die(str(exc), EXIT_CARD)


@contextmanager
def _connect(stack: ExitStack, options: dict[str, Any]) -> Iterator[CardConnection]:
    trace_file: Path | None = options.pop("trace_file")
    tracer = stack.enter_context(Tracer(trace_file)) if trace_file is not None else None
    connection = open_card(
        reader=_reader(options["reader"]),
        sim_card=options["sim_card"],
        sam_reader=_reader(options["sam_reader"]),
        keys=options["key_file"],
        sim_sam=options["sim_sam"],
        passphrase=_secret(options["passphrase_env"], "Key-file passphrase"),
        sam_pin=_secret(options["sam_pin_env"], "PSAM PIN"),
        trace=tracer,
        verify_signatures=not options.get("no_verify", False),
    )
    with connection:
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
    options["no_verify"] = no_verify
    with _errors(), ExitStack() as stack, _connect(stack, options) as connection:
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
        document = json.loads(data_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        _die(f"{data_file}: not a readable JSON document ({exc})", EXIT_USAGE)
    with _errors(), ExitStack() as stack, _connect(stack, options) as connection:
        results = write_document(connection.card, document, files or None, sign=_SIGN_MODES[sign])
        rows = [{"file": r.file, "action": r.action, "note": r.note} for r in results]
        emit(rows, as_json, columns=("file", "action", "note"))
