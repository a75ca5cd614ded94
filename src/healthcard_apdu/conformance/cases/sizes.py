"""Sizes and record formats: record counts, TLV framing (tag = item number), binary sizes."""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.conformance.case import CaseInfo, Group, register
from healthcard_apdu.conformance.context import CaseContext
from healthcard_apdu.conformance.ops import SW_RECORD_NOT_FOUND, read_cyclic, record_capacity
from healthcard_apdu.model import EF, EFS

G = Group.SIZES
SW_OFFSET_OUT_OF_RANGE = 0x6B00


def _tlv(ctx: CaseContext, target: EF) -> None:
    records = ctx.read_records(record_capacity(target))
    for item in target.items:
        assert item.record is not None and item.tag is not None
        record = records[item.record - 1]
        where = f"record {item.record} (item {item.no} {item.code})"
        ctx.check(f"{where} tag", f"{item.tag:02X}", record[:1].hex().upper())
        ctx.check(f"{where} length byte", item.length, record[1] if len(record) > 1 else None)
        ctx.check(f"{where} record length", item.tlv_length, len(record))


def _fixed(ctx: CaseContext, target: EF) -> None:
    assert target.record_length is not None
    if target.structure == "cyclic":
        records = read_cyclic(ctx, target)
        ctx.check("records present", f"<= {record_capacity(target)}", len(records),
                  len(records) <= record_capacity(target))
    else:
        records = ctx.read_records(record_capacity(target))
    for number, record in enumerate(records, 1):
        ctx.check(f"record {number} length", target.record_length, len(record))


def _transparent(ctx: CaseContext, target: EF) -> None:
    size = ctx.file_size(target)
    if size != target.size:
        ctx.note(f"the profile sets {size} bytes (the national layout has {target.size})")
    last = ctx.send(commands.read_binary(size - 1, 1))
    ctx.expect_sw(f"READ BINARY of the last byte (offset {size - 1})", last, 0x9000)
    ctx.check("bytes returned for the last byte", 1, len(last.data))
    beyond = ctx.send(commands.read_binary(size, 1))
    ctx.expect_sw(f"READ BINARY at offset {size} (past the end)", beyond,
                  SW_OFFSET_OUT_OF_RANGE)


def _size_case(number: int, target: EF) -> None:
    def run(ctx: CaseContext) -> None:
        ctx.enter(target.df, target.read_key)
        ctx.select_ef(target, from_mf=False)
        if target.structure == "transparent":
            _transparent(ctx, target)
            return
        if target.structure == "tlv_records":
            _tlv(ctx, target)
        else:
            _fixed(ctx, target)
        beyond = record_capacity(target) + 1
        ctx.expect_sw(f"READ RECORD {beyond} (one past the capacity)", ctx.read_record(beyond),
                      SW_RECORD_NOT_FOUND)

    if target.structure == "transparent":
        shape = f"{target.size} bytes"
    elif target.structure == "tlv_records":
        shape = f"{target.record_count} TLV records, tag = item number, full item length"
    else:
        shape = f"{target.record_count} records of {target.record_length} bytes"
    register(CaseInfo(
        id=f"HC-SIZ-{number:03d}", title=f"{target.path} holds {shape}", group=G,
        reference="docs/reference/healthcard-layout.md §1.2", severity="major", destructive=False,
        func=run,
        params={"file": target.path},
    ))


for _n, _ef in enumerate(EFS, 1):
    _size_case(_n, _ef)
