"""Shared fixtures: PC/SC availability and serving card objects on the vpcd virtual readers.

Tests marked ``pcsc`` (or using ``vpcd_slot``) need a running pcscd with the vsmartcard vpcd
driver. They are skipped with the reason when it is missing, unless ``HEALTHCARD_REQUIRE_PCSC=1``
(set by scripts/test.sh), which turns the skip into a failure.

``vpcd_slot(card, slot=0)`` serves ``card`` on ``Virtual PCD 00 0<slot>`` (TCP 35963+slot),
waits until pcscd sees it, returns the reader name, and on teardown stops the link and waits until
pcscd sees the reader empty. Several processes may share pcscd, so a slot is held under
``fcntl.flock`` on ``/tmp/healthcard-vpcd-<slot>.lock`` for the whole use.
"""

from __future__ import annotations

import fcntl
import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from healthcard_apdu.sim.vpcd import VpcdCard, VpcdLink

VPCD_READERS = ("Virtual PCD 00 00", "Virtual PCD 00 01")
VPCD_BASE_PORT = 35963
REQUIRE_PCSC_ENV = "HEALTHCARD_REQUIRE_PCSC"
SLOT_LOCK_TIMEOUT = 300.0
PCSCD_WAIT = 20.0

ServeOnVpcd = Callable[..., str]


@functools.cache
def pcsc_problem() -> str | None:
    """Why PC/SC tests cannot run here, or None when pcscd answers and lists the vpcd readers."""
    try:
        from healthcard_apdu.transport.pcsc import list_readers

        readers = list_readers()
    except Exception as exc:
        return f"PC/SC not available: {exc}"
    missing = [name for name in VPCD_READERS if name not in readers]
    if missing:
        return (
            f"pcscd does not list the vpcd readers {missing} (readers: {readers}); "
            "install vsmartcard-vpcd and restart pcscd"
        )
    return None


def require_pcsc() -> None:
    """Skip (or, with HEALTHCARD_REQUIRE_PCSC=1, fail) when PC/SC with vpcd is not usable."""
    problem = pcsc_problem()
    if problem is None:
        return
    if os.environ.get(REQUIRE_PCSC_ENV) == "1":
        pytest.fail(f"{problem} ({REQUIRE_PCSC_ENV}=1)", pytrace=False)
    pytest.skip(problem)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("pcsc") is not None:
        require_pcsc()


@contextmanager
def slot_lock(slot: int, timeout: float = SLOT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the inter-process lock of a vpcd slot."""
    path = f"/tmp/healthcard-vpcd-{slot}.lock"
    with open(path, "a", encoding="utf-8") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"vpcd slot {slot} still locked ({path}) after {timeout:g} s")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def serve_on_vpcd(card: VpcdCard | None, slot: int = 0, *, quickack: bool = True) -> Iterator[str]:
    """Serve ``card`` (``None``: keep the slot empty) on a vpcd slot; yields the reader name."""
    from healthcard_apdu.transport.pcsc import wait_for_card

    reader = VPCD_READERS[slot]
    with slot_lock(slot):
        wait_for_card(reader, present=False, timeout=PCSCD_WAIT)
        if card is None:
            yield reader
            return
        link = VpcdLink(card, port=VPCD_BASE_PORT + slot, quickack=quickack).start()
        try:
            atr = wait_for_card(reader, present=True, timeout=PCSCD_WAIT)
            if atr != card.atr() or not link.connected.is_set():
                pytest.fail(
                    f"{reader} shows ATR {atr.hex().upper()}, not the served card's "
                    f"{card.atr().hex().upper()}: another process serves this vpcd slot "
                    "without holding its lock",
                    pytrace=False,
                )
            yield reader
        finally:
            link.stop()
            wait_for_card(reader, present=False, timeout=PCSCD_WAIT)


@pytest.fixture
def vpcd_slot() -> Iterator[ServeOnVpcd]:
    """Factory: ``vpcd_slot(card, slot=0, quickack=True) -> reader name``; cleaned up after."""
    require_pcsc()
    with ExitStack() as stack:

        def serve(card: VpcdCard | None, slot: int = 0, *, quickack: bool = True) -> str:
            return stack.enter_context(serve_on_vpcd(card, slot, quickack=quickack))

        yield serve


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A batch journal target per backend: an SQLite file, or a fresh database on the
    throwaway PostgreSQL server of scripts/postgres.sh (dropped afterwards)."""
    if request.param == "sqlite":
        yield str(tmp_path / "residents.journal.sqlite")
        return
    from batch_support import drop_pg_database, fresh_pg_database, pg_server

    server = pg_server()
    dsn, name = fresh_pg_database(server)
    try:
        yield dsn
    finally:
        drop_pg_database(server, name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The hostile probes (tests/hostile) report how many hypothesis examples they ran
    (issue 11: at least 10,000 in CI; bench/hostile_long.py reads this line)."""
    import sys

    support = sys.modules.get("hostile_support")
    examples = getattr(support, "EXAMPLES", None)
    if examples:
        terminalreporter.write_line(
            f"hostile probes: {sum(examples.values())} hypothesis examples in "
            f"{len(examples)} tests (scale {support.SCALE:g})")  # type: ignore[union-attr]
