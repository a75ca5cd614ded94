"""Output helpers shared by the commands: JSON or a plain table, and error exits."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn

import click

# Exit codes (documented in docs/cli.md).
EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and found a problem (verify mismatch, conformance failure)
EXIT_USAGE = 2  # bad options or input (click also uses 2)
EXIT_CARD = 3  # card or reader error
EXIT_SECURITY = 4  # authentication or key error


def exit_code_for(error: BaseException) -> int:
    """The documented exit code for a library error."""
    from healthcard_apdu.apdu.errors import SecurityError
    from healthcard_apdu.card.errors import (
        ConnectOptionsError,
        KeyNotPresent,
        NotWritable,
        SignatureInvalid,
    )
    from healthcard_apdu.card.factor import CardNotGenuine, FactorNotConfirmed
    from healthcard_apdu.crypto import CryptoError
    from healthcard_apdu.ehc.errors import EhcInputError, QrRejected, RegistryError
    from healthcard_apdu.model.errors import DecodeError, ModelError
    from healthcard_apdu.perso.errors import (
        AuthenticationRefused,
        ProfileError,
        SecurityModuleUnsuitable,
    )
    from healthcard_apdu.security.errors import SecurityModuleError
    from healthcard_apdu.sim.errors import ImageError

    if isinstance(error, SignatureInvalid | QrRejected):
        return EXIT_FAILED
    if isinstance(error, FactorNotConfirmed | CardNotGenuine | KeyNotPresent):
        return EXIT_SECURITY  # a key question, and nothing was spent
    if isinstance(error, EhcInputError | RegistryError):
        return EXIT_USAGE
    if isinstance(error, DecodeError):  # bytes on the card, not the user's input
        return EXIT_CARD
    if isinstance(error, ConnectOptionsError | NotWritable | ProfileError | ModelError):
        return EXIT_USAGE
    if isinstance(error, ImageError):
        return EXIT_USAGE  # a card image or SAM key file given as input
    if isinstance(
        error,
        SecurityError | SecurityModuleError | SecurityModuleUnsuitable | AuthenticationRefused
        | CryptoError,
    ):
        return EXIT_SECURITY
    return EXIT_CARD


ErrorCodes = Sequence[tuple[type[BaseException] | tuple[type[BaseException], ...], int]]


@contextmanager
def exit_on_errors(overrides: ErrorCodes = ()) -> Iterator[None]:
    """Library errors -> one line on stderr and the documented exit code (:func:`exit_code_for`;
    ``overrides`` first, as ``(error types, code)`` pairs). Messages carry no secrets."""
    from healthcard_apdu.apdu.errors import HealthCardError

    try:
        yield
    except HealthCardError as exc:
        code = next((c for types, c in overrides if isinstance(exc, types)), None)
        die(str(exc), exit_code_for(exc) if code is None else code)


def emit(value: Any, as_json: bool, *, columns: Sequence[str] | None = None) -> None:
    """Print ``value`` as JSON, or as a table (list of mappings) / key-value lines."""
    if as_json:
        click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=str))
        return
    if isinstance(value, list):
        click.echo(render_table(value, columns))
    elif isinstance(value, Mapping):
        width = max((len(str(k)) for k in value), default=0)
        for key, item in value.items():
            click.echo(f"{key!s:<{width}}  {item}")
    else:
        click.echo(str(value))


def render_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain fixed-width table."""
    if not rows:
        return "(none)"
    cols = list(columns or rows[0].keys())
    cells = [[str(row.get(col, "")) for col in cols] for row in rows]
    widths = [max(_width(col), *(_width(r[i]) for r in cells)) for i, col in enumerate(cols)]

    def line(values: Sequence[str]) -> str:
        padded = (v + " " * (widths[i] - _width(v)) for i, v in enumerate(values))
        return "  ".join(padded).rstrip()

    return "\n".join([line(cols), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _width(text: str) -> int:
    """Terminal columns of ``text``: East Asian wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def die(message: str, code: int) -> NoReturn:
    """Print an error to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
