"""File structure and FCI: every DF answers its FCI, every EF exists with its structure."""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.conformance.case import CaseInfo, Group, case, register
from healthcard_apdu.conformance.context import CaseContext
from healthcard_apdu.model import DF, DFS, EF, EFS

G = Group.FILES
SW_WRONG_STRUCTURE = 0x6981
SW_NOT_FOUND = 0x6A82


def parse_fci(fci: bytes) -> dict[int, bytes]:
    """The DOs inside a ``6F`` FCI template (one-byte tags and lengths, as on the card).

    Raises ValueError naming the problem.
    """
    if len(fci) < 2 or fci[0] != 0x6F:
        raise ValueError(f"FCI must start with tag 6F, got {fci[:1].hex().upper() or 'nothing'}")
    if fci[1] != len(fci) - 2:
        raise ValueError(f"FCI length byte {fci[1]} but {len(fci) - 2} bytes follow")
    body, out, pos = fci[2:], {}, 0
    while pos < len(body):
        if pos + 2 > len(body):
            raise ValueError(f"FCI truncated at offset {pos + 2}")
        tag, size = body[pos], body[pos + 1]
        value = body[pos + 2 : pos + 2 + size]
        if len(value) != size:
            raise ValueError(f"FCI DO {tag:02X}: length {size}, {len(value)} bytes present")
        out[tag] = value
        pos += 2 + size
    return out


def _df_case(number: int, target: DF) -> None:
    def run(ctx: CaseContext) -> None:
        path = ctx.df_path(target.name)
        for parent in path[:-1]:
            ctx.call(commands.select_fid(parent.fid), f"select {parent.name}")
        response = ctx.send(commands.select_fid(target.fid))
        ctx.expect_sw(f"SELECT {target.fid:04X}", response, 0x9000)
        try:
            dos = parse_fci(response.data)
        except ValueError as exc:
            ctx.check("FCI template", "6F L 84 Ln name [A5 ..]", str(exc), False)
            return
        name = dos.get(0x84)
        ctx.check("DF name (DO 84)", target.df_name.hex().upper(),
                  "absent" if name is None else name.hex().upper())

    certain = "the traced name" if target.df_name_certain else "the name seen on test cards"
    register(CaseInfo(
        id=f"HC-FS-{number:03d}",
        title=f"{target.name} ({target.fid:04X}) is selectable and its FCI carries {certain}",
        group=G, reference="docs/reference/healthcard-layout.md §1.1", func=run, destructive=False,
        severity="major" if target.df_name_certain else "minor",
        params={"df": target.name},
    ))


def _structure_probe(target: EF) -> tuple[CommandApdu, str]:
    """A command of the *other* kind: READ BINARY on record files, READ RECORD on binary."""
    if target.structure == "transparent":
        return commands.read_record(1), "READ RECORD on a transparent file"
    return commands.read_binary(0, 1), "READ BINARY on a record file"


def _ef_case(number: int, target: EF) -> None:
    def run(ctx: CaseContext) -> None:
        ctx.enter(target.df, target.read_key)
        response = ctx.send(commands.select_fid(target.fid))
        ctx.expect_sw(f"SELECT {target.path}", response, 0x9000)
        if response.sw != 0x9000:
            return
        probe, what = _structure_probe(target)
        ctx.expect_sw(f"{what} ({target.structure})", ctx.send(probe), SW_WRONG_STRUCTURE)

    register(CaseInfo(
        id=f"HC-FS-{number:03d}",
        title=f"{target.path} exists and is a {target.structure.replace('_', ' ')} file",
        group=G, reference="docs/reference/healthcard-layout.md §1.2", func=run, destructive=False,
        severity="critical", params={"file": target.path},
    ))


for _n, _df in enumerate(DFS, 1):
    _df_case(_n, _df)
for _n, _ef in enumerate(EFS, len(DFS) + 1):
    _ef_case(_n, _ef)
_NEXT = len(DFS) + len(EFS) + 1


@case(id=f"HC-FS-{_NEXT:03d}", title="SELECT of a file that does not exist answers 6A82",
      group=G, reference="docs/reference/cos-crypto.md §2.5", severity="minor")
def select_missing(ctx: CaseContext) -> None:
    ctx.select_df("DDF1")
    ctx.expect_sw("SELECT EF0F in DDF1", ctx.send(commands.select_fid(0xEF0F)), SW_NOT_FOUND)


@case(id=f"HC-FS-{_NEXT + 1:03d}", title="The EFs of a sibling DF are not visible", group=G,
      reference="docs/cos.md §2", severity="minor")
def sibling_efs_hidden(ctx: CaseContext) -> None:
    ctx.select_df("DF01")
    ctx.expect_sw("SELECT EE01 while DF01 is current", ctx.send(commands.select_fid(0xEE01)),
                  SW_NOT_FOUND)


@case(id=f"HC-FS-{_NEXT + 2:03d}", title="DDF1 is selectable by its DF name WS.SYS.DDF01",
      group=G, reference="docs/reference/healthcard-layout.md §1.1", severity="minor")
def select_ddf1_by_name(ctx: CaseContext) -> None:
    ddf1 = next(d for d in DFS if d.name == "DDF1")
    ctx.select_df("MF")
    response = ctx.send(commands.select_name(ddf1.df_name))
    ctx.expect_sw("SELECT by name", response, 0x9000)
    try:
        name = parse_fci(response.data).get(0x84)
    except ValueError as exc:
        ctx.check("FCI template", "6F L 84 Ln name", str(exc), False)
        return
    ctx.check("DF name (DO 84)", ddf1.df_name.hex().upper(),
              "absent" if name is None else name.hex().upper())
