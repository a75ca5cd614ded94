"""SM2 digital signatures (GB/T 32918.2 / GM/T 0003.2) on plain Python integers.

Points use Jacobian coordinates. Multiples of the generator use a signed comb table built once
per curve (public data); verification adds u2 * P from a comb table cached per public key once
that key is seen a second time (bounded LRU), else from a width-5 NAF, and compares x without
an inversion. docs/crypto.md gives the design and the figures. SM3 comes from ``cryptography``.
On the standard curve, verification goes through the system's libcrypto when it is there and
passes its self-test (:mod:`healthcard_apdu.crypto.sm2_openssl`); this module stays the
fallback and the reference (``backend="python"``).

Signing and key derivation run a fixed sequence of mixed additions whatever the scalar (odd
digits only, no zero window skipped, negative table entries precomputed, parity fixed by
arithmetic). This is still not constant-time: table indices follow the secret digits, and
Python's integer arithmetic takes value-dependent time. It is meant for tests, simulation and
personalization hosts, not for hostile shared environments.
"""

from __future__ import annotations

import hmac
import operator
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from . import sm2_openssl
from .errors import CryptoError
from .sm3 import sm3

__all__ = [
    "DEFAULT_SM2_USER_ID",
    "SM2P256V1",
    "SM2_GBT32918_TEST_CURVE",
    "Sm2Curve",
    "sm2_backend",
    "sm2_clear_caches",
    "sm2_decode_public",
    "sm2_encode_public",
    "sm2_generate_private",
    "sm2_public_key",
    "sm2_sign",
    "sm2_sign_digest",
    "sm2_verify",
    "sm2_verify_digest",
    "sm2_za",
]

DEFAULT_SM2_USER_ID = b"1234567812345678"

Point = tuple[int, int]
_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)
_BASE_WINDOW = 8  # generator comb: 33 rows of 256 points on 256-bit curves (~1.5 MB, once)
_KEY_WINDOW = 7  # comb of a public key seen again: 37 rows of 128 points (~0.8 MB per key)
_WNAF_WINDOW = 5  # public keys seen for the first time
_MAX_CACHED_KEYS = 8
_MAX_SEEN_KEYS = 256


@dataclass(frozen=True)
class Sm2Curve:
    """Short Weierstrass curve y^2 = x^3 + ax + b over F_p with generator (gx, gy) of order n."""

    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    def __post_init__(self) -> None:
        if not _on_curve(self, (self.gx, self.gy)):
            raise CryptoError("SM2 curve: generator is not on the curve")

    @property
    def byte_length(self) -> int:
        """Length of one coordinate / scalar in bytes (32 for 256-bit curves)."""
        return (self.p.bit_length() + 7) // 8

    @property
    def generator(self) -> Point:
        return (self.gx, self.gy)


def _on_curve(curve: Sm2Curve, point: Point) -> bool:
    x, y = point
    p = curve.p
    if not (0 <= x < p and 0 <= y < p):
        return False
    return (y * y - (x * x * x + curve.a * x + curve.b)) % p == 0


SM2P256V1 = Sm2Curve(
    p=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF,
    a=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC,
    b=0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93,
    gx=0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7,
    gy=0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0,
    n=0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123,
)
"""The standard SM2 curve (GB/T 32918.5 / GM/T 0003.5)."""

SM2_GBT32918_TEST_CURVE = Sm2Curve(
    p=0x8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3,
    a=0x787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498,
    b=0x63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A,
    gx=0x421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D,
    gy=0x0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2,
    n=0x8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7,
)
"""The Fp-256 example curve of GB/T 32918.2-2016 Annex A (for known-answer tests only)."""


# --- point arithmetic (Jacobian: x = X/Z^2, y = Y/Z^3) ----------------------------------
#
# Scalar multiples of G and of public keys seen again use signed fixed-window comb tables:
# row i holds the odd multiples +-1, +-3, ..., +-(2^w - 1) of 2^(w*i) * B in affine form, so a
# multiple k*B costs one mixed addition per row and no doubling. The scalar is first made odd
# (k + n when k is even, by arithmetic rather than a branch) and recoded into odd digits
# (never zero), so every row contributes exactly one addition: the sequence of operations
# does not depend on the scalar. Public keys seen for the first time use a width-5 NAF.


def _double(pt: _Jacobian, curve: Sm2Curve) -> _Jacobian:
    x1, y1, z1 = pt
    if z1 == 0 or y1 == 0:
        return _INFINITY
    p = curve.p
    yy = y1 * y1 % p
    s = 4 * x1 * yy % p
    zz = z1 * z1 % p
    a_is_minus_3 = curve.a == p - 3
    m = 3 * (x1 - zz) * (x1 + zz) % p if a_is_minus_3 else (3 * x1 * x1 + curve.a * zz * zz) % p
    x3 = (m * m - 2 * s) % p
    y3 = (m * (s - x3) - 8 * yy * yy) % p
    return (x3, y3, 2 * y1 * z1 % p)


def _add_affine(pt: _Jacobian, q: Point, curve: Sm2Curve) -> _Jacobian:
    """Jacobian + affine (mixed addition), complete (doubling and infinity handled)."""
    x1, y1, z1 = pt
    if z1 == 0:
        return (q[0], q[1], 1)
    p = curve.p
    z1z1 = z1 * z1 % p
    h = (q[0] * z1z1 - x1) % p
    r = (q[1] * z1 * z1z1 - y1) % p
    if h == 0:
        return _double(pt, curve) if r == 0 else _INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - y1 * hhh) % p
    return (x3, y3, z1 * h % p)


def _add(pt: _Jacobian, other: _Jacobian, curve: Sm2Curve) -> _Jacobian:
    """Jacobian + Jacobian."""
    if other[2] == 0:
        return pt
    if pt[2] == 0:
        return other
    p = curve.p
    x1, y1, z1 = pt
    x2, y2, z2 = other
    z1z1 = z1 * z1 % p
    z2z2 = z2 * z2 % p
    u1 = x1 * z2z2 % p
    s1 = y1 * z2 * z2z2 % p
    h = (x2 * z1z1 - u1) % p
    r = (y2 * z1 * z1z1 - s1) % p
    if h == 0:
        return _double(pt, curve) if r == 0 else _INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    y3 = (r * (v - x3) - s1 * hhh) % p
    return (x3, y3, z1 * z2 * h % p)


def _to_affine(pt: _Jacobian, curve: Sm2Curve) -> Point | None:
    x, y, z = pt
    if z == 0:
        return None
    p = curve.p
    z_inv = pow(z, -1, p)
    z_inv2 = z_inv * z_inv % p
    return (x * z_inv2 % p, y * z_inv2 * z_inv % p)


def _finite(pt: _Jacobian, curve: Sm2Curve) -> Point:
    """Affine form of a point that cannot be infinity for valid inputs."""
    point = _to_affine(pt, curve)
    if point is None:
        raise CryptoError("SM2: unexpected point at infinity")
    return point


def _normalize(points: Sequence[_Jacobian], p: int) -> list[Point]:
    """Affine forms of finite Jacobian points with one inversion (Montgomery's trick)."""
    prefix = []
    acc = 1
    for point in points:
        acc = acc * point[2] % p
        prefix.append(acc)
    inverse = pow(acc, -1, p)
    out: list[Point] = [(0, 0)] * len(points)
    for index in range(len(points) - 1, -1, -1):
        x, y, z = points[index]
        z_inv = inverse * prefix[index - 1] % p if index else inverse
        inverse = inverse * z % p
        z_inv2 = z_inv * z_inv % p
        out[index] = (x * z_inv2 % p, y * z_inv2 * z_inv % p)
    return out


def _accumulate(acc: _Jacobian, points: Iterable[Point], curve: Sm2Curve) -> _Jacobian:
    """acc + sum(points) by mixed additions (the hot loop, inlined)."""
    p = curve.p
    x1, y1, z1 = acc
    for x2, y2 in points:
        if z1 == 0:
            x1, y1, z1 = x2, y2, 1
            continue
        z1z1 = z1 * z1 % p
        h = (x2 * z1z1 - x1) % p
        r = (y2 * z1 * z1z1 - y1) % p
        if h == 0:  # acc == +-point: only for crafted inputs, never for a valid signature
            x1, y1, z1 = _add_affine((x1, y1, z1), (x2, y2), curve)
            continue
        hh = h * h % p
        hhh = h * hh % p
        v = x1 * hh % p
        x1 = (r * r - hhh - 2 * v) % p
        y1 = (r * (v - x1) - y1 * hhh) % p
        z1 = z1 * h % p
    return (x1, y1, z1)


_Comb = tuple[int, list[list[Point]]]
"""(window bits w, rows): rows[i][j] = (2j + 1 - 2^w) * 2^(w*i) * B, i.e. odd digits
-(2^w - 1) .. 2^w - 1 in order."""


def _comb_rows(curve: Sm2Curve, window: int) -> int:
    """Rows needed for any odd scalar below 2n (see :func:`_comb_indices`)."""
    return -(-(curve.n.bit_length() + 2) // window)


def _add_many(left: Sequence[Point], right: Sequence[Point], p: int) -> list[Point]:
    """Affine sums left[i] + right[i] with one shared inversion (Montgomery's trick).

    The points of a pair must have different x (true wherever the tables use it).
    """
    denominators = [(q[0] - pt[0]) % p for pt, q in zip(left, right, strict=True)]
    prefix = []
    acc = 1
    for value in denominators:
        acc = acc * value % p
        prefix.append(acc)
    if acc == 0:
        raise CryptoError("SM2: table points collide")  # pragma: no cover - impossible
    inverse = pow(acc, -1, p)
    out: list[Point] = [(0, 0)] * len(left)
    for index in range(len(left) - 1, -1, -1):
        d_inv = inverse * prefix[index - 1] % p if index else inverse
        inverse = inverse * denominators[index] % p
        x1, y1 = left[index]
        x2, y2 = right[index]
        lam = (y2 - y1) * d_inv % p
        x3 = (lam * lam - x1 - x2) % p
        out[index] = (x3, (lam * (x1 - x3) - y1) % p)
    return out


def _comb_table(base: Point, window: int, curve: Sm2Curve) -> _Comb:
    """The signed odd-multiple comb table of ``base`` (public data).

    All rows are built side by side in affine form: one shared inversion per odd multiple.
    """
    p = curve.p
    count = _comb_rows(curve, window)
    bases_jacobian: list[_Jacobian] = [(base[0], base[1], 1)]
    for _ in range(count - 1):
        point = bases_jacobian[-1]
        for _ in range(window):
            point = _double(point, curve)
        bases_jacobian.append(point)
    bases = _normalize(bases_jacobian, p)  # 2^(w*i) * base
    twice = _normalize([_double((x, y, 1), curve) for x, y in bases], p)
    columns = [bases]  # columns[j][i] = (2j + 1) * 2^(w*i) * base
    for _ in range((1 << (window - 1)) - 1):
        columns.append(_add_many(columns[-1], twice, p))
    rows: list[list[Point]] = []
    for index in range(count):
        positive = [column[index] for column in columns]
        rows.append([(x, p - y) for x, y in reversed(positive)] + positive)
    return (window, rows)


def _comb_indices(k: int, window: int, count: int, n: int) -> list[int]:
    """Row indices of k*B: the regular odd-digit recoding of k (or k + n when k is even).

    Every digit is odd, so every row is used; the parity fix is arithmetic (no branch).
    """
    k += n * (1 - (k & 1))
    mask = (1 << (window + 1)) - 1
    half = 1 << window
    indices = []
    for _ in range(count - 1):
        low = k & mask  # odd; the digit is low - 2^w
        indices.append((low - 1) >> 1)
        k = (k - low + half) >> window
    if not 0 < k < half:
        raise CryptoError("SM2 scalar is wider than the curve order")
    indices.append((k + half - 1) >> 1)
    return indices


def _comb_mult(k: int, comb: _Comb, curve: Sm2Curve, acc: _Jacobian = _INFINITY) -> _Jacobian:
    """acc + k * B for the base B of ``comb`` (one mixed addition per row)."""
    window, rows = comb
    indices = _comb_indices(k, window, len(rows), curve.n)
    return _accumulate(acc, map(operator.getitem, rows, indices), curve)


def _wnaf(k: int, window: int) -> list[int]:
    """Width-w NAF digits of k > 0, least significant first."""
    digits = []
    full = 1 << window
    half = full >> 1
    while k:
        if k & 1:
            digit = k & (full - 1)
            if digit >= half:
                digit -= full
            k -= digit
        else:
            digit = 0
        digits.append(digit)
        k >>= 1
    return digits


def _wnaf_mult(k: int, base: Point, curve: Sm2Curve) -> _Jacobian:
    """k * base for a point without a cached table: width-5 NAF, doublings inlined."""
    p = curve.p
    twice = _finite(_double((base[0], base[1], 1), curve), curve)
    odd = [(base[0], base[1], 1)]
    for _ in range((1 << (_WNAF_WINDOW - 2)) - 1):
        odd.append(_add_affine(odd[-1], twice, curve))
    positive = _normalize(odd, p)
    table: dict[int, Point] = {}
    for index, (x, y) in enumerate(positive):
        table[2 * index + 1] = (x, y)
        table[-2 * index - 1] = (x, p - y)
    minus_3 = curve.a == p - 3
    x1, y1, z1 = _INFINITY
    for digit in reversed(_wnaf(k, _WNAF_WINDOW)):
        if z1:
            if minus_3 and y1:
                yy = y1 * y1 % p
                s = 4 * x1 * yy % p
                zz = z1 * z1 % p
                m = 3 * (x1 - zz) * (x1 + zz) % p
                z1 = 2 * y1 * z1 % p
                x1 = (m * m - 2 * s) % p
                y1 = (m * (s - x1) - 8 * yy * yy) % p
            else:
                x1, y1, z1 = _double((x1, y1, z1), curve)
        if digit:
            x1, y1, z1 = _add_affine((x1, y1, z1), table[digit], curve)
    return (x1, y1, z1)


_BASE_TABLES: dict[Sm2Curve, _Comb] = {}
_MAX_CACHED_CURVES = 4
_KEY_TABLES: OrderedDict[tuple[Sm2Curve, Point], _Comb] = OrderedDict()
_SEEN_KEYS: OrderedDict[tuple[Sm2Curve, Point], None] = OrderedDict()
_ZA_CACHE: dict[tuple[Sm2Curve, Point, bytes], bytes] = {}
_CACHE_LOCK = threading.Lock()


def _base_table(curve: Sm2Curve) -> _Comb:
    """The generator's comb table; public data, built once per curve (bounded)."""
    table = _BASE_TABLES.get(curve)
    if table is None:
        table = _comb_table(curve.generator, _BASE_WINDOW, curve)
        with _CACHE_LOCK:
            if len(_BASE_TABLES) >= _MAX_CACHED_CURVES:
                _BASE_TABLES.clear()
            _BASE_TABLES[curve] = table
    return table


def _base_mult(k: int, curve: Sm2Curve) -> _Jacobian:
    """k * G (0 < k < n) with the generator table: a fixed sequence of mixed additions."""
    return _comb_mult(k, _base_table(curve), curve)


def _key_table(public: Point, curve: Sm2Curve) -> _Comb | None:
    """The cached comb table of a public key seen before; None the first time it is seen.

    Keys (public data) are remembered in bounded LRU maps: the second verification under a
    key builds its table, later ones reuse it.
    """
    key = (curve, public)
    with _CACHE_LOCK:
        table = _KEY_TABLES.get(key)
        if table is not None:
            _KEY_TABLES.move_to_end(key)
            return table
        if key not in _SEEN_KEYS:
            _SEEN_KEYS[key] = None
            if len(_SEEN_KEYS) > _MAX_SEEN_KEYS:
                _SEEN_KEYS.popitem(last=False)
            return None
        del _SEEN_KEYS[key]
    table = _comb_table(public, _KEY_WINDOW, curve)
    with _CACHE_LOCK:
        _KEY_TABLES[key] = table
        if len(_KEY_TABLES) > _MAX_CACHED_KEYS:
            _KEY_TABLES.popitem(last=False)
    return table


def sm2_clear_caches() -> None:
    """Forget the cached generator and public-key tables (they are rebuilt when needed)."""
    with _CACHE_LOCK:
        _BASE_TABLES.clear()
        _KEY_TABLES.clear()
        _SEEN_KEYS.clear()
        _ZA_CACHE.clear()


# --- keys ----------------------------------------------------------------------------


def _check_private(d: int, curve: Sm2Curve) -> None:
    if not 1 <= d <= curve.n - 2:
        raise CryptoError("SM2 private key out of range [1, n-2]")


def _check_public(public: Point, curve: Sm2Curve) -> None:
    if not _on_curve(curve, public):
        raise CryptoError("SM2 public key is not a point on the curve")


def sm2_generate_private(curve: Sm2Curve = SM2P256V1) -> int:
    """Random private key d in [1, n-2] (``secrets``)."""
    return secrets.randbelow(curve.n - 2) + 1


def sm2_public_key(d: int, curve: Sm2Curve = SM2P256V1) -> Point:
    """Public key P = d * G."""
    _check_private(d, curve)
    return _finite(_base_mult(d, curve), curve)


def sm2_encode_public(public: Point, curve: Sm2Curve = SM2P256V1) -> bytes:
    """Uncompressed encoding 04 || X || Y (65 bytes on 256-bit curves)."""
    _check_public(public, curve)
    size = curve.byte_length
    return b"\x04" + public[0].to_bytes(size, "big") + public[1].to_bytes(size, "big")


def sm2_decode_public(data: bytes, curve: Sm2Curve = SM2P256V1) -> Point:
    """Parse 04 || X || Y; CryptoError unless it is a point on the curve."""
    size = curve.byte_length
    if len(data) != 1 + 2 * size or data[0] != 0x04:
        raise CryptoError(
            f"SM2 public key must be 04||X||Y ({1 + 2 * size} bytes), got {len(data)} bytes"
            f" starting {data[:1].hex() or 'empty'}"
        )
    point = (int.from_bytes(data[1 : 1 + size], "big"), int.from_bytes(data[1 + size :], "big"))
    _check_public(point, curve)
    return point


# --- signatures ----------------------------------------------------------------------


def sm2_za(
    public: Point, user_id: bytes = DEFAULT_SM2_USER_ID, curve: Sm2Curve = SM2P256V1
) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || xG || yG || xA || yA) (public data; the last
    values are remembered, bounded)."""
    key = (curve, public, bytes(user_id))
    za = _ZA_CACHE.get(key)
    if za is not None:
        return za
    _check_public(public, curve)
    bits = len(user_id) * 8
    if bits > 0xFFFF:
        raise CryptoError(f"SM2 user ID is {len(user_id)} bytes, at most 8191 allowed")
    size = curve.byte_length
    fields = (curve.a, curve.b, curve.gx, curve.gy, public[0], public[1])
    za = sm3(
        bits.to_bytes(2, "big") + bytes(user_id) + b"".join(v.to_bytes(size, "big") for v in fields)
    )
    if len(_ZA_CACHE) >= _MAX_SEEN_KEYS:
        _ZA_CACHE.clear()
    _ZA_CACHE[key] = za
    return za


def rfc6979_nonces(private: int, digest: bytes, order: int) -> Iterator[int]:
    """Deterministic nonce candidates per RFC 6979 §3.2 with HMAC-SHA256, in order.

    The generation depends only on the private key, the digest and the group order, so it
    serves SM2 as it serves ECDSA; a candidate the signature rejects is replaced by the next.
    """
    qlen = order.bit_length()
    rolen = (qlen + 7) // 8

    def bits2int(data: bytes) -> int:
        value = int.from_bytes(data, "big")
        return value >> max(0, 8 * len(data) - qlen)

    def mac(key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, "sha256")

    x = private.to_bytes(rolen, "big")
    h = (bits2int(digest) % order).to_bytes(rolen, "big")
    v, key = b"\x01" * 32, b"\x00" * 32
    key = mac(key, v + b"\x00" + x + h)
    v = mac(key, v)
    key = mac(key, v + b"\x01" + x + h)
    v = mac(key, v)
    while True:
        t = b""
        while len(t) < rolen:
            v = mac(key, v)
            t += v
        candidate = bits2int(t[:rolen])
        if 1 <= candidate < order:
            yield candidate
        key = mac(key, v + b"\x00")
        v = mac(key, v)


def sm2_sign_digest(
    d: int,
    e: bytes,
    *,
    k: int | None = None,
    deterministic: bool = False,
    curve: Sm2Curve = SM2P256V1,
) -> bytes:
    """Sign a precomputed e = SM3(Z_A || M); returns r || s (64 bytes on 256-bit curves).

    ``k`` fixes the nonce (known-answer tests only); ``deterministic`` derives it from the key
    and the digest (RFC 6979, so the same record always gets the same signature); otherwise
    it is drawn with ``secrets``.
    """
    _check_private(d, curve)
    if not e:
        raise CryptoError("SM2 digest e is empty")
    n = curve.n
    e_int = int.from_bytes(e, "big")
    d_inv = pow(1 + d, -1, n)
    candidates = rfc6979_nonces(d, e, n) if deterministic and k is None else None
    while True:
        if k is not None:
            nonce = k
        elif candidates is not None:
            nonce = next(candidates)
        else:
            nonce = secrets.randbelow(n - 1) + 1
        if not 1 <= nonce < n:
            raise CryptoError("SM2 nonce k out of range [1, n-1]")
        x1 = _finite(_base_mult(nonce, curve), curve)[0]
        r = (e_int + x1) % n
        s = d_inv * (nonce - r * d) % n
        if r != 0 and r + nonce != n and s != 0:
            size = curve.byte_length
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if k is not None:
            raise CryptoError("SM2 nonce k gives a degenerate signature; choose another k")


def sm2_sign(
    d: int,
    message: bytes,
    user_id: bytes = DEFAULT_SM2_USER_ID,
    *,
    k: int | None = None,
    curve: Sm2Curve = SM2P256V1,
) -> bytes:
    """SM2 signature r || s over ``message`` with e = SM3(Z_A || M)."""
    public = sm2_public_key(d, curve)
    e = sm3(sm2_za(public, user_id, curve) + bytes(message))
    return sm2_sign_digest(d, e, k=k, curve=curve)


def sm2_backend() -> str:
    """What verifies on the standard curve: ``"openssl"`` (libcrypto, see
    :mod:`healthcard_apdu.crypto.sm2_openssl`) or ``"python"`` (this module)."""
    return "openssl" if sm2_openssl.available() else "python"


def sm2_verify_digest(
    public: Point,
    e: bytes,
    signature: bytes,
    curve: Sm2Curve = SM2P256V1,
    *,
    backend: str | None = None,
) -> bool:
    """Check r || s against a precomputed e. CryptoError only for an invalid public key.

    ``backend``: ``None`` uses libcrypto for sm2p256v1 when it is available (same answers,
    checked by the differential tests; it releases the GIL), else this module; ``"python"``
    or ``"openssl"`` force one (``"openssl"`` raises CryptoError when it cannot be used).
    """
    if backend not in (None, "python", "openssl"):
        raise ValueError(f"SM2 backend must be None, 'python' or 'openssl', got {backend!r}")
    _check_public(public, curve)
    size = curve.byte_length
    if len(signature) != 2 * size:
        return False
    n = curve.n
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    if not (1 <= r < n and 1 <= s < n):
        return False
    if backend != "python":
        compiled = (curve is SM2P256V1 or curve == SM2P256V1) and len(e) == size
        if compiled and (backend == "openssl" or sm2_openssl.available()):
            try:
                return sm2_openssl.verify_digest(public, bytes(e), bytes(signature))
            except OSError as exc:
                if backend == "openssl":
                    raise CryptoError(f"SM2 verification in libcrypto failed: {exc}") from None
        elif backend == "openssl":
            raise CryptoError("libcrypto verifies SM2 on sm2p256v1 with a 32-byte digest only")
    t = (r + s) % n
    if t == 0:
        return False
    acc = _base_mult(s, curve)
    table = _key_table(public, curve)
    if table is not None:
        acc = _comb_mult(t, table, curve, acc)
    else:
        acc = _add(_wnaf_mult(t, public, curve), acc, curve)
    x, _, z = acc
    if z == 0:
        return False
    # affine x1 = X / Z^2 must be the x1 in [0, p) with (e + x1) mod n == r: compare
    # X with candidate * Z^2 instead of inverting Z
    p = curve.p
    zz = z * z % p
    candidate = (r - int.from_bytes(e, "big")) % n
    while candidate < p:
        if (candidate * zz - x) % p == 0:
            return True
        candidate += n
    return False


def sm2_verify(
    public: Point,
    message: bytes,
    signature: bytes,
    user_id: bytes = DEFAULT_SM2_USER_ID,
    curve: Sm2Curve = SM2P256V1,
    *,
    backend: str | None = None,
) -> bool:
    """Verify an SM2 signature r || s over ``message`` for ``user_id`` (``backend`` as in
    :func:`sm2_verify_digest`)."""
    e = sm3(sm2_za(public, user_id, curve) + bytes(message))
    return sm2_verify_digest(public, e, signature, curve, backend=backend)
