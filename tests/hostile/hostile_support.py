"""Shared by the hostile probes (tests/hostile/): example budget, counting, typed-error check.

``HEALTHCARD_HOSTILE_SCALE`` multiplies every test's example budget (CI: 1, about 12,000
examples in total; ``bench/hostile_long.py`` runs 10x and more with random seeds). At scale 1
the examples are derandomized, so CI always runs the same ones; above 1 they are random.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

from healthcard_apdu.apdu.errors import HealthCardError

SCALE = float(os.environ.get("HEALTHCARD_HOSTILE_SCALE", "1"))
#: Examples run per test (filled while the tests run; printed in the terminal summary).
EXAMPLES: Counter[str] = Counter()
F = TypeVar("F", bound=Callable[..., Any])


def budget(examples: int) -> Callable[[F], F]:
    """Hypothesis settings for a probe with ``examples`` examples at scale 1."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=SCALE <= 1,
        database=None,
        suppress_health_check=list(HealthCheck),
    )


def count(name: str) -> None:
    EXAMPLES[name] += 1


@contextmanager
def only_typed_errors() -> Iterator[None]:
    """Anything may be refused, but only with the project's own typed errors."""
    with suppress(HealthCardError):
        yield
