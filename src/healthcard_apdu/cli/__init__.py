"""The ``healthcard`` command line: thin click commands over the library."""

from __future__ import annotations

import click

from healthcard_apdu import __version__
from healthcard_apdu.cli.common import emit
from healthcard_apdu.cli.registry import register_subcommands


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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
