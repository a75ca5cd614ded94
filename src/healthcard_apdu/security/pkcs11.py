"""PKCS#11 security module: 3DES master keys in an HSM token, diversified inside the token.

* Master keys are token objects of type CKK_DES2 (or CKK_DES3) labelled with their role,
  sensitive and not extractable, with CKA_DERIVE (diversification) and CKA_ENCRYPT (KCVs).
* Diversification is C_DeriveKey with CKM_DES3_ECB_ENCRYPT_DATA over D || ~D, i.e.
  E(MK, D) || E(MK, ~D) -- the same as crypto.diversify(TDES, ...). The token sets DES parity
  bits on derived keys, so derived key *values* equal the software ones modulo parity; every
  DES operation with them gives identical results.
* Intermediate levels are sensitive session objects destroyed right after use. Card keys
  (derive_card_key, for WRITE KEY) and session keys are extractable session objects: the
  card key leaves the token because WRITE KEY needs it in clear inside the FMCOS ciphertext
  (docs/reference/cos-crypto.md §6.6); the session key's value is read only to compute the
  3DES retail MAC
  (ISO 9797-1 alg. 3 needs single DES with K_L, which no PKCS#11 mechanism gives from a
  DES2 key). Session encryption runs in the token (CKM_DES3_ECB).
* SM4: SoftHSM2 (like PKCS#11 2.40/3.x) has no SM4 key type and no SM4 "encrypt data"
  derivation, so every SM4 operation raises UnsupportedOperation naming the role and the
  missing mechanism. Use a 3DES key set with this backend, or the software/PSAM backend.
* SM2 record signing is not available in SoftHSM2 either; pass ``signer=`` (another
  security module, e.g. a software one holding only the SM2 key) to delegate it.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import Any

from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.security.errors import (
    SecurityModuleError,
    UnknownKeyRole,
    UnsupportedOperation,
)
from healthcard_apdu.security.keyset import KeySet
from healthcard_apdu.security.keyspec import CardFactors, KeySpec
from healthcard_apdu.security.module import SecurityModule, check_challenge
from healthcard_apdu.security.session import external_auth_cryptogram, software_mac

try:
    import PyKCS11
except ImportError as _missing:  # an optional extra
    raise SecurityModuleError(
        "PKCS#11 key storage needs PyKCS11: pip install 'healthcard-apdu[pkcs11]'"
    ) from _missing

__all__ = ["DEFAULT_PKCS11_MODULE", "Pkcs11SecurityModule", "Pkcs11Session"]

log = logging.getLogger(__name__)

DEFAULT_PKCS11_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
DERIVE_MECHANISM = "CKM_DES3_ECB_ENCRYPT_DATA"
_DES_KEY_TYPES = {PyKCS11.CKK_DES2: "CKK_DES2", PyKCS11.CKK_DES3: "CKK_DES3"}
_SM4_MESSAGE = (
    "PKCS#11 backend cannot use SM4 key {role}: the token (SoftHSM2) has no SM4 key type and "
    "no SM4 ECB-encrypt-data derivation mechanism (only " + DERIVE_MECHANISM + " for 3DES); "
    "use a 3DES key set with PKCS#11, or the software / PSAM backend for SM4"
)


def _pkcs11_error(action: str, exc: PyKCS11.PyKCS11Error) -> SecurityModuleError:
    # str(PyKCS11Error) is the CKR_ code and its number; it carries no attribute values.
    return SecurityModuleError(f"PKCS#11 {action}: {exc}")


class Pkcs11Session:
    """A session key held in the token as an extractable session object."""

    def __init__(self, module: Pkcs11SecurityModule, handle: Any, role: str) -> None:
        self._module = module
        self._handle: Any = handle
        self.role = role

    @property
    def cipher(self) -> BlockCipher:
        return BlockCipher.TDES

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _live(self) -> Any:
        if self._handle is None:
            raise SecurityModuleError(f"PKCS#11 session key for {self.role} was already released")
        return self._handle

    def encrypt(self, data: bytes) -> bytes:
        if not data or len(data) % 8:
            raise SecurityModuleError(f"session encrypt: {len(data)} bytes are not 8-byte blocks")
        return self._module._encrypt(self._live(), bytes(data), f"C_Encrypt ({self.role} session)")

    def mac(self, data: bytes, iv: bytes | None = None) -> bytes:
        value = self._module._value(self._live(), f"session key of {self.role}")
        return software_mac(BlockCipher.TDES, value, data, iv)

    def close(self) -> None:
        """Destroy the session key object in the token. Idempotent."""
        if self._handle is not None:
            handle, self._handle = self._handle, None
            self._module._destroy(handle)

    def __repr__(self) -> str:
        return f"Pkcs11Session({self.role}, {'closed' if self.closed else 'open'})"


class Pkcs11SecurityModule(SecurityModule):
    """Master keys in a PKCS#11 token (tested with SoftHSM2), via PyKCS11.

    The user PIN is used once for C_Login and not kept; a refused login is reported, never
    retried. PKCS#11 login state is per process and token, so a second module on a token
    this process is already logged in to shares that login.
    """

    def __init__(
        self,
        token_label: str,
        user_pin: str,
        *,
        module_path: str = DEFAULT_PKCS11_MODULE,
        algorithm: BlockCipher = BlockCipher.TDES,
        signer: SecurityModule | None = None,
        max_live_sessions: int = 32,
        name: str = "pkcs11",
    ) -> None:
        self.name = name
        self.token_label = token_label
        self._algorithm = algorithm
        self._signer = signer
        self._masters: dict[str, Any] = {}
        self._live_sessions: deque[Pkcs11Session] = deque()
        self._max_live = max(1, max_live_sessions)
        self._session: Any = None
        self._lib = PyKCS11.PyKCS11Lib()
        try:
            self._lib.load(module_path)
        except PyKCS11.PyKCS11Error as exc:
            raise SecurityModuleError(f"PKCS#11 module {module_path}: not loaded ({exc})") from None
        slot = self._find_slot(token_label)
        try:
            mechanisms = set(self._lib.getMechanismList(slot))
            self._session = self._lib.openSession(
                slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION
            )
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error(f"open session on token {token_label!r}", exc) from None
        try:
            self._session.login(user_pin)
        except PyKCS11.PyKCS11Error as exc:
            # Login state is per application and token: another module instance of this
            # process may already be logged in to the same token.
            if exc.value != PyKCS11.CKR_USER_ALREADY_LOGGED_IN:
                self._close_session()
                raise _pkcs11_error(f"login to token {token_label!r} (not retried)", exc) from None
        missing = {DERIVE_MECHANISM, "CKM_DES3_ECB"} - mechanisms
        if algorithm is BlockCipher.TDES and missing:
            self.close()
            raise UnsupportedOperation(
                f"PKCS#11 token {token_label!r} lacks {', '.join(sorted(missing))}"
            )
        log.debug("PKCS#11 token %r opened (%s)", token_label, module_path)

    def _find_slot(self, label: str) -> Any:
        labels = []
        try:
            for slot in self._lib.getSlotList(tokenPresent=True):
                token_label = str(self._lib.getTokenInfo(slot).label).strip()
                if token_label == label:
                    return slot
                labels.append(token_label)
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error("list slots", exc) from None
        found = ", ".join(map(repr, labels)) or "none"
        raise SecurityModuleError(f"PKCS#11: no token labelled {label!r} (found: {found})")

    # -- low-level helpers (used by Pkcs11Session) ---------------------------------------

    def _open(self) -> Any:
        if self._session is None:
            raise SecurityModuleError(f"PKCS#11 security module {self.name} is closed")
        return self._session

    def _encrypt(self, handle: Any, data: bytes, action: str) -> bytes:
        try:
            mechanism = PyKCS11.Mechanism(PyKCS11.CKM_DES3_ECB)
            return bytes(self._open().encrypt(handle, data, mechanism))
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error(action, exc) from None

    def _value(self, handle: Any, what: str) -> bytes:
        try:
            (value,) = self._open().getAttributeValue(handle, [PyKCS11.CKA_VALUE], allAsBinary=True)
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error(f"read {what}", exc) from None
        if not value:
            raise SecurityModuleError(f"PKCS#11: {what} is not extractable")
        return bytes(value)

    def _destroy(self, handle: Any) -> None:
        try:
            self._open().destroyObject(handle)
        except (PyKCS11.PyKCS11Error, SecurityModuleError):
            log.debug("PKCS#11: could not destroy a session object")

    def _master(self, key: KeySpec) -> Any:
        if self._algorithm is BlockCipher.SM4:
            raise UnsupportedOperation(_SM4_MESSAGE.format(role=key.role))
        handle = self._masters.get(key.role)
        if handle is not None:
            return handle
        session = self._open()
        try:
            found = session.findObjects(
                [
                    (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
                    (PyKCS11.CKA_TOKEN, True),
                    (PyKCS11.CKA_LABEL, key.role),
                ]
            )
            if not found:
                raise UnknownKeyRole(
                    f"PKCS#11 token {self.token_label!r} has no master key labelled {key.role!r}"
                )
            if len(found) > 1:
                raise SecurityModuleError(
                    f"PKCS#11 token {self.token_label!r}: {len(found)} keys labelled {key.role!r}"
                )
            (key_type,) = session.getAttributeValue(found[0], [PyKCS11.CKA_KEY_TYPE])
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error(f"find master key {key.role}", exc) from None
        if key_type not in _DES_KEY_TYPES:
            raise UnsupportedOperation(
                f"PKCS#11 master key {key.role} has key type {key_type:#x}; "
                f"{DERIVE_MECHANISM} needs CKK_DES2 or CKK_DES3 (SM4 keys are not supported)"
            )
        self._masters[key.role] = found[0]
        return found[0]

    def _derive_one(self, base: Any, factor: bytes, *, extractable: bool, role: str) -> Any:
        d = factor[-8:]
        data = d + bytes(b ^ 0xFF for b in d)
        template = [
            (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
            (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_DES2),
            (PyKCS11.CKA_TOKEN, False),
            (PyKCS11.CKA_PRIVATE, True),
            (PyKCS11.CKA_SENSITIVE, not extractable),
            (PyKCS11.CKA_EXTRACTABLE, extractable),
            (PyKCS11.CKA_DERIVE, True),
            (PyKCS11.CKA_ENCRYPT, True),
        ]
        mechanism = PyKCS11.KEY_DERIVATION_STRING_DATA_MechanismBase(
            data, PyKCS11.CKM_DES3_ECB_ENCRYPT_DATA
        )
        try:
            return self._open().deriveKey(base, template, mechanism)
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error(f"C_DeriveKey ({DERIVE_MECHANISM}) for {role}", exc) from None

    def _derive_chain(self, key: KeySpec, factors: list[bytes], *, extractable: bool) -> Any:
        """Derive level by level inside the token; intermediates are destroyed."""
        handle = self._master(key)
        intermediate = None
        try:
            for index, factor in enumerate(factors):
                last = index == len(factors) - 1
                derived = self._derive_one(
                    handle, factor, extractable=extractable and last, role=key.role
                )
                if intermediate is not None:
                    self._destroy(intermediate)
                intermediate = None if last else derived
                handle = derived
        except BaseException:
            if intermediate is not None:
                self._destroy(intermediate)
            raise
        return handle

    # -- SecurityModule --------------------------------------------------------------------

    @property
    def algorithm(self) -> BlockCipher:
        return self._algorithm

    def session(self, key: KeySpec, factors: CardFactors, challenge: bytes) -> Pkcs11Session:
        levels = [*factors.for_key(key), check_challenge(challenge)]
        handle = self._derive_chain(key, levels, extractable=True)
        session = Pkcs11Session(self, handle, key.role)
        self._live_sessions.append(session)
        while len(self._live_sessions) > self._max_live:
            self._live_sessions.popleft().close()
        log.debug("PKCS#11 session for %s (P1=%02X P2=%02X)", key.role, key.sam_p1, key.sam_p2)
        return session

    def external_auth_data(
        self, key: KeySpec, factors: CardFactors, challenge: bytes, a: bytes
    ) -> bytes:
        session = self.session(key, factors, challenge)
        try:
            return external_auth_cryptogram(session, a) + bytes(a) + bytes((key.version,))
        finally:
            session.close()

    def derive_card_key(self, key: KeySpec, factors: CardFactors) -> bytes:
        handle = self._derive_chain(key, factors.for_key(key), extractable=True)
        try:
            log.debug("PKCS#11 card key for %s derived in token", key.role)
            return self._value(handle, f"card key of {key.role}")
        finally:
            self._destroy(handle)

    def key_check_values(self) -> dict[str, str]:
        session = self._open()
        result: dict[str, str] = {}
        try:
            handles = session.findObjects(
                [(PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY), (PyKCS11.CKA_TOKEN, True)]
            )
            for handle in handles:
                label, key_type = session.getAttributeValue(
                    handle, [PyKCS11.CKA_LABEL, PyKCS11.CKA_KEY_TYPE]
                )
                if not label or key_type not in _DES_KEY_TYPES:
                    continue
                result[str(label)] = self._kcv(handle)
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error("list key check values", exc) from None
        return dict(sorted(result.items()))

    def _kcv(self, handle: Any) -> str:
        try:
            (check,) = self._open().getAttributeValue(
                handle, [PyKCS11.CKA_CHECK_VALUE], allAsBinary=True
            )
        except PyKCS11.PyKCS11Error:
            check = None
        if check:
            return bytes(check)[:3].hex().upper()
        return self._encrypt(handle, bytes(8), "C_Encrypt (KCV)")[:3].hex().upper()

    def sign_digest(self, digest: bytes) -> bytes:
        if self._signer is None:
            raise UnsupportedOperation(
                "PKCS#11 backend cannot sign records: SoftHSM2 has no SM2 (no SM2 curve, no "
                "CKM_SM2 mechanism); construct it with signer=<security module holding the SM2 key>"
            )
        return self._signer.sign_digest(digest)

    def certificate(self) -> bytes:
        if self._signer is None:
            raise UnsupportedOperation("PKCS#11 backend holds no SAM certificate; pass signer=")
        return self._signer.certificate()

    # -- key management ----------------------------------------------------------------------

    def _existing(self, role: str) -> list[Any]:
        return list(
            self._open().findObjects(
                [
                    (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
                    (PyKCS11.CKA_TOKEN, True),
                    (PyKCS11.CKA_LABEL, role),
                ]
            )
        )

    def _master_template(self, role: str) -> list[tuple[int, Any]]:
        return [
            (PyKCS11.CKA_CLASS, PyKCS11.CKO_SECRET_KEY),
            (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_DES2),
            (PyKCS11.CKA_TOKEN, True),
            (PyKCS11.CKA_PRIVATE, True),
            (PyKCS11.CKA_LABEL, role),
            (PyKCS11.CKA_SENSITIVE, True),
            (PyKCS11.CKA_EXTRACTABLE, False),
            (PyKCS11.CKA_DERIVE, True),
            (PyKCS11.CKA_ENCRYPT, True),
        ]

    def _prepare_slot(self, role: str, replace: bool) -> None:
        existing = self._existing(role)
        if existing and not replace:
            raise SecurityModuleError(
                f"PKCS#11 token {self.token_label!r} already has a key labelled {role!r}"
            )
        for handle in existing:
            self._open().destroyObject(handle)
        self._masters.pop(role, None)

    def import_keyset(self, keyset: KeySet, *, replace: bool = False) -> dict[str, str]:
        """Store a 3DES key set's master keys as token objects; returns the token's KCVs."""
        if keyset.algorithm is not BlockCipher.TDES:
            first = next(iter(keyset.keys), "?")
            raise UnsupportedOperation(_SM4_MESSAGE.format(role=first))
        kcvs: dict[str, str] = {}
        try:
            for role, master in keyset.keys.items():
                self._prepare_slot(role, replace)
                template = [*self._master_template(role), (PyKCS11.CKA_VALUE, master.value)]
                handle = self._open().createObject(template)
                kcvs[role] = self._kcv(handle)
                if kcvs[role] != master.kcv:
                    self._open().destroyObject(handle)  # never leave a wrong key in the token
                    raise SecurityModuleError(
                        f"PKCS#11 token KCV {kcvs[role]} of {role} differs from {master.kcv}"
                    )
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error("import master keys (C_CreateObject)", exc) from None
        log.debug("imported %d master keys into token %r", len(kcvs), self.token_label)
        return kcvs

    def generate_keys(self, roles: Iterable[str], *, replace: bool = False) -> dict[str, str]:
        """Generate DES2 master keys inside the token (values never leave it); their KCVs."""
        if self._algorithm is not BlockCipher.TDES:
            raise UnsupportedOperation(_SM4_MESSAGE.format(role=next(iter(roles), "?")))
        kcvs: dict[str, str] = {}
        try:
            for role in roles:
                self._prepare_slot(role, replace)
                handle = self._open().generateKey(
                    self._master_template(role), PyKCS11.Mechanism(PyKCS11.CKM_DES2_KEY_GEN)
                )
                kcvs[role] = self._kcv(handle)
        except PyKCS11.PyKCS11Error as exc:
            raise _pkcs11_error("generate master keys (CKM_DES2_KEY_GEN)", exc) from None
        return kcvs

    # -- lifetime ----------------------------------------------------------------------------

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.closeSession()
            except PyKCS11.PyKCS11Error:
                log.debug("PKCS#11: closeSession failed")

    def close(self) -> None:
        if self._session is None:
            return
        while self._live_sessions:
            self._live_sessions.popleft().close()
        # No C_Logout: login state is shared by all sessions of the process on this token;
        # closing the application's last session logs out (PKCS#11 2.40 §5.6).
        self._close_session()
        self._masters.clear()
        log.debug("PKCS#11 token %r closed", self.token_label)
