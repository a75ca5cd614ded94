"""Replay transport: plays a recorded JSONL transcript (see :mod:`.trace`) back.

Each transmitted command must match the next exchange of the transcript; ``*`` nibbles (masked
secrets) match anything. A mismatch raises :class:`ReplayMismatch` naming the step number and both
commands (the received one masked in the same places, so no secret is echoed).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError
from healthcard_apdu.fileio import parse_json
from healthcard_apdu.transport import base
from healthcard_apdu.transport.base import ReplayMismatch, Transport, TransportError
from healthcard_apdu.transport.trace import MASK_CHAR, default_masker, mask_hex, wire_data_offset

_HEX = set(string.hexdigits)
_REPLAYABLE_ERRORS: dict[str, type[TransportError]] = {
    cls.__name__: cls
    for cls in (
        base.TransportError,
        base.NoReaderError,
        base.ServiceUnavailableError,
        base.NoCardError,
        base.CardRemovedError,
        base.ReaderBusyError,
        base.ProtocolError,
    )
}


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """One recorded exchange (``number`` is 1-based) or, with ``reset`` set, a reset event."""

    number: int
    command: str = ""
    response: bytes | None = None
    name: str = ""
    error: str | None = None
    message: str = ""
    reset: bool = False
    atr: bytes = b""

    def matches(self, raw: bytes) -> bool:
        got = raw.hex().upper()
        return len(got) == len(self.command) and all(
            want in (MASK_CHAR, have) for want, have in zip(self.command, got, strict=True)
        )


def _clean_hex(value: object, where: str, *, wildcard: bool) -> str:
    if not isinstance(value, str):
        raise TransportError(f"{where}: expected a hex string, got {value!r}")
    text = "".join(value.split()).upper()
    allowed = _HEX | ({MASK_CHAR} if wildcard else set())
    if len(text) % 2 or not set(text) <= allowed:
        raise TransportError(f"{where}: {value!r} is not {'masked ' if wildcard else ''}hex")
    return text


def steps_from_records(
    records: Iterable[Mapping[str, object]], source: str = "trace"
) -> list[ReplayStep]:
    """Turn trace records into replay steps.

    A step's number is the record's exchange number ``n`` (so a mismatch in a segment cut from
    a longer trace names the right line); records without a usable ``n`` count on from the
    previous step (from 1).
    """
    steps: list[ReplayStep] = []
    number = 0
    for index, record in enumerate(records, 1):
        where = f"{source} record {index}"
        event = record.get("event")
        if event is not None:
            atr_hex = _clean_hex(record.get("atr", ""), f"{where} atr", wildcard=False)
            if event == "reset":
                steps.append(ReplayStep(number + 1, reset=True, atr=bytes.fromhex(atr_hex)))
            elif event == "open":
                steps.append(ReplayStep(0, atr=bytes.fromhex(atr_hex)))
            continue
        if "command" not in record:
            raise TransportError(f"{where}: neither an exchange nor an event")
        recorded = record.get("n")
        if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > number:
            number = recorded
        else:
            number += 1
        command = _clean_hex(record["command"], f"{where} command", wildcard=True)
        name = str(record.get("name", ""))
        if "error" in record:
            steps.append(
                ReplayStep(
                    number,
                    command,
                    None,
                    name,
                    error=str(record["error"]),
                    message=str(record.get("message", "")),
                )
            )
            continue
        response_hex = _clean_hex(record.get("response"), f"{where} response", wildcard=False)
        if len(response_hex) < 4:
            raise TransportError(f"{where}: response {response_hex!r} has no status word")
        steps.append(ReplayStep(number, command, bytes.fromhex(response_hex), name))
    return steps


def read_trace(path: str | os.PathLike[str]) -> list[dict[str, object]]:
    """The records of a JSONL trace file (blank lines skipped)."""
    records: list[dict[str, object]] = []
    with open(path, "rb") as stream:
        for line_no, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = parse_json(line)
            except json.JSONDecodeError as exc:
                raise TransportError(f"{path}:{line_no}: not JSON ({exc.msg})") from None
            except ValueError as exc:  # too deep, not UTF-8, a lone surrogate...
                raise TransportError(f"{path}:{line_no}: not usable JSON ({exc})") from None
            if not isinstance(record, dict):
                raise TransportError(f"{path}:{line_no}: not a JSON object")
            records.append(record)
    return records


def _masked_got(raw: bytes, expected: str) -> str:
    """The received command as hex, masked where the transcript is masked and by the rules."""
    chars = list(raw.hex().upper())
    for pos, want in enumerate(expected[: len(chars)]):
        if want == MASK_CHAR:
            chars[pos] = MASK_CHAR
    try:
        cmd = CommandApdu.from_bytes(raw)
    except ApduFormatError:
        return "".join(chars)
    offset = wire_data_offset(cmd)
    rule_masked = mask_hex(raw, [(s + offset, e + offset) for s, e in default_masker(cmd)])
    return "".join(
        MASK_CHAR if MASK_CHAR in (a, b) else a for a, b in zip(chars, rule_masked, strict=True)
    )


class ReplayTransport(Transport):
    """Answers from a transcript; every command must match the next recorded one."""

    def __init__(
        self, steps: Iterable[ReplayStep], *, atr: bytes = b"", name: str = "replay"
    ) -> None:
        all_steps = list(steps)
        self._steps = [s for s in all_steps if s.number > 0 or s.reset]
        opened = [s for s in all_steps if s.number == 0 and not s.reset]
        self._atr = atr or (opened[0].atr if opened else b"")
        self._name = name
        self._pos = 0
        self._closed = False

    @classmethod
    def from_records(
        cls, records: Iterable[Mapping[str, object]], *, atr: bytes = b"", name: str = "replay"
    ) -> ReplayTransport:
        steps = steps_from_records(records)
        return cls(steps, atr=atr, name=name)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str], *, atr: bytes = b"") -> ReplayTransport:
        steps = steps_from_records(read_trace(path), source=str(path))
        return cls(steps, atr=atr, name=f"replay:{Path(path).name}")

    @property
    def name(self) -> str:
        return self._name

    @property
    def remaining(self) -> int:
        """Exchanges not yet replayed."""
        return sum(1 for s in self._steps[self._pos :] if not s.reset)

    def transmit(self, apdu: bytes) -> bytes:
        if self._closed:
            raise TransportError(f"{self._name}: transport is closed")
        raw = bytes(apdu)
        if self._pos >= len(self._steps):
            number = max((s.number for s in self._steps if not s.reset), default=0) + 1
            raise ReplayMismatch(number, "", _masked_got(raw, ""), "transcript has ended")
        step = self._steps[self._pos]
        if step.reset:
            raise ReplayMismatch(
                step.number, "(reset)", _masked_got(raw, ""), "transcript expects a reset"
            )
        if not step.matches(raw):
            label = f"command differs from {step.name}" if step.name else "command differs"
            raise ReplayMismatch(step.number, step.command, _masked_got(raw, step.command), label)
        self._pos += 1
        if step.error is not None:
            error = _REPLAYABLE_ERRORS.get(step.error, TransportError)
            raise error(step.message or f"{self._name}: recorded {step.error}")
        assert step.response is not None
        return step.response

    def atr(self) -> bytes:
        return self._atr

    def reset(self, cold: bool = False) -> bytes:
        """Consumes a recorded reset when one is next; otherwise just returns the ATR."""
        if self._pos < len(self._steps) and self._steps[self._pos].reset:
            step = self._steps[self._pos]
            self._pos += 1
            if step.atr:
                self._atr = step.atr
        return self._atr

    def assert_done(self) -> None:
        """Raise :class:`ReplayMismatch` when recorded exchanges were never sent."""
        for step in self._steps[self._pos :]:
            if not step.reset:
                raise ReplayMismatch(step.number, step.command, "", "transcript step never sent")

    def close(self) -> None:
        self._closed = True
