"""Serve simulated cards to pcscd through vpcd (one TCP link per reader slot).

vpcd listens on port ``35963 + slot`` (``CHANNELID 0x8C7B`` in ``/etc/reader.conf.d/vpcd``);
Debian's build has two slots, "Virtual PCD 00 00" and "Virtual PCD 00 01". More readers
come from more reader.conf.d entries with other CHANNELIDs (docs/sim.md). The user card
goes to the first slot, the SAM to the second. SIGTERM and SIGINT stop serving cleanly.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from healthcard_apdu.sim.card import SimCard, SimSam
from healthcard_apdu.sim.faults import LatencyModel
from healthcard_apdu.sim.vpcd import DEFAULT_PORT, VpcdCard, VpcdLink

log = logging.getLogger(__name__)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Set ``stop`` on SIGTERM / SIGINT while inside (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the simulator", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_readers(
    endpoints: Sequence[tuple[VpcdCard, int]],
    *,
    host: str = "127.0.0.1",
    quickack: bool = True,
    stop: threading.Event | None = None,
    on_ready: Callable[[list[VpcdLink]], None] | None = None,
) -> None:
    """Connect each (card, port) to vpcd and serve until ``stop`` is set or a signal comes."""
    stop = stop if stop is not None else threading.Event()
    links = [VpcdLink(card, host, port, quickack=quickack) for card, port in endpoints]
    with _stop_on_signals(stop):
        for link in links:
            link.start()
            log.info("serving %s on vpcd %s:%d", type(link.card).__name__, host, link.port)
        try:
            if on_ready is not None:
                on_ready(links)
            while not stop.wait(0.5):
                pass
        finally:
            for link in links:
                link.stop()
            for card, _port in endpoints:
                if card.present:
                    card.power_off()


def serve(
    card_image: Path,
    sam_keys: Path | None,
    slots: Sequence[int] = (0, 1),
    *,
    host: str = "127.0.0.1",
    base_port: int = DEFAULT_PORT,
    quickack: bool = True,
    latency: LatencyModel | None = None,
    extra_cards: Sequence[tuple[Path, int]] = (),
    stop: threading.Event | None = None,
    on_ready: Callable[[list[VpcdLink]], None] | None = None,
) -> None:
    """Serve the user card image on ``slots[0]`` and the SAM on ``slots[1]``.

    ``extra_cards`` adds more user-card images on further slots. Blocks until SIGTERM /
    SIGINT (or ``stop``); every card write is already on disk when it returns.
    """
    if sam_keys is not None and len(slots) < 2:
        raise ValueError("serving a SAM needs two slots (card, SAM)")
    endpoints: list[tuple[VpcdCard, int]] = [
        (SimCard.open(card_image, latency=latency), base_port + slots[0])
    ]
    if sam_keys is not None:
        endpoints.append((SimSam.from_key_file(sam_keys, latency=latency), base_port + slots[1]))
    used = {port for _card, port in endpoints}
    for image, slot in extra_cards:
        port = base_port + slot
        if port in used:
            raise ValueError(f"slot {slot} is used twice")
        used.add(port)
        endpoints.append((SimCard.open(image, latency=latency), port))
    run_readers(endpoints, host=host, quickack=quickack, stop=stop, on_ready=on_ready)
