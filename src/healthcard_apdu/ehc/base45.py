"""Base45 (RFC 9285): bytes as text in the QR alphanumeric set, 3 characters per 2 bytes."""

from __future__ import annotations

__all__ = ["ALPHABET", "b45decode", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    """Encode ``data``: each 2 bytes ``n = 256a + b`` -> ``c + 45d + 2025e`` as ``c d e``;
    a final single byte -> two characters."""
    out: list[str] = []
    for start in range(0, len(data) - 1, 2):
        n = data[start] * 256 + data[start + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode Base45; ``ValueError`` for a character outside the alphabet, a length of
    3k+1, or a group whose value does not fit its bytes."""
    try:
        values = [_VALUE[c] for c in text]
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the Base45 alphabet") from None
    if len(values) % 3 == 1:
        raise ValueError(f"Base45 length {len(values)} is 1 more than a multiple of 3")
    out = bytearray()
    for start in range(0, len(values), 3):
        group = values[start : start + 3]
        n = sum(v * 45**i for i, v in enumerate(group))
        if len(group) == 3:
            if n > 0xFFFF:
                raise ValueError(f"Base45 group {start // 3} exceeds two bytes")
            out += n.to_bytes(2, "big")
        else:
            if n > 0xFF:
                raise ValueError("Base45 final pair exceeds one byte")
            out.append(n)
    return bytes(out)
