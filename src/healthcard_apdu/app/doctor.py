"""``healthcard doctor``: is this machine ready to talk to health cards?

Checks, in order: the PC/SC service (pcscd), its readers and the cards in them (ATR, protocol,
the card-factor candidates the card product's rule and the other known rules give), the
vsmartcard vpcd driver used by the simulator, and the optional parts (PyKCS11 + a PKCS#11
module, psycopg, Chromium). Each check says what to do when it fails. Nothing is sent to those
cards beyond what pcscd itself does.

With a card (``--reader`` / ``--sim-card``) and a security module, :func:`factor_checks` also
confirms the card factor with INTERNAL AUTHENTICATE (no try counter): it lists the candidates,
each try and the confirmed one.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from healthcard_apdu.apdu.errors import HealthCardError
from healthcard_apdu.app.connect import CardOptions, SecurityOptions, connect
from healthcard_apdu.card.factor import FactorStatus
from healthcard_apdu.security import (
    DEFAULT_FACTOR_RULE,
    FactorRule,
    FactorRuleError,
    factor_candidates,
)
from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.pcsc import reader_statuses

__all__ = ["Check", "candidates_text", "factor_checks", "run_checks"]

VPCD_DRIVER = Path("/usr/lib/pcsc/drivers/serial/libifdvpcd.so")
VPCD_CONFIG = Path("/etc/reader.conf.d/vpcd")
VPCD_PORTS = (35963, 35964)
SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")


@dataclass(frozen=True)
class Check:
    """One diagnostic: ``status`` is ok, warn (optional part missing) or fail."""

    name: str
    status: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def candidates_text(historical: bytes, rule: FactorRule = DEFAULT_FACTOR_RULE) -> str:
    """``card factor candidates: first-8 X (rule), last-8 Y``."""
    try:
        candidates = factor_candidates(historical, rule)
    except FactorRuleError as exc:
        return f"card factor rule {rule}: {exc}"
    shown = ", ".join(
        c.label + (" (the rule)" if i == 0 else "") for i, c in enumerate(candidates)
    )
    return f"card factor candidates {shown}"


def factor_checks(
    card: CardOptions, security: SecurityOptions, rule: FactorRule = DEFAULT_FACTOR_RULE
) -> list[Check]:
    """Confirm the card factor of ``card`` with INTERNAL AUTHENTICATE through ``security``:
    ok when the rule's factor is confirmed, warn when another rule's is or when no check is
    possible, fail when no candidate is confirmed. No EXTERNAL AUTHENTICATE is sent."""
    try:
        with connect(card, security, factor_rule=rule) as connection:
            result = connection.card.confirm_card_factor()
    except HealthCardError as exc:
        return [Check("card factor", "fail", f"{type(exc).__name__}: {exc}")]
    tries = "; ".join(
        f"{t.candidate.label}: {'matched' if t.matched else 'no match'}" for t in result.tries
    )
    detail = result.message + (f" [INTERNAL AUTHENTICATE: {tries}]" if tries else "")
    if result.status is FactorStatus.NOT_CONFIRMED:
        status = "fail"
    elif result.status is FactorStatus.CONFIRMED and not result.by_other_rule:
        status = "ok"
    else:
        status = "warn"
    return [Check("card factor", status, detail)]


def _pcsc(rule: FactorRule = DEFAULT_FACTOR_RULE) -> list[Check]:
    try:
        statuses = reader_statuses()
    except HealthCardError as exc:
        return [Check("pcscd", "fail", f"{exc}; start it with `pcscd` (Debian package pcscd)")]
    checks = [Check("pcscd", "ok", f"answering, {len(statuses)} reader(s)")]
    if not statuses:
        checks.append(
            Check(
                "readers",
                "warn",
                "no reader: plug one in, or install vsmartcard-vpcd for the simulator",
            )
        )
    for index, status in enumerate(statuses):
        name = f"reader {index}"
        if not status.present:
            checks.append(Check(name, "ok", f"{status.name}: no card"))
            continue
        try:
            info = parse_atr(status.atr)
        except AtrError as exc:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"{status.name}: unreadable ATR {status.atr.hex().upper()} ({exc})",
                )
            )
            continue
        protocols = ",".join(f"T={p}" for p in info.protocols) or "?"
        factors = candidates_text(info.historical_bytes, rule)
        checks.append(
            Check(
                name,
                "ok",
                f"{status.name}: ATR {status.atr.hex().upper()}, "
                f"{protocols}, {factors}" + (", in use" if status.in_use else ""),
            )
        )
    return checks


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _vpcd() -> list[Check]:
    if not VPCD_DRIVER.exists():
        return [
            Check(
                "vpcd",
                "warn",
                "vsmartcard-vpcd is not installed: the simulator cannot appear as a PC/SC reader",
            )
        ]
    config = "configured" if VPCD_CONFIG.exists() else f"no {VPCD_CONFIG}"
    ports = [p for p in VPCD_PORTS if _listening(p)]
    if ports:
        detail = f"driver {config}; listening on {', '.join(map(str, ports))}"
        return [Check("vpcd", "ok", detail + " (healthcard sim serve can connect)")]
    return [
        Check(
            "vpcd",
            "warn",
            f"driver {config}, but nothing listens on "
            f"{'/'.join(map(str, VPCD_PORTS))}: is pcscd running?",
        )
    ]


def _optional(name: str, module: str, purpose: str, extra: str) -> Check:
    if importlib.util.find_spec(module) is None:
        return Check(name, "warn", f"{purpose} unavailable: pip install 'healthcard-apdu[{extra}]'")
    return Check(name, "ok", f"{purpose} available")


def _pkcs11() -> Check:
    check = _optional("pkcs11", "PyKCS11", "PKCS#11 key storage", "pkcs11")
    if check.status == "ok" and not SOFTHSM_MODULE.exists():
        return Check(
            "pkcs11",
            "ok",
            check.detail + " (SoftHSM2 not installed; give --pkcs11-module for your HSM)",
        )
    return check


def _chromium() -> Check:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        return Check(
            "chromium",
            "warn",
            "no Chromium: HTML reports still work, the report rendering test cannot run",
        )
    return Check("chromium", "ok", binary)


CHECKS: tuple[Callable[[], list[Check]], ...] = (
    _pcsc,
    _vpcd,
    lambda: [_pkcs11()],
    lambda: [_optional("postgresql", "psycopg", "PostgreSQL batch journal", "postgresql")],
    lambda: [_chromium()],
)


def run_checks(
    rule: FactorRule = DEFAULT_FACTOR_RULE,
    card: CardOptions | None = None,
    security: SecurityOptions | None = None,
) -> list[Check]:
    """Every check, in order; the caller decides what a failure means. With ``card`` and a
    ``security`` module chosen, the card factor is confirmed too (:func:`factor_checks`)."""
    checks = _pcsc(rule) + [check for group in CHECKS[1:] for check in group()]
    if card is not None and card.given and security is not None and security.chosen():
        checks += factor_checks(card, security, rule)
    return checks
