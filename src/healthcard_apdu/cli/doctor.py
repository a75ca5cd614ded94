"""``healthcard doctor``: diagnostics for PC/SC, readers, cards, vpcd and optional parts."""

from __future__ import annotations

from typing import Any

import click

from healthcard_apdu.cli.common import EXIT_CARD, emit, exit_on_errors
from healthcard_apdu.cli.options import (
    card_options,
    factor_options,
    pop_card_options,
    pop_factor_options,
    pop_security_options,
    security_options,
)
from healthcard_apdu.security import DEFAULT_FACTOR_RULE


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--profile", "profile_name", metavar="NAME|PATH",
              help="Profile whose [product] card-factor rule the cards follow (default first-8).")
@card_options
@security_options
@factor_options
def doctor_command(as_json: bool, profile_name: str | None, **options: Any) -> None:
    """Check pcscd, readers and cards (ATR, protocol, card-factor candidates), vpcd and
    optional parts. With --reader/--sim-card and a security module (--keys, --sam-reader ...)
    the card factor is also confirmed with INTERNAL AUTHENTICATE (no try counter): the
    candidates, each try and the confirmed one are printed.

    Exit code 3 when a required part fails (pcscd, an unreadable ATR, a card factor no
    candidate confirms); warnings do not fail.
    """
    from healthcard_apdu.app.doctor import run_checks

    card = pop_card_options(options)
    security = pop_security_options(options)
    factor = pop_factor_options(options)
    with exit_on_errors():
        rule = DEFAULT_FACTOR_RULE
        if profile_name is not None:
            from healthcard_apdu.perso.profile import load_profile

            rule = load_profile(profile_name).product.factor_rule
        checks = run_checks(factor.rule_or(rule), card if factor.confirm else None, security)
    emit([c.to_json() for c in checks], as_json, columns=("name", "status", "detail"))
    if any(c.status == "fail" for c in checks):
        raise SystemExit(EXIT_CARD)
