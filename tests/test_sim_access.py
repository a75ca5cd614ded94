"""Access matrix: every file of the issued card x read/write x security state.

Expected results come from the reference (docs/reference/healthcard-layout.md §1.2 / §3.3 and
docs/cos.md §3), written here in their own terms, not from the card's access bytes.
"""

from __future__ import annotations

import pytest

from healthcard_apdu.sim import SimCard
from sim_issuance import (
    FILES,
    ROLES,
    TRACE_CARD_FACTOR,
    Channel,
    FileSpec,
    apdu,
    issued_card,
    tlv,
)

# (DF, FID) -> (read rule, write rule[, erase rule]) per the reference tables.
REFERENCE: dict[tuple[str, int], tuple[str, ...]] = {
    ("DDF1", 0xEF05): ("free", "never"),
    ("DDF1", 0xEF06): ("RK1", "never"),
    ("DDF1", 0xEF07): ("RK1", "UK1"),
    ("DDF1", 0xEF08): ("RK1", "UK1"),
    **{("DF01", fid): ("RK1", "UK1") for fid in (0xEF05, 0xEF06, 0xEF07, 0xEF08)},
    ("DF02", 0xEF05): ("RK1", "UK1"),
    ("DF02", 0xEF06): ("RK1", "UK2"),
    ("DF02", 0xEF07): ("RK1", "UK3"),
    ("DF02", 0xEF08): ("RK1", "UK3"),
    ("DF03", 0xEF05): ("RK1", "UK1", "UK2"),
    ("DF03", 0xEF06): ("RK1", "UK1", "UK2"),
    **{("DF03", 0xEE00 + n): ("RK1", "UK1") for n in (1, 2, 3)},
    **{("DF03", 0xED00 + n): ("RK1", "UK1") for n in (1, 2, 3, 4, 5)},
}
STATES_BY_DF = {
    df: [None, *sorted({r.name.split("_")[0] for r in ROLES if r.df == df and r.name[:2] in
                        ("RK", "UK")})]
    for df in ("DDF1", "DF01", "DF02", "DF03")
}


def _cases() -> list[tuple[FileSpec, str, str | None]]:
    out = []
    for spec in FILES:
        ops = ["read", "write"] + (["erase"] if len(REFERENCE[(spec.df, spec.fid)]) == 3 else [])
        for op in ops:
            for state in STATES_BY_DF[spec.df]:
                out.append((spec, op, state))
    return out


def _expected(spec: FileSpec, op: str, state: str | None) -> int:
    rules = REFERENCE[(spec.df, spec.fid)]
    rule = {"read": rules[0], "write": rules[1], "erase": rules[-1]}[op]
    allowed = rule == "free" or rule == state
    return 0x9000 if allowed else 0x6982


def test_reference_covers_every_file_of_the_layout() -> None:
    assert {(f.df, f.fid) for f in FILES} == set(REFERENCE)
    assert STATES_BY_DF["DF02"] == [None, "RK1", "UK1", "UK2", "UK3"]


@pytest.fixture(scope="module")
def channel() -> Channel:
    card: SimCard = issued_card()
    ch = Channel(card.process, TRACE_CARD_FACTOR)
    ch.select_path("DDF1", "DF02")  # cyclic files start empty: give them one record
    assert ch.auth("UK3_DF02") == 0x9000
    for fid, length in ((0xEF07, 120), (0xEF08, 24)):
        ch.select_ef(fid)
        assert ch(apdu(0x00, 0xE2, 0x00, 0x00, b"\x30" * length))[1] == 0x9000
    return ch


def _do(ch: Channel, spec: FileSpec, op: str) -> int:
    if op == "read":
        if spec.kind & 0x3F == 0x28:
            return ch("00B0000001")[1]
        return ch("00B2010400")[1]
    if op == "erase":
        return ch("840C010400")[1]
    kind = spec.kind & 0x3F
    if kind == 0x28:
        return ch("00D6000001A5")[1]
    if kind == 0x2E:
        return ch(apdu(0x00, 0xDC, 0x00, 0x03, b"\x41" * spec.reclen))[1]
    if kind == 0x2A:
        return ch("84D2010400")[1]
    record = tlv(*spec.items[0])
    if spec.kind & 0x80:
        return ch.sm(bytes.fromhex("04DC0104"), record, f"STK_{spec.df}")
    return ch(apdu(0x00, 0xDC, 0x01, 0x04, record))[1]


@pytest.mark.parametrize(
    ("spec", "op", "state"), _cases(),
    ids=lambda v: v if isinstance(v, str) else ("none" if v is None else f"{v.df}-{v.fid:04X}"),
)
def test_access_matrix(channel: Channel, spec: FileSpec, op: str, state: str | None) -> None:
    ch = channel
    ch.select_path("MF", "DDF1")
    if spec.df != "DDF1":
        ch.select_path(spec.df)
    if state is not None:
        assert ch.auth(f"{state}_{spec.df}") == 0x9000
    assert ch.select_ef(spec.fid) == 0x9000
    assert _do(ch, spec, op) == _expected(spec, op, state)


AUTH_ROLES = [r for r in ROLES if r.key_type == 0x39]


@pytest.mark.parametrize("role", AUTH_ROLES, ids=lambda r: r.name)
def test_every_auth_key_counts_a_failure_and_recovers(role: object) -> None:
    card = issued_card()
    ch = Channel(card.process, TRACE_CARD_FACTOR)
    name = role.name  # type: ignore[attr-defined]
    df = role.df  # type: ignore[attr-defined]
    ch.select_path("DDF1")
    if df != "DDF1":
        ch.select_path(df)
    ch.challenge()
    bad = apdu(0x00, 0x82, 0x00, role.ref, bytes(8) + bytes(8) + b"\x01")  # type: ignore[attr-defined]
    assert ch(bad)[1] == 0x63CE
    assert ch.auth(name) == 0x9000
    ch.challenge()
    assert ch(bad)[1] == 0x63CE  # counter was restored to 15 by the success


def test_mf_ssr_is_kept_below_but_df_ssr_is_not() -> None:
    card = issued_card()
    ch = Channel(card.process, TRACE_CARD_FACTOR)
    ch.select_path("DDF1")
    assert ch.auth("RK1_DDF1") == 0x9000
    ch.select_ef(0xEF06)
    assert ch("00B2010400")[1] == 0x9000
    ch.select_path("DF01", "DDF1")  # leaving and re-entering clears DDF1's state
    ch.select_ef(0xEF06)
    assert ch("00B2010400")[1] == 0x6982
