"""Secure messaging: protected UPDATE RECORD / UPDATE BINARY with good and bad MACs.

Targets: DDF1/EF08 record 1 (KYXQ, the traced SM write) and the first bytes of DDF1/EF07.
Each case writes the file's own data back; after a refused command a good protected write
follows, which restores the STK try counter.
"""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.conformance.case import Group, case
from healthcard_apdu.conformance.context import SW_OK, CaseContext, sw_text
from healthcard_apdu.conformance.ops import (
    Snapshot,
    ensure_unchanged,
    sm_update_binary,
    sm_update_record,
    snapshot,
    stk_role,
)
from healthcard_apdu.model import EF, ef
from healthcard_apdu.security import protect_update_record

G = Group.SM
SW_MAC_ERRORS = (0x9302, 0x6988)
SW_NEEDS_SM = 0x6900
RECORD_FILE = "DDF1/EF08"
BINARY_FILE = "DDF1/EF07"


def _prepare(ctx: CaseContext, path: str) -> tuple[EF, Snapshot]:
    ctx.need_files(path)
    target = ef(path)
    snap = snapshot(ctx, target)
    ctx.enter(target.df, target.write_key)
    ctx.select_ef(target, from_mf=False)
    return target, snap


def _good_record_write(ctx: CaseContext, target: EF, snap: Snapshot, what: str) -> None:
    response = sm_update_record(ctx, target, 1, snap.records[0])
    ctx.expect_sw(what, response, SW_OK)


@case(id="HC-SM-001", title="Protected UPDATE RECORD with a correct MAC is accepted", group=G,
      reference="docs/reference/healthcard-layout.md §3.6", severity="critical")
def sm_record_good(ctx: CaseContext) -> None:
    target, snap = _prepare(ctx, RECORD_FILE)
    _good_record_write(ctx, target, snap, f"04 DC 01 04 on {target.path} (own value)")
    ensure_unchanged(ctx, snap)


@case(id="HC-SM-002", title="Protected UPDATE RECORD with a wrong MAC is refused (9302)",
      group=G, reference="docs/reference/healthcard-layout.md §3.6", severity="critical")
def sm_record_bad_mac(ctx: CaseContext) -> None:
    target, snap = _prepare(ctx, RECORD_FILE)
    response = sm_update_record(ctx, target, 1, snap.records[0], corrupt_mac=True)
    ctx.expect_sw("UPDATE RECORD with one MAC bit flipped", response, SW_MAC_ERRORS)
    _good_record_write(ctx, target, snap, "a correct protected write afterwards")
    ensure_unchanged(ctx, snap)


@case(id="HC-SM-003",
      title="A protected command made for an earlier challenge is refused (replayed challenge)",
      group=G, reference="docs/reference/healthcard-layout.md §3.6", severity="critical")
def sm_record_stale_challenge(ctx: CaseContext) -> None:
    target, snap = _prepare(ctx, RECORD_FILE)
    stale = protect_update_record(ctx.session(stk_role(target)), 1, snap.records[0])
    ctx.challenge()  # a newer challenge: the card must use this one
    response = ctx.send(stale)
    ctx.check("command MACed under the previous challenge", "refused", sw_text(response.sw),
              response.sw != SW_OK)
    _good_record_write(ctx, target, snap, "a correct protected write afterwards")
    ensure_unchanged(ctx, snap)


@case(id="HC-SM-004", title="An accepted protected command cannot be sent again", group=G,
      reference="docs/reference/healthcard-layout.md §3.6", severity="critical")
def sm_record_replayed_command(ctx: CaseContext) -> None:
    target, snap = _prepare(ctx, RECORD_FILE)
    command = protect_update_record(ctx.session(stk_role(target)), 1, snap.records[0])
    ctx.expect_sw("first protected UPDATE RECORD", ctx.send(command), SW_OK)
    again = ctx.send(command)
    ctx.check("the same APDU again", "refused", sw_text(again.sw), again.sw != SW_OK)
    _good_record_write(ctx, target, snap, "a correct protected write afterwards")
    ensure_unchanged(ctx, snap)


@case(id="HC-SM-005", title="A plain UPDATE RECORD (CLA 00) of a protected TLV file answers 6900",
      group=G, reference="docs/cos.md §2", severity="major")
def sm_plain_refused(ctx: CaseContext) -> None:
    facts = ctx.profile.file(RECORD_FILE) if ctx.profile is not None else None
    if facts is not None and not facts.needs_sm:
        ctx.not_applicable(f"the profile creates {RECORD_FILE} without the SM type bits")
    _target, snap = _prepare(ctx, RECORD_FILE)
    response = ctx.send(commands.update_record(1, snap.records[0]))
    ctx.expect_sw("00 DC 01 04 after UK1 authentication", response, SW_NEEDS_SM)
    ensure_unchanged(ctx, snap)


@case(id="HC-SM-006", title="Protected UPDATE BINARY with a correct MAC is accepted", group=G,
      reference="docs/reference/healthcard-layout.md §3.6", severity="major")
def sm_binary_good(ctx: CaseContext) -> None:
    target, snap = _prepare(ctx, BINARY_FILE)
    response = sm_update_binary(ctx, target, snap.offset, snap.data)
    ctx.expect_sw(f"04 D6 on {target.path} (own bytes)", response, SW_OK)
    ensure_unchanged(ctx, snap)


@case(id="HC-SM-007", title="Protected UPDATE BINARY with a wrong MAC is refused (9302)",
      group=G, reference="docs/reference/healthcard-layout.md §3.6", severity="critical")
def sm_binary_bad_mac(ctx: CaseContext) -> None:
    target, snap = _prepare(ctx, BINARY_FILE)
    response = sm_update_binary(ctx, target, snap.offset, snap.data, corrupt_mac=True)
    ctx.expect_sw("UPDATE BINARY with one MAC bit flipped", response, SW_MAC_ERRORS)
    good = sm_update_binary(ctx, target, snap.offset, snap.data)
    ctx.expect_sw("a correct protected write afterwards", good, SW_OK)
    ensure_unchanged(ctx, snap)
