"""Base45 (RFC 9285): bytes as text in the QR alphanumeric set, 3 characters per 2 bytes."""

from __future__ import annotations

__all__ = ["ALPHABET", "b45decode", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def b45encode(data: bytes) -> str:
    """Encode ``data``: each 2 bytes ``n = 256a + b`` -> ``c + 45d + 2025e`` as ``c d e``;
    a final single byte -> two characters."""
    alphabet = ALPHABET
    out: list[str] = []
    for start in range(0, len(data) - 1, 2):
        n = data[start] * 256 + data[start + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (alphabet[c], alphabet[d], alphabet[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (alphabet[c], alphabet[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """Decode Base45; ``ValueError`` for a character outside the alphabet, a length of
    3k+1, or a group whose value does not fit its bytes."""
    size = len(text)
    if size % 3 == 1:
        raise ValueError(f"Base45 length {size} is 1 more than a multiple of 3")
    value = _VALUE
    out = bytearray()
    try:
        whole = size - size % 3
        for i in range(0, whole, 3):
            n = value[text[i]] + value[text[i + 1]] * 45 + value[text[i + 2]] * 2025
            if n > 0xFFFF:
                raise ValueError(f"Base45 group {i // 3} exceeds two bytes")
            out.append(n >> 8)
            out.append(n & 0xFF)
        if whole < size:
            n = value[text[whole]] + value[text[whole + 1]] * 45
            if n > 0xFF:
                raise ValueError("Base45 final pair exceeds one byte")
            out.append(n)
    except KeyError as exc:
        raise ValueError(f"character {exc.args[0]!r} is not in the Base45 alphabet") from None
    return bytes(out)
