"""Card-factor rules: which 8 bytes of the user card's ATR diversify its keys.

The card factor is taken from the historical bytes of the answer to reset, but which 8 bytes
depends on the card product (docs/spec-choices.md): on the one real card family in public
reader logs the **first 8** historical bytes (of 13) were the factor, while the rule "last 8"
failed every time. A :class:`FactorRule` names the rule of a card product:

==================  ==============================================================
``first-8``         historical bytes 0..7 (the default; libzhouyb; the real logs)
``last-8``          the last 8 historical bytes (this toolkit before, HDOS at times)
``offset:N``        historical bytes N..N+7
``fixed:HEX``       a fixed 8-byte value given by the operator (no ATR needed)
==================  ==============================================================

:func:`factor_candidates` lists what the configured rule and the other known rules give for
one ATR, so that a host can confirm a candidate (INTERNAL AUTHENTICATE, no try counter) before
any EXTERNAL AUTHENTICATE spends a try (``healthcard_apdu.card.factor``). Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from healthcard_apdu.security.errors import SecurityModuleError

__all__ = [
    "DEFAULT_FACTOR_RULE",
    "FIRST_8",
    "KNOWN_FACTOR_RULES",
    "LAST_8",
    "FactorCandidate",
    "FactorRule",
    "FactorRuleError",
    "factor_candidates",
]

FACTOR_LENGTH = 8
_KINDS = ("first-8", "last-8", "offset", "fixed")


class FactorRuleError(SecurityModuleError, ValueError):
    """A malformed rule, or an ATR too short for the rule."""


@dataclass(frozen=True)
class FactorRule:
    """How a card product's card factor is taken from its ATR historical bytes.

    ``kind`` is ``first-8``, ``last-8``, ``offset`` (with ``offset``) or ``fixed`` (with
    ``value``). ``str(rule)`` is the spelling :meth:`parse` reads.
    """

    kind: str
    offset: int | None = None
    value: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise FactorRuleError(
                f"card-factor rule {self.kind!r} is not one of first-8, last-8, offset:N, "
                "fixed:HEX"
            )
        if self.kind == "offset" and (self.offset is None or not 0 <= self.offset <= 7):
            raise FactorRuleError(
                f"card-factor rule offset:{self.offset}: the offset must be 0..7 (the ATR has "
                "at most 15 historical bytes)"
            )
        if self.kind == "fixed" and (self.value is None or len(self.value) != FACTOR_LENGTH):
            got = "none" if self.value is None else f"{len(self.value)} bytes"
            raise FactorRuleError(
                f"card-factor rule fixed: needs 8 bytes (16 hex digits), got {got}"
            )
        if self.kind != "offset" and self.offset is not None:
            raise FactorRuleError(f"card-factor rule {self.kind} takes no offset")
        if self.kind != "fixed" and self.value is not None:
            raise FactorRuleError(f"card-factor rule {self.kind} takes no value")

    @classmethod
    def parse(cls, text: str | FactorRule) -> FactorRule:
        """``first-8``, ``last-8``, ``offset:N``, ``fixed:HEX`` (case and spaces ignored)."""
        if isinstance(text, FactorRule):
            return text
        if not isinstance(text, str):
            raise FactorRuleError(f"card-factor rule must be a string, got {type(text).__name__}")
        spec = text.strip().lower().replace(" ", "")
        if spec in ("first-8", "last-8"):
            return cls(spec)
        head, sep, arg = spec.partition(":")
        if sep and head == "offset" and arg.isdigit():
            return cls("offset", offset=int(arg))
        if sep and head == "fixed":
            try:
                value = bytes.fromhex(arg)
            except ValueError:
                raise FactorRuleError(f"card-factor rule {text!r}: the value is not hex") from None
            return cls("fixed", value=value)
        raise FactorRuleError(
            f"card-factor rule {text!r} is not one of first-8, last-8, offset:N, fixed:HEX"
        )

    def __str__(self) -> str:
        if self.kind == "offset":
            return f"offset:{self.offset}"
        if self.kind == "fixed":
            assert self.value is not None
            return f"fixed:{self.value.hex().upper()}"
        return self.kind

    @property
    def needs_atr(self) -> bool:
        return self.kind != "fixed"

    def factor(self, historical: bytes) -> bytes:
        """The 8-byte card factor this rule takes from ``historical``; :class:`FactorRuleError`
        when there are too few historical bytes."""
        if self.kind == "fixed":
            assert self.value is not None
            return self.value
        start = {"first-8": 0, "offset": self.offset or 0}.get(
            self.kind, len(historical) - FACTOR_LENGTH
        )
        if start < 0 or start + FACTOR_LENGTH > len(historical):
            raise FactorRuleError(
                f"the ATR has {len(historical)} historical bytes; card-factor rule {self} "
                "needs 8 of them"
            )
        return bytes(historical[start : start + FACTOR_LENGTH])


FIRST_8 = FactorRule("first-8")
LAST_8 = FactorRule("last-8")
DEFAULT_FACTOR_RULE = FIRST_8
"""The default follows the only real evidence (docs/spec-choices.md)."""
KNOWN_FACTOR_RULES: tuple[FactorRule, ...] = (FIRST_8, LAST_8)
"""The rules tried after the configured one when it is not confirmed."""


@dataclass(frozen=True)
class FactorCandidate:
    """One card factor to try and the rules that give it (several rules may agree)."""

    factor: bytes
    rules: tuple[FactorRule, ...]

    @property
    def label(self) -> str:
        """``first-8 0081866B00001015`` (``first-8 = offset:0 ...`` when rules agree)."""
        return f"{' = '.join(str(r) for r in self.rules)} {self.factor.hex().upper()}"

    def to_json(self) -> dict[str, object]:
        return {"rules": [str(r) for r in self.rules], "factor": self.factor.hex().upper()}


def factor_candidates(
    historical: bytes,
    rule: FactorRule = DEFAULT_FACTOR_RULE,
    others: Sequence[FactorRule] = KNOWN_FACTOR_RULES,
) -> tuple[FactorCandidate, ...]:
    """The configured ``rule`` first, then the ``others`` that apply to ``historical``, one
    candidate per distinct factor. Raises :class:`FactorRuleError` when the configured rule
    does not apply (too few historical bytes); other rules that do not apply are left out."""
    order: list[bytes] = []
    rules: dict[bytes, list[FactorRule]] = {}
    for index, candidate_rule in enumerate((rule, *others)):
        try:
            factor = candidate_rule.factor(historical)
        except FactorRuleError:
            if index == 0:
                raise
            continue
        if factor not in rules:
            order.append(factor)
            rules[factor] = []
        if candidate_rule not in rules[factor]:
            rules[factor].append(candidate_rule)
    return tuple(FactorCandidate(f, tuple(rules[f])) for f in order)
