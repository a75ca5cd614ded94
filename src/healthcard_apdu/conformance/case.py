"""Conformance cases: stable IDs, titles, references, severities, and their registry.

A case is a function ``(ctx: CaseContext) -> None`` registered with :func:`case` (or
:func:`register` for generated cases). It records checks on the context; a failed check, a
:class:`CaseFailure` or an unexpected status word makes it fail, :class:`NotApplicable` marks it
not applicable, any other exception is an error. IDs never change meaning once published.
"""

from __future__ import annotations

import enum
import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from healthcard_apdu.conformance.context import CaseContext

Severity = Literal["critical", "major", "minor"]
SEVERITIES: tuple[Severity, ...] = ("critical", "major", "minor")
CaseFunction = Callable[["CaseContext"], None]


class ConformanceError(Exception):
    """The suite cannot run as asked (bad selection, production card, unusable trace)."""


class Group(enum.Enum):
    """Case groups, in report order; the value is the ID prefix."""

    ATR = "ATR"
    FILES = "FS"
    SIZES = "SIZ"
    ENCODING = "ENC"
    ACCESS = "ACC"
    AUTH = "AUTH"
    SM = "SM"
    CYCLIC = "CYC"
    SIGNATURES = "SIG"
    BLOCK = "BLK"
    ISSUANCE = "ISS"
    TIMING = "TIM"
    TEARING = "TEAR"

    @property
    def title(self) -> str:
        return _GROUP_TITLES[self]

    @property
    def slug(self) -> str:
        """Lower-case name used on the command line and in JUnit (``access``, ``sm``...)."""
        return self.name.lower()


_GROUP_TITLES = {
    Group.ATR: "Reset and ATR",
    Group.FILES: "File structure and FCI",
    Group.SIZES: "Sizes and record formats",
    Group.ENCODING: "Data item encodings",
    Group.ACCESS: "Access matrix",
    Group.AUTH: "Authentication and try counters",
    Group.SM: "Secure messaging",
    Group.CYCLIC: "Cyclic-record semantics",
    Group.SIGNATURES: "DF03 record signatures",
    Group.BLOCK: "Application and card block",
    Group.ISSUANCE: "Issuance end state",
    Group.TIMING: "Timing per command",
    Group.TEARING: "Power loss during writes (tearing)",
}


class Status(enum.Enum):
    """Verdict of one case."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    SKIPPED = "skipped"
    NOT_APPLICABLE = "not_applicable"

    @property
    def is_problem(self) -> bool:
        """Failed or error: what makes a run unsuccessful."""
        return self in (Status.FAILED, Status.ERROR)


class CaseFailure(Exception):
    """The card does not conform; ``expected`` / ``actual`` go into the report."""

    def __init__(self, message: str, *, expected: str = "", actual: str = "") -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class NotApplicable(Exception):
    """The case cannot be run against this card or transport (the reason is the message)."""


@dataclass(frozen=True)
class CaseInfo:
    """What a case checks. ``params`` describes generated cases (e.g. file, op, state).

    ``order`` only matters for destructive cases: they run after all others, lowest first,
    because some of them (a blocked key, a blocked card) cannot be undone.
    """

    id: str
    title: str
    group: Group
    reference: str
    severity: Severity
    destructive: bool
    func: CaseFunction = field(repr=False, compare=False)
    order: int = 0
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        prefix = f"HC-{self.group.value}-"
        if not self.id.startswith(prefix) or not self.id[len(prefix) :].isdigit():
            raise ValueError(f"case id {self.id!r} must look like {prefix}NNN")
        if self.severity not in SEVERITIES:
            raise ValueError(f"case {self.id}: severity {self.severity!r} not in {SEVERITIES}")
        if not self.reference.startswith("docs/"):
            raise ValueError(f"case {self.id}: reference {self.reference!r} names no document")


_REGISTRY: dict[str, CaseInfo] = {}


def register(info: CaseInfo) -> CaseInfo:
    """Add a case; an ID may be registered once."""
    if info.id in _REGISTRY:
        raise ValueError(f"duplicate conformance case id {info.id}")
    _REGISTRY[info.id] = info
    return info


def case(
    *,
    id: str,
    title: str,
    group: Group,
    reference: str,
    severity: Severity,
    destructive: bool = False,
    order: int = 0,
) -> Callable[[CaseFunction], CaseFunction]:
    """Decorator: register ``func`` as a case."""

    def wrap(func: CaseFunction) -> CaseFunction:
        register(CaseInfo(id, title, group, reference, severity, destructive, func, order))
        return func

    return wrap


def _load_cases() -> None:
    # Importing the package registers every case (module order = report order).
    import healthcard_apdu.conformance.cases  # noqa: F401


def all_cases() -> list[CaseInfo]:
    """Every case in run order: non-destructive by group, then destructive by ``order``."""
    _load_cases()
    groups = list(Group)
    regular = [c for c in _REGISTRY.values() if not c.destructive]
    regular.sort(key=lambda c: groups.index(c.group))
    destructive = sorted(
        (c for c in _REGISTRY.values() if c.destructive), key=lambda c: c.order
    )
    return regular + destructive


def get_case(case_id: str) -> CaseInfo:
    _load_cases()
    try:
        return _REGISTRY[case_id.upper()]
    except KeyError:
        raise ConformanceError(f"no conformance case {case_id!r}") from None


def find_cases(**params: str) -> list[CaseInfo]:
    """Cases whose ``params`` contain all the given key/value pairs (for generated cases)."""
    return [c for c in all_cases() if all(c.params.get(k) == v for k, v in params.items())]


def group_by_name(name: str) -> Group:
    """A group from its slug (``access``), prefix (``ACC``) or title (case-insensitive)."""
    wanted = name.strip().lower()
    for group in Group:
        if wanted in (group.slug, group.value.lower(), group.title.lower()):
            return group
    known = ", ".join(g.slug for g in Group)
    raise ConformanceError(f"no case group {name!r}; known: {known}")


def select_cases(
    patterns: Iterable[str] = (), groups: Iterable[str] = ()
) -> list[CaseInfo]:
    """Cases matching any ID pattern (``HC-ACC-*``) or group; everything when both are empty."""
    cases = all_cases()
    pattern_list = [p.upper() for p in patterns]
    group_set = {group_by_name(g) for g in groups}
    if not pattern_list and not group_set:
        return cases
    chosen = [
        c
        for c in cases
        if c.group in group_set or any(fnmatch.fnmatchcase(c.id, p) for p in pattern_list)
    ]
    for pattern in pattern_list:
        if not any(fnmatch.fnmatchcase(c.id, pattern) for c in cases):
            raise ConformanceError(f"no conformance case matches {pattern!r}")
    return chosen
