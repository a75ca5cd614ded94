"""The two padding rules of FMCOS secure messaging.

* MAC input: ISO/IEC 9797-1 padding method 2 -- always ``80`` then ``00`` up to the block
  boundary, a whole extra block when the data is already aligned [FM-UM 11.3].
* Line encryption: ``LD || data`` and then ``80 00..`` *only if* that is not already
  block-aligned [FM-UM 11.4.1]; LD (one byte) tells the receiver where the data ends.

The unpad functions take an optional ``block_size``. With it they check the full layout
(length aligned, padding shorter than a block). Without it they accept any block size of
8 or 16 (the two this library knows).
"""

from __future__ import annotations

from .errors import CryptoError

__all__ = [
    "pad_iso9797_m2",
    "pad_line_encryption",
    "unpad_iso9797_m2",
    "unpad_line_encryption",
]

_KNOWN_BLOCK_SIZES = (8, 16)


def _check_block_size(block_size: int) -> None:
    if not 1 <= block_size <= 255:
        raise CryptoError(f"block_size must be 1..255, got {block_size}")


def _layout_ok(total: int, pad_len: int, block_size: int | None, *, m2: bool) -> bool:
    """Whether ``pad_len`` padding bytes at the end of ``total`` bytes fit a block size."""
    sizes = _KNOWN_BLOCK_SIZES if block_size is None else (block_size,)
    for bs in sizes:
        max_pad = bs if m2 else bs - 1
        if total % bs == 0 and pad_len <= max_pad:
            return True
    return False


def pad_iso9797_m2(data: bytes, block_size: int) -> bytes:
    """Append ``80`` and zeros to the next block boundary (always at least one byte)."""
    _check_block_size(block_size)
    zeros = (-(len(data) + 1)) % block_size
    return bytes(data) + b"\x80" + bytes(zeros)


def unpad_iso9797_m2(data: bytes, *, block_size: int | None = None) -> bytes:
    """Strip ISO/IEC 9797-1 method-2 padding; CryptoError if it is malformed."""
    if block_size is not None:
        _check_block_size(block_size)
    body = bytes(data).rstrip(b"\x00")
    if not body or body[-1] != 0x80:
        raise CryptoError(f"ISO 9797-1 method 2 padding: no 80 marker in {len(data)} bytes")
    pad_len = len(data) - len(body) + 1
    if not _layout_ok(len(data), pad_len, block_size, m2=True):
        raise CryptoError(
            f"ISO 9797-1 method 2 padding: {pad_len} pad bytes in {len(data)} bytes "
            f"do not fit block size {block_size or '8/16'}"
        )
    return body[:-1]


def pad_line_encryption(data: bytes, block_size: int) -> bytes:
    """``LD || data`` plus ``80 00..`` only when not already block-aligned (FMCOS 11.4.1)."""
    _check_block_size(block_size)
    if len(data) > 0xFF:
        raise CryptoError(f"line encryption: data is {len(data)} bytes, LD allows at most 255")
    body = bytes([len(data)]) + bytes(data)
    if len(body) % block_size == 0:
        return body
    return body + b"\x80" + bytes((-(len(body) + 1)) % block_size)


def unpad_line_encryption(data: bytes, *, block_size: int | None = None) -> bytes:
    """Cut the plaintext out of ``LD || data || [80 00..]``; CryptoError on inconsistency."""
    if block_size is not None:
        _check_block_size(block_size)
    if not data:
        raise CryptoError("line encryption: empty input, no LD byte")
    ld = data[0]
    end = 1 + ld
    if end > len(data):
        raise CryptoError(f"line encryption: LD={ld} but only {len(data) - 1} data bytes")
    pad = bytes(data[end:])
    if pad and (pad[0] != 0x80 or any(pad[1:])):
        raise CryptoError(f"line encryption: {len(pad)} bytes after LD={ld} are not 80 00..")
    if not _layout_ok(len(data), len(pad), block_size, m2=False):
        raise CryptoError(
            f"line encryption: LD={ld} with {len(pad)} pad bytes in {len(data)} bytes "
            f"does not fit block size {block_size or '8/16'}"
        )
    return bytes(data[1:end])
