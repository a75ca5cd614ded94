"""The national QR texts (what a scanner returns) -- parse leniently, format strictly.

=========  ==========================================  ===========================
form       layout                                      example
=========  ==========================================  ===========================
static     ``<ehcId 64 hex>:1``                        ``98FF…1928:1``
dynamic    ``<ehcId>:0:<validity 32 hex>``             ``272E…9F58:0:8D7E…9286``
provincial ``<ehcId>:1::<issuer code>`` (Sichuan)      ``6836…A19B:1::5100A0013``
=========  ==========================================  ===========================

A dynamic code may also carry the fourth field (``<ehcId>:0:<validity>:<code>``). Hex is read
in either case and written in upper case; surrounding white space (a scanner's CR LF) is
ignored. Anything else raises :class:`QrFormatError` naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from healthcard_apdu.ehc.errors import QrFormatError

__all__ = [
    "DYNAMIC",
    "SIGNED_PREFIX",
    "STATIC",
    "CodeType",
    "NationalQr",
    "is_signed_text",
    "parse_national",
]

DYNAMIC: Final = 0
STATIC: Final = 1
CodeType = Literal[0, 1]
SIGNED_PREFIX: Final = "EHC1:"
MAX_ISSUER_CODE = 32
MAX_TEXT = 4096

_HEX = frozenset("0123456789ABCDEFabcdef")
_FAST = re.compile(r"([0-9A-Fa-f]{64}):(?:1|0:([0-9A-Fa-f]{32}))")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and _HEX.issuperset(text)


@dataclass(frozen=True)
class NationalQr:
    """One national QR text: e-card ID, code type (0 dynamic, 1 static), the validity block
    of a dynamic code, and the provincial fourth field when present."""

    ehc_id: str
    code_type: CodeType
    validity: str | None = None
    issuer_code: str | None = None

    def __post_init__(self) -> None:
        if not _is_hex(self.ehc_id, 64):
            raise QrFormatError("ehc_id", f"must be 64 hex digits, got {len(self.ehc_id)}")
        if self.code_type not in (DYNAMIC, STATIC):
            raise QrFormatError("code_type", f"{self.code_type!r} is not 0 (dynamic) or 1 (static)")
        if self.code_type == DYNAMIC:
            if self.validity is None or not _is_hex(self.validity, 32):
                raise QrFormatError("validity", "a dynamic code (type 0) needs 32 hex digits")
        elif self.validity is not None:
            raise QrFormatError("validity", "a static code (type 1) has no validity block")
        if self.issuer_code is not None and not (
            0 < len(self.issuer_code) <= MAX_ISSUER_CODE
            and self.issuer_code.isascii()
            and self.issuer_code.isalnum()
        ):
            raise QrFormatError(
                "issuer_code", f"must be 1..{MAX_ISSUER_CODE} ASCII letters and digits"
            )
        object.__setattr__(self, "ehc_id", self.ehc_id.upper())
        if self.validity is not None:
            object.__setattr__(self, "validity", self.validity.upper())

    @property
    def dynamic(self) -> bool:
        return self.code_type == DYNAMIC

    @property
    def kind(self) -> str:
        """``national-dynamic`` or ``national-static``."""
        return "national-dynamic" if self.dynamic else "national-static"

    def text(self) -> str:
        """The QR text (upper-case hex; the fourth field only when there is one)."""
        out = f"{self.ehc_id}:{self.code_type}"
        if self.dynamic:
            out += f":{self.validity}"
        elif self.issuer_code is not None:
            out += ":"  # the empty validity field of a static provincial code
        if self.issuer_code is not None:
            out += f":{self.issuer_code}"
        return out

    def __str__(self) -> str:
        return self.text()

    @classmethod
    def _checked_by_regex(
        cls, ehc_id: str, code_type: CodeType, validity: str | None
    ) -> NationalQr:
        """Build from fields the parser's pattern already checked (the verifier's fast path)."""
        qr = object.__new__(cls)
        setattr_ = object.__setattr__
        setattr_(qr, "ehc_id", ehc_id.upper())
        setattr_(qr, "code_type", code_type)
        setattr_(qr, "validity", None if validity is None else validity.upper())
        setattr_(qr, "issuer_code", None)
        return qr


def is_signed_text(text: str) -> bool:
    """True when ``text`` is our signed envelope (``EHC1:`` prefix)."""
    return text.lstrip().startswith(SIGNED_PREFIX)


def parse_national(text: str) -> NationalQr:
    """Parse a national static, dynamic or provincial 4-field QR text."""
    if not isinstance(text, str):
        raise QrFormatError("qr_text", "must be text")
    stripped = text.strip()
    match = _FAST.fullmatch(stripped)
    if match is not None:  # the two common forms, without the field-by-field checks
        ehc_id, validity = match.groups()
        return NationalQr._checked_by_regex(ehc_id, DYNAMIC if validity else STATIC, validity)
    return _parse_fields(stripped)


def _parse_fields(text: str) -> NationalQr:
    if not text:
        raise QrFormatError("qr_text", "is empty")
    if len(text) > MAX_TEXT:
        raise QrFormatError("qr_text", f"{len(text)} characters, too long for a QR text")
    if text.startswith(SIGNED_PREFIX):
        raise QrFormatError("qr_text", "is a signed EHC1 envelope, not a national text")
    fields = text.split(":")
    if len(fields) > 4:
        raise QrFormatError(
            "qr_text",
            f"{len(fields)} ':'-separated fields, at most 4 (ehc_id:code_type[:validity"
            "[:issuer_code]])",
        )
    ehc_id = fields[0]
    if not _is_hex(ehc_id, 64):
        shown = ehc_id if len(ehc_id) <= 20 else ehc_id[:20] + "..."
        raise QrFormatError(
            "ehc_id", f"must be 64 hex digits, got {len(ehc_id)} characters ({shown!r})"
        )
    if len(fields) < 2 or not fields[1]:
        raise QrFormatError("code_type", "is missing (0 dynamic, 1 static)")
    if fields[1] not in ("0", "1"):
        raise QrFormatError("code_type", f"{fields[1]!r} is not 0 (dynamic) or 1 (static)")
    code_type: CodeType = DYNAMIC if fields[1] == "0" else STATIC
    validity = fields[2] if len(fields) > 2 and fields[2] else None
    issuer = fields[3] if len(fields) > 3 else None
    if validity is not None and not _is_hex(validity, 32):
        raise QrFormatError("validity", f"must be 32 hex digits, got {len(validity)} characters")
    if issuer == "":
        raise QrFormatError("issuer_code", "the fourth field is empty")
    return NationalQr(ehc_id, code_type, validity, issuer)
