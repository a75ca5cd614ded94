"""Access matrix: every EF × read/write(/erase) × security state, expected from the layout.

States per DF: none, then each external-authentication key of the DF (RK1, UK1, UK2, UK3).
Rights are exact (docs/cos.md §3): a read needs exactly the RK1 state, a write exactly its UK
state; a file without a write key is not rewritable after issuance. Writes write the file's
own data back (see :mod:`..ops`), so the card's data stays as it was.
"""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.conformance.case import CaseInfo, Group, register
from healthcard_apdu.conformance.context import SW_OK, CaseContext
from healthcard_apdu.conformance.ops import (
    SW_RECORD_NOT_FOUND,
    WINDOW,
    attempt_write,
    ensure_unchanged,
    snapshot,
)
from healthcard_apdu.model import EF, EFS, KEYS

G = Group.ACCESS
SW_REFUSED = 0x6982
AUTH_ROLES = ("read", "update", "erase")


def states(df_name: str) -> list[str | None]:
    """None (no authentication) and the external-authentication keys of the DF."""
    return [None, *(k.name for k in KEYS if k.df == df_name and k.role in AUTH_ROLES)]


def operations(target: EF) -> list[str]:
    return ["read", "write"] + (["erase"] if target.erase_key is not None else [])


def expected_allowed(target: EF, op: str, state: str | None) -> bool:
    """What the layout (docs/reference/healthcard-layout.md §1.2 / §3.3) says about ``op``
    in ``state``."""
    if op == "read":
        return target.read_key is None or state == target.read_key
    wanted = target.write_key if op == "write" else target.erase_key
    return wanted is not None and state == wanted


def _read(ctx: CaseContext, target: EF, allowed: bool, state: str | None) -> None:
    ctx.enter(target.df, state)
    ctx.select_ef(target, from_mf=False)
    if target.structure == "transparent":
        response = ctx.send(commands.read_binary(0, WINDOW))
    else:
        response = ctx.read_record(1)
    expected = {SW_OK} if allowed else {SW_REFUSED}
    if allowed and target.structure == "cyclic":
        expected.add(SW_RECORD_NOT_FOUND)  # an empty cyclic file
    ctx.expect_sw(f"read {target.path} in state {state or 'none'}", response, expected)


def _write(ctx: CaseContext, target: EF, op: str, allowed: bool, state: str | None) -> None:
    snap = snapshot(ctx, target)
    ctx.enter(target.df, state)
    ctx.select_ef(target, from_mf=False)
    response = attempt_write(ctx, snap, op)
    ctx.expect_sw(f"{op} {target.path} in state {state or 'none'}", response,
                  SW_OK if allowed else SW_REFUSED)
    ensure_unchanged(ctx, snap)


def _access_case(number: int, target: EF, op: str, state: str | None) -> None:
    allowed = expected_allowed(target, op, state)

    def run(ctx: CaseContext) -> None:
        if op == "read":
            _read(ctx, target, allowed, state)
        else:
            _write(ctx, target, op, allowed, state)

    verb = {"read": "read", "write": "write", "erase": "erase (flag to FF)"}[op]
    register(CaseInfo(
        id=f"HC-ACC-{number:03d}",
        title=f"{target.path} {verb} in state {state or 'none'}: "
              f"{'allowed' if allowed else 'refused'}",
        group=G, reference="docs/reference/healthcard-layout.md §1.2, §3.3",
        severity="major" if allowed else "critical", destructive=False, func=run,
        params={"file": target.path, "op": op, "state": state or "none",
                "expected": "allowed" if allowed else "refused"},
    ))


def _register_all() -> None:
    number = 0
    for target in EFS:
        for op in operations(target):
            for state in states(target.df):
                number += 1
                _access_case(number, target, op, state)


_register_all()
