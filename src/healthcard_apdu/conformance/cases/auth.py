"""Authentication and try counters: every key authenticates, failures count, challenges expire.

Non-destructive cases end with a successful authentication, which restores the key's try
counter. The destructive case blocks UK2_DF02 for good (an external-authentication key cannot
be unblocked): it runs after every other case but the card block.
"""

from __future__ import annotations

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.conformance.case import CaseFailure, CaseInfo, Group, case, register
from healthcard_apdu.conformance.context import SW_OK, CaseContext, sw_text
from healthcard_apdu.model import KEYS, ef, key
from healthcard_apdu.security import external_auth_cryptogram

G = Group.AUTH
SW_NO_CHALLENGE = 0x6985
SW_BLOCKED = 0x6983
COUNTER_KEY = "UK1_DDF1"
EXHAUSTED_KEY = "UK2_DF02"
MAX_TRIES = 15  # a 4-bit counter


def tries_left(sw: int) -> int | None:
    return sw & 0x0F if sw & 0xFFF0 == 0x63C0 else None


def wrong_auth(ctx: CaseContext, role: str) -> CommandApdu:
    """A fresh challenge and an EXTERNAL AUTHENTICATE whose cryptogram is off by one bit."""
    good = ctx.auth_command(role, ctx.challenge())
    data = bytearray(good.data)
    data[0] ^= 0x01
    return good.with_data(bytes(data))


def _key_case(number: int, role: str, df_name: str, ref: int) -> None:
    def run(ctx: CaseContext) -> None:
        ctx.select_df(df_name)
        ctx.expect_sw(f"EXTERNAL AUTHENTICATE {ref:02X} with {role}", ctx.authenticate(role),
                      SW_OK)

    register(CaseInfo(
        id=f"HC-AUTH-{number:03d}",
        title=f"{role} (reference {ref:02X} in {df_name}) authenticates with the card's factors",
        group=G, reference="docs/reference/healthcard-layout.md §3.2, §3.5", severity="critical",
        destructive=False, func=run, params={"key": role},
    ))


_AUTH_KEYS = [k for k in KEYS if k.role in ("read", "update", "erase")]
for _n, _k in enumerate(_AUTH_KEYS, 1):
    _key_case(_n, _k.name, _k.df, _k.card_key_ref)
_NEXT = len(_AUTH_KEYS) + 1


@case(id=f"HC-AUTH-{_NEXT:03d}",
      title="A wrong cryptogram answers 63Cx and counts down by one; a success restores the count",
      group=G, reference="docs/reference/cos-crypto.md §1.5", severity="critical")
def counter_counts_and_restores(ctx: CaseContext) -> None:
    ctx.select_df(key(COUNTER_KEY).df)
    first = ctx.send(wrong_auth(ctx, COUNTER_KEY)).sw
    left = tries_left(first)
    ctx.require("first wrong cryptogram", "63Cx", sw_text(first), left is not None)
    assert left is not None
    if left == 0:
        raise CaseFailure(f"{COUNTER_KEY} has no tries left after one failure")
    second = ctx.send(wrong_auth(ctx, COUNTER_KEY)).sw
    ctx.check("second wrong cryptogram", f"63C{left - 1:X}", sw_text(second))
    ctx.expect_sw("right cryptogram", ctx.authenticate(COUNTER_KEY), SW_OK)
    ctx.select_df(key(COUNTER_KEY).df)
    third = ctx.send(wrong_auth(ctx, COUNTER_KEY)).sw
    ctx.check("wrong cryptogram after the success (counter restored)", sw_text(first),
              sw_text(third))
    ctx.expect_sw("right cryptogram again", ctx.authenticate(COUNTER_KEY), SW_OK)


def _restore_counter(ctx: CaseContext, role: str) -> None:
    ctx.select_df(key(role).df)
    ctx.expect_sw(f"{role} authenticates afterwards (restores its counter)",
                  ctx.authenticate(role), SW_OK)


@case(id=f"HC-AUTH-{_NEXT + 1:03d}", title="EXTERNAL AUTHENTICATE without a challenge answers 6985",
      group=G, reference="docs/cos.md §5", severity="major")
def auth_needs_challenge(ctx: CaseContext) -> None:
    role = "RK1_DDF1"
    ctx.select_df(key(role).df)
    invented = ctx.random.take(8)
    response = ctx.send(ctx.auth_command(role, invented))
    ctx.expect_sw("EXTERNAL AUTHENTICATE with no GET CHALLENGE before it", response,
                  SW_NO_CHALLENGE)
    _restore_counter(ctx, role)


@case(id=f"HC-AUTH-{_NEXT + 2:03d}",
      title="A challenge is valid for the next command only (another command in between)",
      group=G, reference="docs/reference/cos-crypto.md §1.2", severity="critical")
def challenge_next_command_only(ctx: CaseContext) -> None:
    role = "RK1_DDF1"
    ctx.select_df(key(role).df)
    challenge = ctx.challenge()
    ctx.call(commands.select_fid(ef("DDF1/EF05").fid), "select DDF1/EF05 in between")
    response = ctx.send(ctx.auth_command(role, challenge))
    ctx.check("EXTERNAL AUTHENTICATE with a consumed challenge", "refused", sw_text(response.sw),
              response.sw != SW_OK)
    _restore_counter(ctx, role)


@case(id=f"HC-AUTH-{_NEXT + 3:03d}",
      title="An accepted EXTERNAL AUTHENTICATE cannot be replayed", group=G,
      reference="docs/reference/cos-crypto.md §1.2", severity="critical")
def auth_not_replayable(ctx: CaseContext) -> None:
    role = "RK1_DDF1"
    ctx.select_df(key(role).df)
    command = ctx.auth_command(role, ctx.challenge())
    ctx.expect_sw("first EXTERNAL AUTHENTICATE", ctx.send(command), SW_OK)
    ctx.select_df(key(role).df)
    replay = ctx.send(command)
    ctx.check("the same APDU again", "refused", sw_text(replay.sw), replay.sw != SW_OK)
    _restore_counter(ctx, role)


@case(id=f"HC-AUTH-{_NEXT + 4:03d}",
      title="Keys are per DF: the RK1_DF02 cryptogram is refused by DF01", group=G,
      reference="docs/reference/healthcard-layout.md §3.2", severity="critical")
def keys_per_df(ctx: CaseContext) -> None:
    ctx.select_df("DF01")
    response = ctx.authenticate("RK1_DF02")
    ctx.check("RK1_DF02's cryptogram at reference 84 of DF01", "63Cx", sw_text(response.sw),
              tries_left(response.sw) is not None)
    _restore_counter(ctx, "RK1_DF01")


@case(id=f"HC-AUTH-{_NEXT + 5:03d}",
      title="INTERNAL AUTHENTICATE with IRK_DDF1 answers the expected cryptogram and keeps "
            "the security state", group=G, reference="docs/reference/healthcard-layout.md §3.7",
      severity="major")
def internal_authentication(ctx: CaseContext) -> None:
    irk = key("IRK_DDF1")
    ctx.select_df(irk.df)
    rs, a = ctx.random.take(8), ctx.random.take(8)
    response = ctx.send(commands.internal_authenticate(irk.card_key_ref, rs + a + b"\x01"))
    ctx.expect_sw("INTERNAL AUTHENTICATE", response, SW_OK)
    session = ctx.security.session(ctx.key_spec(irk.name), ctx.facts.factors, rs)
    ctx.check("card cryptogram", external_auth_cryptogram(session, a).hex().upper(),
              response.data.hex().upper())
    holder = ef("DDF1/EF06")
    ctx.select_ef(holder, from_mf=False)
    ctx.expect_sw("READ RECORD of DDF1/EF06 (still no RK1 state)", ctx.read_record(1), 0x6982)


@case(id="HC-AUTH-050", title=f"{EXHAUSTED_KEY}: wrong cryptograms count down to 63C0, "
      "then the key answers 6983 even to the right cryptogram", group=G,
      reference="docs/reference/cos-crypto.md §1.5", severity="critical", destructive=True,
      order=20)
def counter_blocks(ctx: CaseContext) -> None:
    df_name = key(EXHAUSTED_KEY).df
    ctx.select_df(df_name)
    seen: list[str] = []
    previous: int | None = None
    for _attempt in range(MAX_TRIES + 1):
        sw = ctx.send(wrong_auth(ctx, EXHAUSTED_KEY)).sw
        seen.append(sw_text(sw))
        left = tries_left(sw)
        if left is None:
            break
        if previous is not None and left != previous - 1:
            ctx.check("each failure counts down by one", f"63C{previous - 1:X}", sw_text(sw))
            break
        previous = left
        if left == 0:
            break
    ctx.note("answers: " + " ".join(seen))
    ctx.check("the counter reaches 63C0", "63C0", seen[-1] if seen else "-", previous == 0)
    right = ctx.authenticate(EXHAUSTED_KEY)
    ctx.expect_sw("right cryptogram on the blocked key", right, SW_BLOCKED)
    ctx.select_df(df_name)
    again = ctx.authenticate(EXHAUSTED_KEY)
    ctx.expect_sw("right cryptogram after selecting the DF again", again, SW_BLOCKED)
