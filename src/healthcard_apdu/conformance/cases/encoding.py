"""Data item encodings: every item on the card decodes (cn BCD, GBK ans, flags) and is valid.

Framing (tags, record lengths) is the sizes group's business: an item whose TLV record has the
wrong length is skipped here with a note, so one defect fails one group. EE/ED slots whose
index flag says "invalid" hold no record and are not decoded.
"""

from __future__ import annotations

from collections.abc import Iterable

from healthcard_apdu.apdu import commands
from healthcard_apdu.conformance.case import CaseInfo, Group, register
from healthcard_apdu.conformance.context import CaseContext
from healthcard_apdu.conformance.ops import read_cyclic, record_capacity
from healthcard_apdu.model import EF, EFS, Item, ModelError, decode_item, ef, item_errors

G = Group.ENCODING


def _check_items(ctx: CaseContext, where: str, pairs: Iterable[tuple[Item, bytes]]) -> None:
    problems: list[str] = []
    count = 0
    for item, raw in pairs:
        count += 1
        try:
            value = decode_item(item, raw)
        except ModelError as exc:
            problems.append(str(exc))
            continue
        problems.extend(str(error) for error in item_errors(item, value))
    ctx.check(f"{where}: {count} items decode and validate", "no problems",
              "; ".join(problems) or "no problems", not problems)


def _tlv_pairs(ctx: CaseContext, target: EF) -> list[tuple[Item, bytes]]:
    records = ctx.read_records(record_capacity(target))
    pairs = []
    for item in target.items:
        assert item.record is not None
        record = records[item.record - 1]
        value = record[2:]
        if len(record) < 2 or record[1] != item.length or len(value) != item.length:
            ctx.note(f"record {item.record} ({item.code}) is not framed as in the layout; "
                     "see the sizes group")
            continue
        pairs.append((item, value))
    return pairs


def _offset_pairs(target: EF, raw: bytes) -> list[tuple[Item, bytes]]:
    """Items located by offset, as far as ``raw`` reaches (a profile may cut a file short)."""
    pairs = []
    for item in target.items:
        assert item.offset is not None
        if item.offset + item.length <= len(raw):
            pairs.append((item, raw[item.offset : item.offset + item.length]))
    return pairs


def _slot_valid(ctx: CaseContext, target: EF) -> bool:
    """Whether the index flag of an EE/ED slot says "valid" (00)."""
    index = ef("DF03/EF05" if target.layout == "DF03/EE" else "DF03/EF06")
    ctx.select_ef(index, from_mf=False)
    number = target.fid & 0xFF
    flag = ctx.call(commands.read_record(number), f"read {index.path} record {number}").data
    return flag == b"\x00"


def _encoding_case(number: int, target: EF) -> None:
    def run(ctx: CaseContext) -> None:
        ctx.enter(target.df, target.read_key)
        ctx.select_ef(target, from_mf=False)
        if target.structure == "tlv_records":
            _check_items(ctx, target.path, _tlv_pairs(ctx, target))
        elif target.structure in ("cyclic", "linear_fixed"):
            records = (read_cyclic(ctx, target) if target.structure == "cyclic"
                       else ctx.read_records(record_capacity(target)))
            for n, record in enumerate(records, 1):
                _check_items(ctx, f"record {n}", _offset_pairs(target, record))
        elif target.layout in ("DF03/EE", "DF03/ED"):
            if not _slot_valid(ctx, target):
                ctx.note("the index flag marks this slot invalid: no record to decode")
                return
            ctx.select_ef(target, from_mf=False)
            raw = ctx.read_binary(0, ctx.file_size(target))
            _check_items(ctx, target.path, _offset_pairs(target, raw))
        else:
            raw = ctx.read_binary(0, ctx.file_size(target))
            _check_items(ctx, target.path, [(i, raw) for i in target.items])

    register(CaseInfo(
        id=f"HC-ENC-{number:03d}",
        title=f"{target.path}: every data item decodes and holds a valid value",
        group=G, reference="docs/reference/healthcard-layout.md §2.1", severity="major",
        destructive=False,
        func=run, params={"file": target.path},
    ))


for _n, _ef in enumerate(EFS, 1):
    _encoding_case(_n, _ef)
