"""File operations the cases share: snapshots, writes that keep the data, restoring.

Non-destructive cases must leave the card's data as they found it. Every write here writes
values read from the card back (a TLV record, a binary window, the cyclic records in their
own order, an index flag that already has the target value). When a card accepts a write it
should have refused, :func:`ensure_unchanged` puts the original data back with the right key.

Write forms (docs/reference/healthcard-layout.md §3.3): TLV records with secure messaging
(``04 DC rr 04``), binary files plain (``00 D6``, falling back to ``04 D6`` on ``6900``),
cyclic files ``00 DC 00 03`` (new record 1), index flags ``84 D2 rr 04 00`` (to 00) and
``84 0C rr 04 00`` (to FF).
"""

from __future__ import annotations

from dataclasses import dataclass

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.conformance.case import CaseFailure, NotApplicable
from healthcard_apdu.conformance.context import SW_OK, CaseContext, sw_text
from healthcard_apdu.model import EF
from healthcard_apdu.security import protect_update_binary, protect_update_record

SW_NEEDS_SM = 0x6900
SW_RECORD_NOT_FOUND = 0x6A83
#: Bytes of a transparent file that the access matrix reads and writes back.
WINDOW = 16

FLAG_VALID = b"\x00"
FLAG_INVALID = b"\xff"


@dataclass(frozen=True)
class Snapshot:
    """The part of a file a case may change: all records, or a binary window."""

    ef: EF
    records: tuple[bytes, ...] = ()
    offset: int = 0
    data: bytes = b""


def record_capacity(target: EF) -> int:
    if target.record_count is None:
        raise ValueError(f"{target.path} is not a record file")
    return target.record_count


def read_cyclic(ctx: CaseContext, target: EF) -> list[bytes]:
    """Records of a cyclic file, newest first, until ``6A83`` (at most the capacity)."""
    records: list[bytes] = []
    for number in range(1, record_capacity(target) + 1):
        response = ctx.read_record(number)
        if response.sw == SW_RECORD_NOT_FOUND:
            break
        if response.sw != SW_OK:
            raise CaseFailure(
                f"{target.path}: READ RECORD {number} answered {sw_text(response.sw)}",
                expected="9000",
                actual=sw_text(response.sw),
            )
        records.append(response.data)
    return records


def snapshot(ctx: CaseContext, target: EF, *, window: int = WINDOW, offset: int = 0) -> Snapshot:
    """Read what a write could change, authenticating with the file's read key if it has one."""
    ctx.enter(target.df, target.read_key)
    ctx.select_ef(target, from_mf=False)
    if target.structure == "transparent":
        return Snapshot(target, offset=offset, data=ctx.read_binary(offset, window))
    if target.structure == "cyclic":
        return Snapshot(target, records=tuple(read_cyclic(ctx, target)))
    return Snapshot(target, records=tuple(ctx.read_records(record_capacity(target))))


def stk_role(target: EF) -> str:
    return CaseContext.df_key(target.df, "secure_messaging")


def sm_update_record(
    ctx: CaseContext, target: EF, number: int, plain: bytes, *, corrupt_mac: bool = False
) -> ResponseApdu:
    """``04 DC rr 04`` with the DF's STK session (fresh challenge); optionally a wrong MAC."""
    command = protect_update_record(ctx.session(stk_role(target)), number, plain)
    return ctx.send(corrupt(command) if corrupt_mac else command)


def sm_update_binary(
    ctx: CaseContext, target: EF, offset: int, plain: bytes, *, corrupt_mac: bool = False
) -> ResponseApdu:
    command = protect_update_binary(ctx.session(stk_role(target)), offset, plain)
    return ctx.send(corrupt(command) if corrupt_mac else command)


def corrupt(command: CommandApdu) -> CommandApdu:
    """The same command with the last MAC byte flipped."""
    data = bytearray(command.data)
    data[-1] ^= 0x01
    return command.with_data(bytes(data))


def write_binary(ctx: CaseContext, target: EF, offset: int, data: bytes) -> ResponseApdu:
    """Plain UPDATE BINARY; an SM-only file (``6900``) gets the ``04 D6`` form instead."""
    response = ctx.send(commands.update_binary(offset, data))
    if response.sw == SW_NEEDS_SM:
        response = sm_update_binary(ctx, target, offset, data)
    return response


def append_cyclic(ctx: CaseContext, record: bytes) -> ResponseApdu:
    """``00 DC 00 03``: the record becomes record 1 (the trace form for DF02 EF07/EF08)."""
    return ctx.send(commands.update_record(0, record, p2=0x03))


def flag_command(op: str, number: int) -> CommandApdu:
    return commands.erase_record_flag(number) if op == "erase" else commands.write_record_flag(
        number
    )


def flag_target(snap: Snapshot, op: str) -> int:
    """Record to use for a flag operation: one that already has the resulting value."""
    wanted = FLAG_INVALID if op == "erase" else FLAG_VALID
    for number, value in enumerate(snap.records, 1):
        if value == wanted:
            return number
    return 1


def round_trip_cyclic(ctx: CaseContext, records: tuple[bytes, ...]) -> ResponseApdu:
    """Append a full cyclic file's own records oldest first: the file ends up unchanged.

    Returns the first refusal, else the first response (stops at a refusal).
    """
    if not records:
        raise NotApplicable("the cyclic file holds no record to write back")
    first: ResponseApdu | None = None
    for record in reversed(records):
        response = append_cyclic(ctx, record)
        if response.sw != SW_OK:
            return response
        first = first or response
    assert first is not None
    return first


def attempt_write(ctx: CaseContext, snap: Snapshot, op: str) -> ResponseApdu:
    """One write that keeps the data (the EF must be selected, the state set up).

    ``op`` is ``write`` or, for index files, ``erase``. Returns the response that decides
    whether the card allowed the write.
    """
    target = snap.ef
    if target.structure == "tlv_records":
        return sm_update_record(ctx, target, 1, snap.records[0])
    if target.structure == "transparent":
        return write_binary(ctx, target, snap.offset, snap.data)
    if target.structure == "cyclic":
        # UPDATE RECORD 1 with its own value: the access right without the cyclic semantics
        # (those are the cyclic group's business).
        if not snap.records:
            raise NotApplicable(f"{target.path} is empty; a write could not be undone")
        return ctx.send(commands.update_record(1, snap.records[0]))
    return ctx.send(flag_command(op, flag_target(snap, op)))


def _restore_flags(ctx: CaseContext, snap: Snapshot, now: tuple[bytes, ...]) -> None:
    target = snap.ef
    for op, value, role in (
        ("write", FLAG_VALID, target.write_key),
        ("erase", FLAG_INVALID, target.erase_key),
    ):
        numbers = [
            n
            for n, (old, new) in enumerate(zip(snap.records, now, strict=False), 1)
            if old == value and new != value
        ]
        if not numbers or role is None:
            continue
        ctx.enter(target.df, role)
        ctx.select_ef(target, from_mf=False)
        for number in numbers:
            ctx.call(flag_command(op, number), f"restore {target.path} record {number}")


def restore(ctx: CaseContext, snap: Snapshot, now: tuple[bytes, ...] | bytes) -> None:
    """Write the snapshot back with the file's own write key (after an unexpected change)."""
    target = snap.ef
    if target.structure == "linear_fixed":
        assert isinstance(now, tuple)
        _restore_flags(ctx, snap, now)
        return
    if target.write_key is None:
        raise CaseFailure(
            f"{target.path} changed although it is not writable; it cannot be restored"
        )
    ctx.enter(target.df, target.write_key)
    ctx.select_ef(target, from_mf=False)
    if target.structure == "tlv_records":
        assert isinstance(now, tuple)
        for number, record in enumerate(snap.records, 1):
            if number <= len(now) and now[number - 1] == record:
                continue
            ctx.require(
                f"restore {target.path} record {number}",
                "9000",
                sw_text(sm_update_record(ctx, target, number, record).sw),
            )
    elif target.structure == "transparent":
        ctx.require(
            f"restore {target.path}",
            "9000",
            sw_text(write_binary(ctx, target, snap.offset, snap.data).sw),
        )
    else:
        assert isinstance(now, tuple)
        for number, record in enumerate(snap.records, 1):
            if number <= len(now) and now[number - 1] == record:
                continue
            response = ctx.send(commands.update_record(number, record))
            ctx.require(f"restore {target.path} record {number}", "9000", sw_text(response.sw))


def current(ctx: CaseContext, snap: Snapshot) -> tuple[bytes, ...] | bytes:
    """Read the snapshot's part of the file again (with the read key)."""
    again = snapshot(ctx, snap.ef, window=len(snap.data), offset=snap.offset)
    return again.data if snap.ef.structure == "transparent" else again.records


def ensure_unchanged(ctx: CaseContext, snap: Snapshot, what: str = "") -> bool:
    """Check that the file still holds the snapshot; restore it when not. Returns ok."""
    now = current(ctx, snap)
    before = snap.data if snap.ef.structure == "transparent" else snap.records
    label = what or f"{snap.ef.path} unchanged afterwards"
    ok = ctx.check(label, "unchanged", "unchanged" if now == before else "changed", now == before)
    if not ok:
        restore(ctx, snap, now)
    return ok
