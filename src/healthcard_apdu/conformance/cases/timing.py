"""Timing per command: the median of a few samples stays under the profile's limit.

Times are link round trips measured around the transport (GET RESPONSE rounds included).
A replay uses the durations recorded in the transcript, so it reaches the same verdicts.
"""

from __future__ import annotations

from collections.abc import Callable
from statistics import median

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.conformance.case import CaseFailure, Group, case
from healthcard_apdu.conformance.context import READ_CHUNK, SW_OK, CaseContext, sw_text
from healthcard_apdu.conformance.ops import snapshot, stk_role
from healthcard_apdu.model import ef, key
from healthcard_apdu.security import protect_update_record

G = Group.TIMING


def _measure(ctx: CaseContext, name: str, make: Callable[[], CommandApdu],
             before: Callable[[], object] | None = None) -> None:
    limit = ctx.timing.limit(name)
    samples: list[float] = []
    for _ in range(ctx.timing.samples):
        if before is not None:
            before()
        command = make()
        response, ms = ctx.timed(command)
        if response.sw != SW_OK:
            raise CaseFailure(f"{command.label} answered {sw_text(response.sw)}",
                              expected="9000", actual=sw_text(response.sw))
        samples.append(ms)
    ctx.check(f"median time of {name.replace('_', ' ')} (samples "
              f"{', '.join(f'{s:.1f}' for s in samples)} ms)",
              f"<= {limit:g} ms", f"{median(samples):.1f} ms", median(samples) <= limit)


@case(id="HC-TIM-001", title="SELECT of a DF is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_select(ctx: CaseContext) -> None:
    ctx.select_df("MF")
    _measure(ctx, "select", lambda: commands.select_fid(0xDDF1),
             lambda: ctx.call(commands.select_fid(0x3F00)))


@case(id="HC-TIM-002", title="READ RECORD is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_read_record(ctx: CaseContext) -> None:
    ctx.select_ef("DDF1/EF05")
    _measure(ctx, "read_record", lambda: commands.read_record(1))


@case(id="HC-TIM-003", title="READ BINARY of 128 bytes is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_read_binary(ctx: CaseContext) -> None:
    ctx.need_files("DDF1/EF07")
    photo = ef("DDF1/EF07")
    ctx.enter(photo.df, photo.read_key)
    ctx.select_ef(photo, from_mf=False)
    _measure(ctx, "read_binary", lambda: commands.read_binary(0, READ_CHUNK))


@case(id="HC-TIM-004", title="GET CHALLENGE is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_challenge(ctx: CaseContext) -> None:
    ctx.select_df("DDF1")
    _measure(ctx, "get_challenge", lambda: commands.get_challenge(8))


@case(id="HC-TIM-005", title="EXTERNAL AUTHENTICATE is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_external_auth(ctx: CaseContext) -> None:
    role = "RK1_DDF1"
    ctx.select_df(key(role).df)
    _measure(ctx, "external_authenticate", lambda: ctx.auth_command(role, ctx.challenge()))


@case(id="HC-TIM-006", title="INTERNAL AUTHENTICATE is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_internal_auth(ctx: CaseContext) -> None:
    irk = key("IRK_DDF1")
    ctx.select_df(irk.df)
    _measure(ctx, "internal_authenticate",
             lambda: commands.internal_authenticate(irk.card_key_ref,
                                                    ctx.random.take(16) + b"\x01"))


@case(id="HC-TIM-007", title="Protected UPDATE RECORD is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_sm_update(ctx: CaseContext) -> None:
    ctx.need_files("DDF1/EF08")
    target = ef("DDF1/EF08")
    snap = snapshot(ctx, target)
    ctx.enter(target.df, target.write_key)
    ctx.select_ef(target, from_mf=False)
    _measure(ctx, "update_record_sm",
             lambda: protect_update_record(ctx.session(stk_role(target)), 1, snap.records[0]))


@case(id="HC-TIM-008", title="UPDATE BINARY of 128 bytes is fast enough", group=G,
      reference="docs/sim.md (latency model)", severity="minor")
def time_update_binary(ctx: CaseContext) -> None:
    ctx.need_files("DDF1/EF07")
    target = ef("DDF1/EF07")
    snap = snapshot(ctx, target, window=READ_CHUNK)
    ctx.enter(target.df, target.write_key)
    ctx.select_ef(target, from_mf=False)
    _measure(ctx, "update_binary", lambda: commands.update_binary(0, snap.data))
