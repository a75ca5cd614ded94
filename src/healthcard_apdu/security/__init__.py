"""Security layer: the SAM role behind one interface, and secure messaging.

Backends: :class:`SoftwareSecurityModule` (key set in memory / encrypted key file),
:class:`Pkcs11SecurityModule` (3DES master keys in an HSM token, e.g. SoftHSM2) and
:class:`PsamSecurityModule` (a real or simulated PSAM over a channel). See docs/keys.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from healthcard_apdu.security.errors import (
    CertificateError,
    KeyFileError,
    SamCommandError,
    SamPinError,
    SecureMessagingFormatError,
    SecurityModuleError,
    UnknownKeyRole,
    UnsupportedOperation,
)
from healthcard_apdu.security.factor import (
    DEFAULT_FACTOR_RULE,
    KNOWN_FACTOR_RULES,
    FactorCandidate,
    FactorRule,
    FactorRuleError,
    factor_candidates,
)
from healthcard_apdu.security.keyset import (
    KeySet,
    MasterKey,
    read_key_check_values,
)
from healthcard_apdu.security.keyspec import (
    DEFAULT_ROLES,
    EHC_PROTECTION_KEY,
    EHC_SECURITY_KEY,
    EHC_SIGNING_KEY,
    ISSUANCE_ROLES,
    PLATFORM_CIPHER_ROLES,
    PLATFORM_ROLES,
    SM2_KEY_ROLES,
    STANDARD_KEY_SPECS,
    USER_CARD_ROLES,
    CardFactors,
    KeySpec,
    card_factor_from_atr,
    city_factor_from_region,
)
from healthcard_apdu.security.module import DataCipher, SecurityModule
from healthcard_apdu.security.publickey import (
    PublicKeyError,
    key_id,
    public_key_from_spki,
    spki_der,
    spki_pem,
)
from healthcard_apdu.security.session import (
    DecryptingSession,
    SessionOps,
    SoftwareSession,
    external_auth_cryptogram,
)
from healthcard_apdu.security.signing import (
    SamCertificate,
    build_certificate,
    sign_record,
    verify_record,
)
from healthcard_apdu.security.sm import (
    protect_update,
    protect_update_binary,
    protect_update_record,
    unprotect,
)
from healthcard_apdu.security.software import SoftwareSecurityModule

if TYPE_CHECKING:
    from healthcard_apdu.security.pkcs11 import Pkcs11SecurityModule
    from healthcard_apdu.security.psam import PsamSecurityModule

__all__ = [
    "DEFAULT_FACTOR_RULE",
    "DEFAULT_ROLES",
    "EHC_PROTECTION_KEY",
    "EHC_SECURITY_KEY",
    "EHC_SIGNING_KEY",
    "ISSUANCE_ROLES",
    "KNOWN_FACTOR_RULES",
    "PLATFORM_CIPHER_ROLES",
    "PLATFORM_ROLES",
    "SM2_KEY_ROLES",
    "STANDARD_KEY_SPECS",
    "USER_CARD_ROLES",
    "CardFactors",
    "CertificateError",
    "DataCipher",
    "DecryptingSession",
    "FactorCandidate",
    "FactorRule",
    "FactorRuleError",
    "KeyFileError",
    "KeySet",
    "KeySpec",
    "MasterKey",
    "Pkcs11SecurityModule",
    "PsamSecurityModule",
    "PublicKeyError",
    "SamCertificate",
    "SamCommandError",
    "SamPinError",
    "SecureMessagingFormatError",
    "SecurityModule",
    "SecurityModuleError",
    "SessionOps",
    "SoftwareSecurityModule",
    "SoftwareSession",
    "UnknownKeyRole",
    "UnsupportedOperation",
    "build_certificate",
    "card_factor_from_atr",
    "city_factor_from_region",
    "external_auth_cryptogram",
    "factor_candidates",
    "key_id",
    "protect_update",
    "protect_update_binary",
    "protect_update_record",
    "public_key_from_spki",
    "read_key_check_values",
    "sign_record",
    "spki_der",
    "spki_pem",
    "unprotect",
    "verify_record",
]

_LAZY = {
    "Pkcs11SecurityModule": "healthcard_apdu.security.pkcs11",
    "PsamSecurityModule": "healthcard_apdu.security.psam",
}


def __getattr__(name: str) -> Any:
    """Import the PKCS#11 (PyKCS11) and PSAM (transport) backends only when used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
