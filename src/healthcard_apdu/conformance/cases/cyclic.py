"""Cyclic-record semantics of DF02/EF07 (allergies) and EF08 (immunizations).

The newest record is always record 1 (docs/reference/healthcard-layout.md §1.2, [SPEC]).
The check appends the file's
own records again, oldest first (``00 DC 00 03``, the HDOS form) and reads the whole file after
each append: a full file ends exactly as it started, so the card's data is unchanged.
"""

from __future__ import annotations

from healthcard_apdu.conformance.case import Group, case
from healthcard_apdu.conformance.context import SW_OK, CaseContext
from healthcard_apdu.conformance.ops import (
    SW_RECORD_NOT_FOUND,
    append_cyclic,
    ensure_unchanged,
    read_cyclic,
    record_capacity,
    snapshot,
)
from healthcard_apdu.model import EF, ef

G = Group.CYCLIC
SW_WRONG_LENGTH = 0x6700


def _read_all(ctx: CaseContext, target: EF) -> list[bytes]:
    ctx.enter(target.df, target.read_key)
    ctx.select_ef(target, from_mf=False)
    return read_cyclic(ctx, target)


def _newest_first(ctx: CaseContext, path: str) -> None:
    ctx.need_files(path)
    target = ef(path)
    capacity = record_capacity(target)
    snap = snapshot(ctx, target)
    records = list(snap.records)
    if len(records) < capacity:
        ctx.not_applicable(
            f"{path} holds {len(records)} of {capacity} records; appending to a file that is "
            "not full cannot be undone"
        )
    if len(set(records)) != len(records):
        ctx.not_applicable(f"{path} holds equal records; their order cannot be observed")
    model = list(records)
    for step, record in enumerate(reversed(records), 1):
        ctx.enter(target.df, target.write_key)
        ctx.select_ef(target, from_mf=False)
        response = append_cyclic(ctx, record)
        ctx.require(f"append {step} (00 DC 00 03)", "9000", f"{response.sw:04X}",
                    response.sw == SW_OK)
        model = [record, *model[:-1]]
        now = _read_all(ctx, target)
        positions = [n for n, (want, got) in enumerate(zip(model, now, strict=False), 1)
                     if want != got]
        ok = ctx.check(
            f"after append {step}: record 1 is the new record, the others moved down by one",
            f"{capacity} records in order",
            f"{len(now)} records; wrong at {positions}" if positions or len(now) != capacity
            else f"{capacity} records in order",
        )
        if not ok:
            break
    ctx.expect_sw(f"READ RECORD {capacity + 1}", ctx.read_record(capacity + 1),
                  SW_RECORD_NOT_FOUND)
    ensure_unchanged(ctx, snap, f"{path} holds its original records again")


def _wrong_length(ctx: CaseContext, path: str) -> None:
    ctx.need_files(path)
    target = ef(path)
    assert target.record_length is not None
    snap = snapshot(ctx, target)
    ctx.enter(target.df, target.write_key)
    ctx.select_ef(target, from_mf=False)
    short = bytes(target.record_length - 1)
    ctx.expect_sw(f"append a {len(short)}-byte record", append_cyclic(ctx, short),
                  SW_WRONG_LENGTH)
    ensure_unchanged(ctx, snap)


@case(id="HC-CYC-001", title="DF02/EF07: a new record becomes record 1, the oldest drops out",
      group=G, reference="docs/reference/healthcard-layout.md §1.2", severity="major")
def allergies_newest_first(ctx: CaseContext) -> None:
    _newest_first(ctx, "DF02/EF07")


@case(id="HC-CYC-002", title="DF02/EF08: a new record becomes record 1, the oldest drops out",
      group=G, reference="docs/reference/healthcard-layout.md §1.2", severity="major")
def immunizations_newest_first(ctx: CaseContext) -> None:
    _newest_first(ctx, "DF02/EF08")


@case(id="HC-CYC-003", title="DF02/EF07: a record of the wrong length is refused (6700)",
      group=G, reference="docs/reference/healthcard-layout.md §1.2", severity="minor")
def allergies_wrong_length(ctx: CaseContext) -> None:
    _wrong_length(ctx, "DF02/EF07")


@case(id="HC-CYC-004", title="DF02/EF08: a record of the wrong length is refused (6700)",
      group=G, reference="docs/reference/healthcard-layout.md §1.2", severity="minor")
def immunizations_wrong_length(ctx: CaseContext) -> None:
    _wrong_length(ctx, "DF02/EF08")
