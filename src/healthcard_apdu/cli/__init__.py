"""The ``healthcard`` command line: thin click commands over the library."""

from __future__ import annotations

from typing import Any

import click

from healthcard_apdu import __version__
from healthcard_apdu.apdu.errors import HealthCardError
from healthcard_apdu.cli.common import emit, exit_code_for
from healthcard_apdu.cli.registry import register_subcommands


class _Group(click.Group):
    """The root group: a library error becomes one clear line on stderr and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HealthCardError as error:
            click.echo(f"error: {error}", err=True)
            ctx.exit(exit_code_for(error))


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="healthcard")
def main() -> None:
    """Personalize, read and verify China's Resident Health Card (居民健康卡)."""


@main.command("readers")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def readers_command(as_json: bool) -> None:
    """List PC/SC readers and whether a card is present."""
    from healthcard_apdu.transport.pcsc import reader_status

    rows = reader_status()
    emit(rows, as_json, columns=("index", "reader", "card", "atr"))


register_subcommands(main)
