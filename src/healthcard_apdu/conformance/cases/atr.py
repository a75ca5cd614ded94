"""Reset and ATR: the answer to reset, the card factor in it, and what a reset clears."""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.conformance.case import Group, case
from healthcard_apdu.conformance.context import SW_OK, CaseContext, sw_text
from healthcard_apdu.model import ef
from healthcard_apdu.transport.atr import AtrError, parse_atr

G = Group.ATR


@case(id="HC-ATR-001", title="The ATR is well formed (ISO/IEC 7816-3, check byte when required)",
      group=G, reference="docs/cos.md §1", severity="critical")
def atr_well_formed(ctx: CaseContext) -> None:
    try:
        info = parse_atr(ctx.facts.atr)
    except AtrError as exc:
        ctx.check("ATR parses", "a valid ATR", str(exc), False)
        return
    ctx.check("ATR parses", "a valid ATR", ctx.facts.atr.hex().upper(), True)
    if info.tck is not None:
        ctx.check("TCK (XOR of T0..TCK is 00)", True, info.tck_ok)


@case(id="HC-ATR-002", title="The ATR carries the 8-byte card factor as its last historical bytes",
      group=G, reference="docs/reference/healthcard-layout.md §3.4", severity="critical")
def atr_card_factor(ctx: CaseContext) -> None:
    historical = ctx.facts.historical_bytes
    ctx.check("historical bytes", ">= 8", len(historical), len(historical) >= 8)
    factor = historical[-8:]
    ctx.check(
        "card factor is not a constant filler",
        "not all 00 / all FF",
        factor.hex().upper(),
        factor not in (bytes(8), b"\xff" * 8),
    )


@case(id="HC-ATR-003", title="A warm reset answers the same ATR", group=G,
      reference="docs/cos.md §1", severity="major")
def atr_warm_reset(ctx: CaseContext) -> None:
    expected = ctx.facts.atr.hex().upper()
    for attempt in (1, 2):
        ctx.check(f"ATR after warm reset {attempt}", expected, ctx.reset().hex().upper())


@case(id="HC-ATR-004", title="A cold reset (power cycle) answers the same ATR", group=G,
      reference="docs/cos.md §1", severity="major")
def atr_cold_reset(ctx: CaseContext) -> None:
    ctx.check("ATR after cold reset", ctx.facts.atr.hex().upper(),
              ctx.reset(cold=True).hex().upper())


def _state_cleared_by_reset(ctx: CaseContext, *, cold: bool) -> None:
    holder = ef("DDF1/EF06")
    ctx.enter(holder.df, holder.read_key)
    ctx.select_ef(holder, from_mf=False)
    ctx.call(commands.read_record(1), "read DDF1/EF06 after RK1_DDF1 (precondition)")
    ctx.reset(cold=cold)
    selected = ctx.send(commands.select_fid(holder.fid))
    if selected.sw != SW_OK:
        ctx.check("after reset, EF06 is not visible from the MF", "6A82", sw_text(selected.sw),
                  selected.sw == 0x6A82)
        return
    read = ctx.send(commands.read_record(1))
    ctx.check("after reset, the DDF1 security state is gone (READ RECORD)", "6982",
              sw_text(read.sw), read.sw == 0x6982)


@case(id="HC-ATR-005", title="A warm reset clears the security state and selects the MF",
      group=G, reference="docs/reference/cos-crypto.md §2.1", severity="critical")
def atr_warm_reset_clears_state(ctx: CaseContext) -> None:
    _state_cleared_by_reset(ctx, cold=False)


@case(id="HC-ATR-006", title="A cold reset clears the security state and selects the MF",
      group=G, reference="docs/reference/cos-crypto.md §2.1", severity="critical")
def atr_cold_reset_clears_state(ctx: CaseContext) -> None:
    _state_cleared_by_reset(ctx, cold=True)


@case(id="HC-ATR-007", title="GET CHALLENGE answers 8 bytes, different each time", group=G,
      reference="docs/reference/healthcard-layout.md §3.5", severity="major")
def atr_challenge_fresh(ctx: CaseContext) -> None:
    ctx.select_df("MF")
    first, second = ctx.challenge(), ctx.challenge()
    ctx.check("two challenges differ", "different", "same" if first == second else "different")
