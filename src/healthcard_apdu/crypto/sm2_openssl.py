"""SM2 verification in the system's OpenSSL 3 libcrypto (ctypes): the optional compiled path.

``cryptography`` exposes no SM2, so this module calls libcrypto's stable EVP API directly:
``d2i_PUBKEY`` (a SubjectPublicKeyInfo with the SM2 curve gives an SM2 key),
``EVP_PKEY_verify_init`` (once per key and context, the contexts are kept) and
``EVP_PKEY_verify`` over the digest e = SM3(Z_A || M), which :mod:`healthcard_apdu.crypto.sm2`
computes as before. ctypes releases the GIL during each call, so threads that verify at the
same time run in parallel.

Only the standard curve (sm2p256v1) goes this way, and only after a known-answer self-test
(the GM/T 0003.5 signature of ``test_vectors/sm2.json`` verifies, the same signature over a
changed digest does not) passed in this process. Without a libcrypto 3, without SM2 in it
(some distributions build OpenSSL without SM2) or when the self-test fails, :func:`available`
is False and the pure-Python verification is used; ``HEALTHCARD_SM2_BACKEND=python`` chooses
it on purpose. docs/crypto.md ("The compiled verification") gives the reasons and the figures.

Signing is not done here (the pure-Python signer is as fast and keeps RFC 6979 nonces);
:func:`sign_digest_random_nonce` exists for the differential tests only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections import OrderedDict
from typing import Any

__all__ = [
    "BACKEND_ENV",
    "available",
    "problem",
    "sign_digest_random_nonce",
    "verify_digest",
]

BACKEND_ENV = "HEALTHCARD_SM2_BACKEND"
"""Environment variable: ``auto`` (default), ``python`` (never libcrypto) or ``openssl``."""

Point = tuple[int, int]

#: SubjectPublicKeyInfo up to the point: id-ecPublicKey with the named curve sm2p256v1
#: (1.2.156.10197.1.301), then a BIT STRING of 66 bytes (no unused bits, 04 || X || Y).
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d034200")
#: PKCS #8 PrivateKeyInfo (the same algorithm) holding a SEC 1 ECPrivateKey, up to d.
_PKCS8_PREFIX = bytes.fromhex(
    "3041020100301306072a8648ce3d020106082a811ccf5501822d042730250201010420"
)
_SIZE = 32
_MAX_KEYS = 64
_LIBRARY_NAMES = ("libcrypto.so.3", "libcrypto.3.dylib", "libcrypto-3-x64.dll", "libcrypto-3.dll")

# the GM/T 0003.5-2012 example (test_vectors/sm2.json, "sm2-gmt0003.5-sm2p256v1")
_KAT_PUBLIC = (
    0x09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020,
    0xCCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13,
)
_KAT_E = bytes.fromhex("F0B43E94BA45ACCAACE692ED534382EB17E6AB5A19CE7B31F4486FDFC0D28640")
_KAT_SIGNATURE = bytes.fromhex(
    "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
    "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
)


class _Library:
    """The libcrypto functions used, with their C signatures."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, cp, size, c_int = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int
        decode = (vp, ctypes.POINTER(cp), ctypes.c_long)
        self.d2i_PUBKEY: Any = _function(lib, "d2i_PUBKEY", vp, *decode)
        self.d2i_AutoPrivateKey: Any = _function(lib, "d2i_AutoPrivateKey", vp, *decode)
        self.EVP_PKEY_free: Any = _function(lib, "EVP_PKEY_free", None, vp)
        self.EVP_PKEY_CTX_new: Any = _function(lib, "EVP_PKEY_CTX_new", vp, vp, vp)
        self.EVP_PKEY_CTX_free: Any = _function(lib, "EVP_PKEY_CTX_free", None, vp)
        self.EVP_PKEY_verify_init: Any = _function(lib, "EVP_PKEY_verify_init", c_int, vp)
        self.EVP_PKEY_verify: Any = _function(lib, "EVP_PKEY_verify", c_int, vp, cp, size, cp, size)
        self.EVP_PKEY_sign_init: Any = _function(lib, "EVP_PKEY_sign_init", c_int, vp)
        self.EVP_PKEY_sign: Any = _function(
            lib, "EVP_PKEY_sign", c_int, vp, cp, ctypes.POINTER(size), cp, size
        )
        self.ERR_clear_error: Any = _function(lib, "ERR_clear_error", None)


def _function(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)
    return function


_LOAD_LOCK = threading.Lock()
_KEYS_LOCK = threading.Lock()
_LOADED: list[_Library | None] = []  # empty until loaded, then [the library or None]
_PROBLEM: list[str] = [""]
_MAX_IDLE = 4  # verification contexts kept per key (one per thread that verifies at once)


class _Key:
    """A public key in libcrypto (one reference) and its idle verification contexts."""

    __slots__ = ("idle", "pkey")

    def __init__(self, pkey: int) -> None:
        self.pkey = pkey
        self.idle: list[int] = []


_KEYS: OrderedDict[Point, _Key] = OrderedDict()


def _load() -> _Library | None:
    """The library after its self-test, or None (the reason in ``_PROBLEM``)."""
    choice = os.environ.get(BACKEND_ENV, "auto").strip().lower() or "auto"
    if choice == "python":
        _PROBLEM[0] = f"{BACKEND_ENV}=python"
        return None
    names = list(_LIBRARY_NAMES)
    found = ctypes.util.find_library("crypto")
    if found:
        names.append(found)
    errors = []
    for name in names:
        try:
            library = _Library(ctypes.CDLL(name))
        except (OSError, AttributeError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        try:
            passed = _verify(library, _KAT_PUBLIC, _KAT_E, _KAT_SIGNATURE) and not _verify(
                library, _KAT_PUBLIC, bytes(_SIZE), _KAT_SIGNATURE
            )
        except OSError as exc:
            passed = False
            errors.append(f"{name}: {exc}")
        finally:
            _forget_keys(library)
        if passed:
            return library
        errors.append(f"{name}: the SM2 known-answer self-test failed (no SM2 in this build?)")
    _PROBLEM[0] = "; ".join(errors) or "no libcrypto found"
    return None


def _library() -> _Library | None:
    if not _LOADED:
        with _LOAD_LOCK:
            if not _LOADED:
                _LOADED.append(_load())
    return _LOADED[0]


def available() -> bool:
    """True when SM2 verifications go through libcrypto (loaded and self-tested)."""
    return _library() is not None


def problem() -> str:
    """Why libcrypto is not used ("" when it is)."""
    return "" if available() else _PROBLEM[0]


def _free_key(library: _Library, key: _Key) -> None:
    for context in key.idle:
        library.EVP_PKEY_CTX_free(context)
    key.idle.clear()
    library.EVP_PKEY_free(key.pkey)  # contexts in use hold their own reference


def _forget_keys(library: _Library) -> None:
    with _KEYS_LOCK:
        while _KEYS:
            _free_key(library, _KEYS.popitem()[1])


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(_SIZE + 1, "big").lstrip(b"\x00")
    if not body or body[0] & 0x80:
        body = b"\x00" + body
    return b"\x02" + bytes((len(body),)) + body


def _der_signature(signature: bytes) -> bytes:
    body = _der_integer(int.from_bytes(signature[:_SIZE], "big")) + _der_integer(
        int.from_bytes(signature[_SIZE:], "big")
    )
    return b"\x30" + bytes((len(body),)) + body


def _take_context(library: _Library, public: Point) -> tuple[_Key, int]:
    """A verification context for ``public``: an idle one, else a new one set up for
    verification (EVP_PKEY_verify may run many times after one EVP_PKEY_verify_init)."""
    with _KEYS_LOCK:
        key = _KEYS.get(public)
        if key is None:
            x, y = (value.to_bytes(_SIZE, "big") for value in public)
            der = _SPKI_PREFIX + b"\x04" + x + y
            cursor = ctypes.c_char_p(der)
            pkey = library.d2i_PUBKEY(None, ctypes.byref(cursor), len(der))
            if not pkey:
                library.ERR_clear_error()
                raise OSError("libcrypto refused the SM2 public key")
            key = _KEYS[public] = _Key(pkey)
            if len(_KEYS) > _MAX_KEYS:
                _free_key(library, _KEYS.popitem(last=False)[1])
        else:
            _KEYS.move_to_end(public)
        if key.idle:
            return key, key.idle.pop()
        context = library.EVP_PKEY_CTX_new(key.pkey, None)  # holds a reference to the key
    if not context:
        raise OSError("EVP_PKEY_CTX_new failed")
    if library.EVP_PKEY_verify_init(context) != 1:
        library.EVP_PKEY_CTX_free(context)
        library.ERR_clear_error()
        raise OSError("EVP_PKEY_verify_init failed for an SM2 key")
    return key, int(context)


def _give_back(library: _Library, public: Point, key: _Key, context: int) -> None:
    with _KEYS_LOCK:
        if _KEYS.get(public) is key and len(key.idle) < _MAX_IDLE:
            key.idle.append(context)
            return
    library.EVP_PKEY_CTX_free(context)


def _verify(library: _Library, public: Point, e: bytes, signature: bytes) -> bool:
    return _prepare(library, public, e, signature).run()


def verify_digest(public: Point, e: bytes, signature: bytes) -> bool:
    """libcrypto's SM2 check of r || s (64 bytes, 1 <= r, s < n already checked) against the
    32-byte digest ``e`` under ``public`` (a point of sm2p256v1, already checked). The curve
    arithmetic runs with the GIL released.

    Raises :class:`OSError` when libcrypto is not usable (see :func:`available`)."""
    library = _library()
    if library is None:
        raise OSError(f"libcrypto SM2 is not available: {_PROBLEM[0]}")
    return _prepare(library, public, e, signature).run()


class _Check:
    """A verification set up in libcrypto (key, context, DER signature): :meth:`run` is the
    one foreign call that does the curve arithmetic, with the GIL released."""

    __slots__ = ("_context", "_der", "_e", "_key", "_library", "_public")

    def __init__(
        self, library: _Library, public: Point, key: _Key, context: int, der: bytes, e: bytes
    ) -> None:
        self._library = library
        self._public = public
        self._key = key
        self._context: int | None = context
        self._der = der
        self._e = e

    def run(self) -> bool:
        """The answer (once); the context goes back to its key's idle ones."""
        context, self._context = self._context, None
        if context is None:
            raise OSError("this SM2 check has already run")
        library = self._library
        result = library.EVP_PKEY_verify(context, self._der, len(self._der), self._e, len(self._e))
        if result == 1:
            _give_back(library, self._public, self._key, context)
            return True
        library.ERR_clear_error()
        library.EVP_PKEY_CTX_free(context)  # not reused after a failure
        return False

    def __del__(self) -> None:  # a check that never ran gives its context back
        if self._context is not None:
            _give_back(self._library, self._public, self._key, self._context)


def _prepare(library: _Library, public: Point, e: bytes, signature: bytes) -> _Check:
    der = _der_signature(signature)
    key, context = _take_context(library, public)
    return _Check(library, public, key, context, der, bytes(e))


def sign_digest_random_nonce(d: int, e: bytes) -> bytes:
    """libcrypto's SM2 signature r || s of the digest ``e`` with private key ``d`` (a random
    nonce): for the differential tests only, the product signs in Python."""
    library = _library()
    if library is None:
        raise OSError(f"libcrypto SM2 is not available: {_PROBLEM[0]}")
    der = _PKCS8_PREFIX + d.to_bytes(_SIZE, "big")
    cursor = ctypes.c_char_p(der)
    pkey = library.d2i_AutoPrivateKey(None, ctypes.byref(cursor), len(der))
    if not pkey:
        library.ERR_clear_error()
        raise OSError("libcrypto refused the SM2 private key")
    try:
        context = library.EVP_PKEY_CTX_new(pkey, None)
        try:
            if library.EVP_PKEY_sign_init(context) != 1:
                raise OSError("EVP_PKEY_sign_init failed for an SM2 key")
            out = ctypes.create_string_buffer(80)
            length = ctypes.c_size_t(len(out))
            if library.EVP_PKEY_sign(context, out, ctypes.byref(length), e, len(e)) != 1:
                library.ERR_clear_error()
                raise OSError("EVP_PKEY_sign failed")
        finally:
            library.EVP_PKEY_CTX_free(context)
    finally:
        library.EVP_PKEY_free(pkey)
    return _from_der_signature(out.raw[: length.value])


def _from_der_signature(der: bytes) -> bytes:
    """r || s from SEQUENCE { INTEGER r, INTEGER s } (short lengths, as SM2 gives)."""
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2:
        raise OSError("libcrypto gave a malformed SM2 signature")
    values, position = [], 2
    for _ in range(2):
        if der[position] != 0x02:
            raise OSError("libcrypto gave a malformed SM2 signature")
        length = der[position + 1]
        values.append(int.from_bytes(der[position + 2 : position + 2 + length], "big"))
        position += 2 + length
    return values[0].to_bytes(_SIZE, "big") + values[1].to_bytes(_SIZE, "big")
