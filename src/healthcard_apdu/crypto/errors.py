"""Exception type of the crypto layer."""

from __future__ import annotations

from healthcard_apdu.apdu.errors import HealthCardError

__all__ = ["CryptoError"]


class CryptoError(HealthCardError):
    """Invalid crypto input: bad key length, bad padding, point not on curve, ...

    Messages name the parameter and its length or shape, never key material.
    """
