"""``healthcard doctor``: is this machine ready to talk to health cards?

Checks, in order: the PC/SC service (pcscd), its readers and the cards in them (ATR, protocol,
the card factor the keys are diversified with), the vsmartcard vpcd driver used by the
simulator, and the optional parts (PyKCS11 + a PKCS#11 module, psycopg, Chromium). Each check
says what to do when it fails. Nothing is sent to a card beyond what pcscd itself does.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from healthcard_apdu.apdu.errors import HealthCardError
from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.pcsc import reader_statuses

__all__ = ["Check", "run_checks"]

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


def _pcsc() -> list[Check]:
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
        factor = info.historical_bytes[-8:].hex().upper()
        checks.append(
            Check(
                name,
                "ok",
                f"{status.name}: ATR {status.atr.hex().upper()}, "
                f"{protocols}, card factor {factor}" + (", in use" if status.in_use else ""),
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


def run_checks() -> list[Check]:
    """Every check, in order; the caller decides what a failure means."""
    return [check for group in CHECKS for check in group()]
