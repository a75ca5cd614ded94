"""Power loss during writes (tearing): afterwards a file holds the old or the new data, whole.

Needs a transport that can cut the power (the simulator in-process); on a PC/SC reader the
cases are not applicable. Each case tears the same write twice, once with the write reaching
the EEPROM and once without, then writes the original data back.
"""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.conformance.case import CaseFailure, Group, case
from healthcard_apdu.conformance.context import CaseContext, PowerFaults, sw_text
from healthcard_apdu.conformance.ops import (
    Snapshot,
    current,
    ensure_unchanged,
    restore,
    snapshot,
    stk_role,
)
from healthcard_apdu.model import EF, ef
from healthcard_apdu.security import protect_update_record
from healthcard_apdu.transport.base import TransportError

G = Group.TEARING
PHONE_RECORD = 2  # DDF1/EF08 record 2: BRDH1, a 20-byte phone number
BINARY_OFFSET = 2944  # the last 130 bytes of the photo file hold padding on most cards
BINARY_LENGTH = 128


def _faults(ctx: CaseContext) -> PowerFaults:
    if ctx.faults is None:
        ctx.not_applicable(f"{ctx.transport.name} cannot cut the card's power")
    assert ctx.faults is not None
    return ctx.faults


def _torn(ctx: CaseContext, faults: PowerFaults, command: CommandApdu, applies: bool) -> None:
    """Send ``command`` with the power cut while it runs; then power the card up again."""
    faults.arm_tear(applies=applies)
    try:
        response = ctx.send(command)
    except TransportError:
        pass
    else:
        raise CaseFailure(f"the power cut did not happen: {command.label} answered "
                          f"{sw_text(response.sw)}")
    faults.restore()
    ctx.reset(cold=True)


def _old_or_new(ctx: CaseContext, snap: Snapshot, new: tuple[bytes, ...] | bytes,
                label: str) -> None:
    now = current(ctx, snap)
    old = snap.data if snap.ef.structure == "transparent" else snap.records
    outcome = "old" if now == old else "new" if now == new else "mixed"
    ctx.check(f"{label}: file content after power-up", "old or new, whole", outcome,
              outcome != "mixed")
    if now != old:
        restore(ctx, snap, now)


def _tear_record(ctx: CaseContext, target: EF, snap: Snapshot, applies: bool) -> None:
    old = snap.records[PHONE_RECORD - 1]
    digits = "".join(str(b % 10) for b in ctx.random.take(len(old) - 2)).encode()
    record = old[:2] + digits
    ctx.enter(target.df, target.write_key)
    ctx.select_ef(target, from_mf=False)
    command = protect_update_record(ctx.session(stk_role(target)), PHONE_RECORD, record)
    _torn(ctx, _faults(ctx), command, applies)
    new = tuple(record if n == PHONE_RECORD else r for n, r in enumerate(snap.records, 1))
    _old_or_new(ctx, snap, new, f"tear with the write {'applied' if applies else 'lost'}")


@case(id="HC-TEAR-001", title="Power loss during a protected UPDATE RECORD leaves old or new data",
      group=G, reference="docs/sim.md (faults)", severity="major", destructive=True, order=10)
def tear_update_record(ctx: CaseContext) -> None:
    _faults(ctx)
    ctx.need_files("DDF1/EF08")
    target = ef("DDF1/EF08")
    snap = snapshot(ctx, target)
    for applies in (False, True):
        _tear_record(ctx, target, snap, applies)
    ensure_unchanged(ctx, snap)


@case(id="HC-TEAR-002", title="Power loss during UPDATE BINARY of 128 bytes leaves old or new "
      "data", group=G, reference="docs/sim.md (faults)", severity="major", destructive=True,
      order=11)
def tear_update_binary(ctx: CaseContext) -> None:
    faults = _faults(ctx)
    ctx.need_files("DDF1/EF07")
    target = ef("DDF1/EF07")
    snap = snapshot(ctx, target, window=BINARY_LENGTH, offset=BINARY_OFFSET)
    for applies in (False, True):
        new = bytes(b ^ 0x5A for b in snap.data)
        ctx.enter(target.df, target.write_key)
        ctx.select_ef(target, from_mf=False)
        _torn(ctx, faults, commands.update_binary(BINARY_OFFSET, new), applies)
        _old_or_new(ctx, snap, new, f"tear with the write {'applied' if applies else 'lost'}")
    ensure_unchanged(ctx, snap)
