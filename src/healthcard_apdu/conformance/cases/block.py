"""Application block / unblock (LK keys) and card block (BK_MF): all destructive.

The APDUs are our PBOC-style choice (docs/cos.md §8; docs/reference/healthcard-layout.md §3.8
is uncertain):
``84 1E 00 P2 04 MAC`` block, ``84 18 00 00 04 MAC`` unblock, ``84 16 00 00 04 MAC`` card
block; MAC = session MAC (SK = diversify(key, challenge), zero IV) over ``84 INS P1 P2 04``.
The card block cannot be undone and runs last.
"""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.conformance.case import Group, case
from healthcard_apdu.conformance.context import SW_OK, CaseContext
from healthcard_apdu.conformance.ops import corrupt
from healthcard_apdu.model import ef

G = Group.BLOCK
SW_APP_BLOCKED = 0x6A81
SW_MAC_ERRORS = (0x9302, 0x6988)
BLOCKED_DF = "DF01"
TEMPORARY = 0x00
_NAMES = {0x1E: "APPLICATION BLOCK", 0x18: "APPLICATION UNBLOCK", 0x16: "CARD BLOCK"}


def lock_command(ctx: CaseContext, ins: int, role: str, *, p2: int = 0x00,
                 bad_mac: bool = False) -> CommandApdu:
    header = bytes((0x84, ins, 0x00, p2, 0x04))
    mac = ctx.session(role).mac(header)
    command = CommandApdu(0x84, ins, 0x00, p2, mac, name=_NAMES[ins])
    return corrupt(command) if bad_mac else command


def _usable(ctx: CaseContext, df_name: str, what: str) -> None:
    """RK1 authenticates and EF05 record 1 reads (the DF is not blocked)."""
    role = ctx.df_key(df_name, "read")
    ctx.select_df(df_name)
    ctx.expect_sw(f"{what}: {role} authenticates", ctx.authenticate(role), SW_OK)
    ctx.call(_select_ef05(df_name), f"{what}: select EF05")
    ctx.expect_sw(f"{what}: READ RECORD 1 of EF05", ctx.read_record(1), SW_OK)


def _select_ef05(df_name: str) -> CommandApdu:
    return commands.select_fid(ef(f"{df_name}/EF05").fid)


def _blocked(ctx: CaseContext, df_name: str, what: str) -> None:
    role = ctx.df_key(df_name, "read")
    ctx.select_df(df_name)
    response: ResponseApdu = ctx.send(ctx.auth_command(role, ctx.challenge()))
    ctx.expect_sw(f"{what}: EXTERNAL AUTHENTICATE in the blocked DF", response, SW_APP_BLOCKED)
    ctx.expect_sw(f"{what}: SELECT EF05 still works", ctx.send(_select_ef05(df_name)), SW_OK)
    ctx.expect_sw(f"{what}: READ RECORD in the blocked DF", ctx.read_record(1), SW_APP_BLOCKED)


@case(id="HC-BLK-001", title="A temporary application block stops DF01 until it is unblocked",
      group=G, reference="docs/cos.md §8", severity="major", destructive=True, order=30)
def temporary_block_and_unblock(ctx: CaseContext) -> None:
    lk = ctx.df_key(BLOCKED_DF, "application_lock")
    ctx.select_df(BLOCKED_DF)
    ctx.expect_sw("APPLICATION BLOCK (temporary)",
                  ctx.send(lock_command(ctx, 0x1E, lk, p2=TEMPORARY)), SW_OK)
    _blocked(ctx, BLOCKED_DF, "after the block")
    ctx.select_df(BLOCKED_DF)
    ctx.expect_sw("APPLICATION UNBLOCK", ctx.send(lock_command(ctx, 0x18, lk)), SW_OK)
    _usable(ctx, BLOCKED_DF, "after the unblock")


@case(id="HC-BLK-002", title="APPLICATION BLOCK with another DF's lock key is refused (9302)",
      group=G, reference="docs/cos.md §8", severity="critical", destructive=True, order=31)
def block_wrong_key(ctx: CaseContext) -> None:
    ctx.select_df(BLOCKED_DF)
    foreign = ctx.df_key("DF02", "application_lock")
    ctx.expect_sw("APPLICATION BLOCK with LK_DF02's MAC in DF01",
                  ctx.send(lock_command(ctx, 0x1E, foreign)), SW_MAC_ERRORS)
    _usable(ctx, BLOCKED_DF, "afterwards")
    ctx.select_df(BLOCKED_DF)
    lk = ctx.df_key(BLOCKED_DF, "application_lock")
    ctx.expect_sw("APPLICATION UNBLOCK of the unblocked DF (restores the LK counter)",
                  ctx.send(lock_command(ctx, 0x18, lk)), SW_OK)


@case(id="HC-BLK-003", title="APPLICATION UNBLOCK with a wrong MAC leaves DF01 blocked", group=G,
      reference="docs/cos.md §8", severity="critical", destructive=True, order=32)
def unblock_bad_mac(ctx: CaseContext) -> None:
    lk = ctx.df_key(BLOCKED_DF, "application_lock")
    ctx.select_df(BLOCKED_DF)
    ctx.expect_sw("APPLICATION BLOCK (temporary)",
                  ctx.send(lock_command(ctx, 0x1E, lk, p2=TEMPORARY)), SW_OK)
    ctx.select_df(BLOCKED_DF)
    ctx.expect_sw("APPLICATION UNBLOCK with one MAC bit flipped",
                  ctx.send(lock_command(ctx, 0x18, lk, bad_mac=True)), SW_MAC_ERRORS)
    _blocked(ctx, BLOCKED_DF, "after the refused unblock")
    ctx.select_df(BLOCKED_DF)
    ctx.expect_sw("APPLICATION UNBLOCK", ctx.send(lock_command(ctx, 0x18, lk)), SW_OK)
    _usable(ctx, BLOCKED_DF, "after the unblock")


@case(id="HC-BLK-004", title="CARD BLOCK with BK_MF blocks the whole card for good (6A81)",
      group=G, reference="docs/cos.md §8", severity="major", destructive=True, order=99)
def card_block(ctx: CaseContext) -> None:
    ctx.select_df("MF")
    ctx.expect_sw("CARD BLOCK", ctx.send(lock_command(ctx, 0x16, "BK_MF")), SW_OK)
    ctx.expect_sw("SELECT MF on the blocked card", ctx.send(commands.select_fid(0x3F00)),
                  SW_APP_BLOCKED)
    ctx.expect_sw("GET CHALLENGE on the blocked card", ctx.send(commands.get_challenge(8)),
                  SW_APP_BLOCKED)
