"""The electronic health card (电子健康卡): national IDs, QR texts, the signed EHC1 envelope,
QR images, verification, the local registry and use records. See docs/ehc.md.

Layer 7: uses model (code tables, validators), security (platform keys as key roles), crypto;
nothing below imports it.
"""

from __future__ import annotations

from healthcard_apdu.ehc.base45 import b45decode, b45encode
from healthcard_apdu.ehc.errors import (
    REJECT_REASONS,
    EhcError,
    EhcInputError,
    QrFormatError,
    QrRejected,
    RegistryConflict,
    RegistryError,
    RejectReason,
)
from healthcard_apdu.ehc.images import (
    MAX_SIGNED_VERSION,
    png_bytes,
    qr_version,
    save_image,
    svg_text,
    terminal_text,
)
from healthcard_apdu.ehc.national import (
    CHINA_STANDARD_TIME,
    PlatformKeys,
    decode_validity_time,
    diversification_factor,
    encode_validity_time,
    id_block,
    master_index,
)
from healthcard_apdu.ehc.person import (
    ID_TYPES,
    RESIDENT_ID,
    IdType,
    Person,
    card_id_type,
    ehc_id_type,
    person_from_card,
)
from healthcard_apdu.ehc.qrtext import (
    DYNAMIC,
    SIGNED_PREFIX,
    STATIC,
    NationalQr,
    is_signed_text,
    parse_national,
)
from healthcard_apdu.ehc.registry import EcardRecord, Registry
from healthcard_apdu.ehc.service import (
    DEFAULT_VALIDITY,
    EhcPlatform,
    IssuedCard,
    issue_from_identity,
)
from healthcard_apdu.ehc.signed import Claims, Envelope, parse_envelope, sign_envelope
from healthcard_apdu.ehc.trust import ReplayCache, RevocationList, TrustedKey, TrustList
from healthcard_apdu.ehc.uses import (
    CHANNELS,
    COST_TYPES,
    MEDICAL_STEPS,
    SCENES,
    UseContext,
    UseRecord,
)
from healthcard_apdu.ehc.verify import Verification, Verifier, VerifyPolicy

__all__ = [
    "CHANNELS",
    "CHINA_STANDARD_TIME",
    "COST_TYPES",
    "DEFAULT_VALIDITY",
    "DYNAMIC",
    "ID_TYPES",
    "MAX_SIGNED_VERSION",
    "MEDICAL_STEPS",
    "REJECT_REASONS",
    "RESIDENT_ID",
    "SCENES",
    "SIGNED_PREFIX",
    "STATIC",
    "Claims",
    "EcardRecord",
    "EhcError",
    "EhcInputError",
    "EhcPlatform",
    "Envelope",
    "IdType",
    "IssuedCard",
    "NationalQr",
    "Person",
    "PlatformKeys",
    "QrFormatError",
    "QrRejected",
    "Registry",
    "RegistryConflict",
    "RegistryError",
    "RejectReason",
    "ReplayCache",
    "RevocationList",
    "TrustList",
    "TrustedKey",
    "UseContext",
    "UseRecord",
    "Verification",
    "Verifier",
    "VerifyPolicy",
    "b45decode",
    "b45encode",
    "card_id_type",
    "decode_validity_time",
    "diversification_factor",
    "ehc_id_type",
    "encode_validity_time",
    "id_block",
    "is_signed_text",
    "issue_from_identity",
    "master_index",
    "parse_envelope",
    "parse_national",
    "person_from_card",
    "png_bytes",
    "qr_version",
    "save_image",
    "sign_envelope",
    "svg_text",
    "terminal_text",
]
