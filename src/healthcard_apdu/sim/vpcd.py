"""The card side of the vsmartcard vpcd protocol: serve a card object to pcscd.

pcscd's ``libifdvpcd`` listens on TCP 35963 (reader ``Virtual PCD 00 00``) and 35964
(``Virtual PCD 00 01``); the card connects as a client. Every message in both directions is a
2-byte big-endian length and that many bytes. vpcd's control messages are 1 byte: ``00`` power
off, ``01`` power on, ``02`` warm reset (none of them answered), ``04`` get ATR (answered with
the ATR); anything else is a command APDU, answered with the response APDU.

A 1-byte command APDU (pcscd 1.9.9 passes one on) is the same bytes on the wire, and vpcd then
waits for its answer holding the slot's lock. So (docs/sim.md "vpcd protocol"):

* a 1-byte message other than ``00``/``01``/``02``/``04`` is an APDU, answered at once (the
  card answers ``6700``);
* ``00``/``01``/``02`` are control messages when vpcd sends another message within
  ``control_wait`` seconds: it always does (``01``/``02`` are followed at once by ``04``, and
  pcscd polls with ``04`` every 0.4 s, also right after a power off). Silence means vpcd is
  waiting for an answer: it was an APDU, answered ``6700`` and the card's power is untouched;
* ``04`` is always the ATR request: an APDU ``04`` is answered with the ATR, the one ambiguity
  the protocol leaves.

Card removal: when ``card.present`` is false the link closes the connection (vpcd then reports
"no card") and reconnects only once the card is present again. The protocol's "empty ATR" answer
is not used: the vpcd shipped by Debian 12 (3.3) then blocks in ``recv(fd, NULL, 0, MSG_WAITALL)``
and the whole slot hangs until the socket closes (seen with strace on pcscd 1.9.9).

Performance: vpcd as shipped by distributions writes length and payload separately, so the
delayed ACK of a plain socket stalls every APDU by about 40 ms. ``TCP_QUICKACK`` (Linux; not
sticky) is therefore re-armed before every ``recv``; ``quickack=False`` gives the naive socket
for comparison. Only the standard library is used.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from types import TracebackType
from typing import Protocol, Self

log = logging.getLogger(__name__)

DEFAULT_PORT = 35963
CTRL_OFF, CTRL_ON, CTRL_RESET, CTRL_ATR = 0x00, 0x01, 0x02, 0x04
_ERROR_RESPONSE = b"\x6f\x00"


class _CardGone(Exception):
    """The card was removed: drop the connection."""


class VpcdCard(Protocol):
    """What the link needs from a card (structurally the transport's ``CardLike``)."""

    @property
    def present(self) -> bool: ...

    def atr(self) -> bytes: ...

    def process(self, apdu: bytes) -> bytes: ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...


class VpcdLink:
    """Connects ``card`` to vpcd at ``host:port`` and answers until stopped.

    Reconnects when vpcd closes the connection (pcscd restarted, or it ejected the card).
    While ``card.present`` is false it stays disconnected, which pcscd sees as "no card".
    Use :meth:`start` for a background thread, or :meth:`serve_forever` in the caller's thread;
    :meth:`stop` unblocks either.
    """

    def __init__(
        self,
        card: VpcdCard,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        *,
        quickack: bool = True,
        reconnect: bool = True,
        retry_interval: float = 0.1,
        control_wait: float = 2.0,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.quickack = quickack and hasattr(socket, "TCP_QUICKACK")
        self.reconnect = reconnect
        self.retry_interval = retry_interval
        self.control_wait = control_wait
        self.connected = threading.Event()
        self.apdus = 0
        self.atr_requests = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Serve in a daemon thread; returns self."""
        if self._thread is not None:
            raise RuntimeError("VpcdLink already started")
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"vpcd-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the connection, stop serving and wait for the thread."""
        self._stopping.set()
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Connect, serve, reconnect; returns after :meth:`stop` (or a lost link without
        ``reconnect``)."""
        while not self._stopping.is_set():
            if not self.card.present:
                self._stopping.wait(self.retry_interval)
                continue
            try:
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
            except OSError as exc:
                log.debug("vpcd %s:%d not reachable: %s", self.host, self.port, exc)
                if not self.reconnect:
                    raise
                self._stopping.wait(self.retry_interval)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stopping.is_set():
                    sock.close()
                    break
                self._sock = sock
            self.connected.set()
            log.debug("connected to vpcd %s:%d", self.host, self.port)
            try:
                self._serve(sock)
            except _CardGone:
                log.debug("card removed: leaving vpcd %s:%d", self.host, self.port)
            except OSError as exc:  # ConnectionError included
                log.debug("vpcd connection %s:%d ended: %s", self.host, self.port, exc)
            finally:
                self.connected.clear()
                with self._lock:
                    self._sock = None
                sock.close()
            if not self.reconnect:
                break
            self._stopping.wait(self.retry_interval)

    # -- protocol ---------------------------------------------------------------------------

    def _recv_exact(self, sock: socket.socket, size: int) -> bytes:
        buf = bytearray()
        while len(buf) < size:
            if self.quickack:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(size - len(buf))
            if not chunk:
                raise ConnectionError("vpcd closed the connection")
            buf += chunk
        return bytes(buf)

    @staticmethod
    def _send(sock: socket.socket, payload: bytes) -> None:
        sock.sendall(struct.pack(">H", len(payload)) + payload)

    def _serve(self, sock: socket.socket) -> None:
        while not self._stopping.is_set():
            (size,) = struct.unpack(">H", self._recv_exact(sock, 2))
            message = self._recv_exact(sock, size) if size else b""
            if size == 1 and message[0] == CTRL_ATR:
                self._control(sock, CTRL_ATR)
            elif size == 1 and message[0] in (CTRL_OFF, CTRL_ON, CTRL_RESET):
                if self._more_follows(sock):
                    self._control(sock, message[0])
                else:  # vpcd waits for an answer: a 1-byte APDU
                    self._send(sock, self._transmit(message))
            elif size:
                self._send(sock, self._transmit(message))

    def _more_follows(self, sock: socket.socket) -> bool:
        """Whether vpcd sends another message within ``control_wait`` seconds (a control
        message is always followed; an APDU is not: vpcd waits for its answer)."""
        sock.settimeout(self.control_wait)
        try:
            sock.recv(1, socket.MSG_PEEK)  # b"" (closed) is seen by the next read
            return True
        except TimeoutError:
            return False
        finally:
            sock.settimeout(None)

    def _control(self, sock: socket.socket, op: int) -> None:
        card = self.card
        if not card.present:
            raise _CardGone
        if op == CTRL_ATR:
            self.atr_requests += 1
            self._send(sock, bytes(card.atr()))
        elif op == CTRL_ON:
            card.power_on()
        elif op == CTRL_OFF:
            card.power_off()
        elif op == CTRL_RESET:
            warm = getattr(card, "reset", None)
            if callable(warm):
                warm()
            else:
                card.power_off()
                card.power_on()
        else:
            log.debug("vpcd sent unknown control byte %02X", op)

    def _transmit(self, apdu: bytes) -> bytes:
        self.apdus += 1
        if not self.card.present:
            raise _CardGone
        try:
            response = bytes(self.card.process(apdu))
        except ConnectionError as exc:  # a torn or removed card goes mute: the reader sees removal
            log.debug("card went mute (%s): leaving vpcd", type(exc).__name__)
            raise _CardGone from exc
        except Exception:  # the card must never take the link down
            log.exception("card raised while processing an APDU; answering 6F00")
            return _ERROR_RESPONSE
        if not response:
            # vpcd 3.3 blocks on a zero-length payload; silence is a mute card.
            raise _CardGone
        return response  # hostile short replies (1 byte) are passed through on purpose
