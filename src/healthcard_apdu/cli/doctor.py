"""``healthcard doctor``: diagnostics for PC/SC, readers, cards, vpcd and optional parts."""

from __future__ import annotations

import click

from healthcard_apdu.cli.common import EXIT_CARD, emit


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def doctor_command(as_json: bool) -> None:
    """Check pcscd, readers and cards (ATR, protocol, card factor), vpcd and optional parts.

    Exit code 3 when a required part fails (pcscd, an unreadable ATR); warnings do not fail.
    """
    from healthcard_apdu.app.doctor import run_checks

    checks = run_checks()
    emit([c.to_json() for c in checks], as_json, columns=("name", "status", "detail"))
    if any(c.status == "fail" for c in checks):
        raise SystemExit(EXIT_CARD)
