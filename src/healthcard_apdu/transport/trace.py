"""JSONL tracing of APDU exchanges, with secret fields masked before anything is written.

One JSON object per line. Exchanges::

    {"t": "2026-01-02T03:04:05.123456+00:00", "n": 1, "ms": 0.153, "name": "SELECT 3F00",
     "command": "00A40000023F00", "response": "9000", "sw": "9000"}

``command`` holds the wire bytes in upper-case hex; every nibble of a secret byte is written as
``*`` (so a masked command keeps its length and replays with ``*`` as a wildcard).
``response`` holds data || SW1 SW2. A failed exchange has ``"error"`` (the exception class) and
``"message"`` instead of ``response``. Events (``"event": "open" | "reset"``) carry the ATR.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self, TextIO

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.fileio import open_private

Range = tuple[int, int]
"""A half-open byte range ``(start, end)``."""

Masker = Callable[[CommandApdu], Sequence[Range]]
"""Given a command, the secret byte ranges of its *data field*."""

MASK_CHAR = "*"

# INS codes whose whole data field is a PIN or PIN-derived secret.
_PIN_INS = {
    0x20: "VERIFY",
    0x24: "CHANGE REFERENCE DATA",
    0x2C: "RESET RETRY COUNTER",
    0x5E: "CHANGE/RELOAD PIN",
}
_WRITE_KEY = 0xD4
_KEY_HEADER = 5  # type, use right, change right, follow-up state/version, counter/algorithm
_SAM_CIPHER = 0xFA


def default_masker(cmd: CommandApdu) -> list[Range]:
    """Built-in rules: key values and PINs never reach a trace.

    * WRITE KEY (INS D4): plaintext (CLA without SM bits) masks the key after its 5-byte header;
      secured (e.g. CLA 84, ciphertext + MAC) masks the whole data field.
    * VERIFY / CHANGE REFERENCE DATA / RESET RETRY COUNTER / CHANGE or RELOAD PIN
      (INS 20, 24, 2C, 5E): the whole data field.
    * SAM ENCRYPT (``80 FA 00``): the whole data field (its input is a key to be written).
    """
    n = len(cmd.data)
    if n == 0:
        return []
    if cmd.ins == _WRITE_KEY:
        secured = bool(cmd.cla & 0x0C)
        return [(0, n)] if secured or n <= _KEY_HEADER else [(_KEY_HEADER, n)]
    if cmd.ins in _PIN_INS:
        return [(0, n)]
    if cmd.cla & 0xF0 == 0x80 and cmd.ins == _SAM_CIPHER and cmd.p1 == 0x00:
        return [(0, n)]
    return []


def normalize_ranges(ranges: Iterable[Range], length: int) -> list[Range]:
    """Clip to ``0..length``, drop empties, sort and merge overlapping ranges."""
    clipped = sorted(
        (max(0, start), min(length, end))
        for start, end in ranges
        if min(length, end) > max(0, start)
    )
    merged: list[Range] = []
    for start, end in clipped:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def shift_ranges(ranges: Iterable[Range], offset: int, window: Range | None = None) -> list[Range]:
    """Ranges intersected with ``window`` (if given) and moved by ``offset``."""
    out: list[Range] = []
    for start, end in ranges:
        if window is not None:
            start, end = max(start, window[0]), min(end, window[1])
        if end > start:
            out.append((start + offset, end + offset))
    return out


def mask_hex(raw: bytes, secret: Iterable[Range]) -> str:
    """Upper-case hex of ``raw`` with both nibbles of every secret byte replaced by ``*``."""
    chars = list(raw.hex().upper())
    for start, end in normalize_ranges(secret, len(raw)):
        chars[2 * start : 2 * end] = MASK_CHAR * (2 * (end - start))
    return "".join(chars)


def wire_data_offset(cmd: CommandApdu) -> int:
    """Offset of the data field in the encoded command (5 short, 7 extended)."""
    return 7 if cmd.extended else 5


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class Tracer:
    """Writes one JSON line per exchange to a file or text stream; thread-safe.

    ``masker`` decides which data bytes of a command are secret (callers may add more per
    command through :meth:`Channel.send`'s ``secret``). Masking happens here, before writing:
    unmasked secret bytes are never kept or written.
    """

    def __init__(
        self,
        sink: str | os.PathLike[str] | TextIO,
        *,
        masker: Masker = default_masker,
        append: bool = False,
    ) -> None:
        if isinstance(sink, str | os.PathLike):
            self._stream: TextIO = open_private(sink, append=append)
            self._owns = True
        else:
            self._stream = sink
            self._owns = False
        self.masker = masker
        self._lock = threading.Lock()
        self._count = 0

    @property
    def count(self) -> int:
        """Number of exchanges written so far."""
        return self._count

    def secret_ranges(self, cmd: CommandApdu, extra: Iterable[Range] = ()) -> list[Range]:
        """Secret ranges of ``cmd``'s data field: the masker's plus ``extra``."""
        return normalize_ranges([*self.masker(cmd), *extra], len(cmd.data))

    def exchange(
        self,
        *,
        name: str,
        command: bytes,
        response: bytes | None,
        ms: float,
        secret: Iterable[Range] = (),
        error: BaseException | None = None,
    ) -> None:
        """Record one exchange; ``secret`` are byte ranges of the encoded ``command``."""
        with self._lock:
            self._count += 1
            record: dict[str, object] = {
                "t": _now(),
                "n": self._count,
                "ms": round(ms, 3),
                "name": name,
                "command": mask_hex(command, secret),
            }
            if response is not None:
                record["response"] = response.hex().upper()
                record["sw"] = response[-2:].hex().upper()
            if error is not None:
                record["error"] = type(error).__name__
                record["message"] = str(error)
            self._write(record)

    def event(self, event: str, **fields: str | bool) -> None:
        """Record a non-exchange event such as ``open`` or ``reset``."""
        with self._lock:
            self._write({"t": _now(), "event": event, **fields})

    def _write(self, record: dict[str, object]) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._owns and not self._stream.closed:
                self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
