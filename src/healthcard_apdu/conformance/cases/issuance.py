"""Issuance end state: after END ISSUANCE the personalization commands are refused.

The life cycle is our documented choice (docs/cos.md §7). Each probe is built so
that it changes nothing even on a card still in issuance: CREATE FILE of an existing FID,
WRITE KEY with a value of invalid length, ERASE DF/END ISSUANCE only where refused anyway.
"""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.conformance.case import Group, case
from healthcard_apdu.conformance.context import CaseContext
from healthcard_apdu.model import ef, key

G = Group.ISSUANCE
SW_NOT_ALLOWED = 0x6985
SW_REFUSED = 0x6982


@case(id="HC-ISS-001", title="CREATE FILE after issuance answers 6985", group=G,
      reference="docs/cos.md §7", severity="critical")
def create_file_refused(ctx: CaseContext) -> None:
    existing = ef("DDF1/EF05")
    ctx.select_df(existing.df)
    attributes = bytes.fromhex("2C0010F0EFFFFF")  # a variable-record EF, 16 bytes
    response = ctx.send(commands.create_file(existing.fid, attributes))
    ctx.expect_sw(f"CREATE FILE {existing.fid:04X} in {existing.df}", response, SW_NOT_ALLOWED)


@case(id="HC-ISS-002", title="Plaintext WRITE KEY after issuance answers 6985", group=G,
      reference="docs/cos.md §7", severity="critical")
def plaintext_write_key_refused(ctx: CaseContext) -> None:
    target = key("UK1_DDF1")
    ctx.select_df(target.df)
    kid = target.card_key_ref & 0x7F
    probe = CommandApdu(0x80, 0xD4, 0x01, kid, bytes.fromhex("39F0F002FF") + bytes(3),
                        name=f"WRITE KEY {kid:02X} (plaintext probe)")
    ctx.expect_sw("80 D4 01 KID with a 3-byte value", ctx.send(probe), SW_NOT_ALLOWED)


@case(id="HC-ISS-003", title="ERASE DF of DDF1 after issuance answers 6985", group=G,
      reference="docs/cos.md §7", severity="critical")
def erase_ddf1_refused(ctx: CaseContext) -> None:
    ctx.select_df("DDF1")
    ctx.expect_sw("ERASE DF in DDF1", ctx.send(commands.erase_df()), SW_NOT_ALLOWED)


@case(id="HC-ISS-004", title="ERASE DF of the MF without its master key answers 6982", group=G,
      reference="docs/cos.md §7", severity="critical")
def erase_mf_needs_key(ctx: CaseContext) -> None:
    ctx.select_df("MF")
    ctx.expect_sw("ERASE DF in the MF, no authentication", ctx.send(commands.erase_df()),
                  SW_REFUSED)


@case(id="HC-ISS-005", title="END ISSUANCE on an issued card answers 6985", group=G,
      reference="docs/cos.md §7", severity="major")
def end_issuance_once(ctx: CaseContext) -> None:
    ctx.select_df("MF")
    command = CommandApdu(0x80, 0xE8, 0x00, 0x00, le=256, name="END ISSUANCE")
    ctx.expect_sw("END ISSUANCE again", ctx.send(command), SW_NOT_ALLOWED)
