"""SM3 hash (GB/T 32905) via ``cryptography``."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes

__all__ = ["SM3_DIGEST_SIZE", "sm3"]

SM3_DIGEST_SIZE = 32


def sm3(data: bytes) -> bytes:
    """SM3 digest of ``data`` (32 bytes)."""
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()
