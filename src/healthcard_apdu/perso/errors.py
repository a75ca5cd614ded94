"""Errors of the personalization layer. Messages name the step, file, key role or profile
path and the status word; they never contain key values, PINs or session keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from healthcard_apdu.apdu.errors import HealthCardError
from healthcard_apdu.apdu.status import describe


@dataclass(frozen=True)
class Problem:
    """One validation finding: where (``files.DF02/EF07.write``, ``record.DF01EF06.LXRXM1``)
    and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class PersoError(HealthCardError):
    """Base of every error of the personalization layer."""


class ProfileError(PersoError, ValueError):
    """A profile or resident record that cannot be used; ``problems`` lists all findings."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{source}: {len(self.problems)} problem(s)\n{lines}")


class SecurityModuleUnsuitable(PersoError):
    """The security module cannot do what personalization needs (e.g. a PSAM cannot derive
    card keys for WRITE KEY), or its algorithm differs from the profile's."""


class CardNotBlank(PersoError):
    """The card is already (partly) personalized and ``erase`` was not requested."""


class EraseRefused(PersoError):
    """The card cannot be erased under this profile (erase right never, or no master key)."""


class StepFailed(PersoError):
    """A plan step did not give the expected result. ``index`` is 1-based; ``sw`` is the
    status word (None when the link failed)."""

    def __init__(
        self,
        step: str,
        index: int,
        total: int,
        sw: int | None,
        detail: str = "",
        *,
        ins: int | None = None,
    ) -> None:
        self.step = step
        self.index = index
        self.total = total
        self.sw = sw
        self.detail = detail
        where = f"step {index}/{total} '{step}'"
        if sw is not None:
            text = f"{where}: SW {sw:04X} ({describe(sw, ins)})"
        else:
            text = f"{where}: no answer"
        if detail:
            text += f"; {detail}"
        super().__init__(text)


class AuthenticationRefused(StepFailed):
    """An EXTERNAL AUTHENTICATE was refused. Never retried; ``tries_left`` from 63Cx
    (0 when blocked, None when the SW says nothing about tries)."""

    @property
    def tries_left(self) -> int | None:
        if self.sw is None:
            return None
        if self.sw & 0xFFF0 == 0x63C0:
            return self.sw & 0x0F
        if self.sw == 0x6983:
            return 0
        return None


class ReadBackMismatch(StepFailed):
    """Data read back after writing differs from what was written."""
