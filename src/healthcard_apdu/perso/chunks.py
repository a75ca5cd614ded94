"""Fewest UPDATE BINARY commands for a file image (and, among those, the fewest bytes).

A new binary EF already holds ``fill`` (00 on the simulated COS), so only bytes that differ
need writing. Each command writes one contiguous range of at most ``window`` bytes. Among
all ways to cover the differing bytes with the fewest ranges, :func:`cover` picks one that
sends the fewest bytes; docs/profiles.md uses it as the definition of the minimum.
"""

from __future__ import annotations

import functools
from collections import deque

__all__ = ["cover"]


def cover(data: bytes, fill: int | None, window: int) -> list[tuple[int, int]]:
    """Ranges ``(offset, length)`` covering every byte of ``data`` that differs from ``fill``
    (every byte when ``fill`` is None), lexicographically minimal in (count, total length)."""
    return list(_cover(bytes(data), fill, window))


@functools.lru_cache(maxsize=64)
def _cover(data: bytes, fill: int | None, window: int) -> tuple[tuple[int, int], ...]:
    if window < 1:
        raise ValueError(f"window must be positive, got {window}")
    if fill is None:
        return tuple((o, min(window, len(data) - o)) for o in range(0, len(data), window))
    positions = [i for i, b in enumerate(data) if b != fill]
    n = len(positions)
    if n == 0:
        return ()
    # best[j] = (count, bytes) to cover the first j positions; start[j] = first position index
    # (1-based) of the last range in that optimum. A range covering positions i..j costs
    # (1, p[j] - p[i] + 1); the sliding-window minimum over i of (best[i-1].count,
    # best[i-1].bytes - p[i]) gives best[j] in O(n).
    best: list[tuple[int, int]] = [(0, 0)] * (n + 1)
    start = [0] * (n + 1)
    window_min: deque[int] = deque()

    def key(i: int) -> tuple[int, int]:
        count, total = best[i - 1]
        return count, total - positions[i - 1]

    for j in range(1, n + 1):
        candidate = key(j)
        while window_min and key(window_min[-1]) >= candidate:
            window_min.pop()
        window_min.append(j)
        end = positions[j - 1]
        while end - positions[window_min[0] - 1] >= window:
            window_min.popleft()
        first = window_min[0]
        count, total = key(first)
        best[j] = (count + 1, total + end + 1)
        start[j] = first
    ranges: list[tuple[int, int]] = []
    j = n
    while j > 0:
        i = start[j]
        ranges.append((positions[i - 1], positions[j - 1] - positions[i - 1] + 1))
        j = i - 1
    ranges.reverse()
    return tuple(ranges)
