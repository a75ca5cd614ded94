"""Plaintext export of a key set for the simulated SAM (development and tests only).

The document is the simulated SAM's key file, format ``healthcard-sim-sam/1`` (docs/sim.md):
every master key sits at the SAM key index (80DE P2) of its role, with its 80DE P1 as the
declared usage; the SM2 private key and our 190-byte certificate (EF1C, docs/keys.md) go
along, and the SAM serial is the certificate's subject.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from healthcard_apdu.security.errors import SecurityModuleError, UnknownKeyRole
from healthcard_apdu.security.keyset import KeySet
from healthcard_apdu.security.keyspec import PLATFORM_ROLES, STANDARD_KEY_SPECS, KeySpec
from healthcard_apdu.security.signing import SamCertificate

__all__ = ["SIM_SAM_FORMAT", "simulator_sam_document"]

SIM_SAM_FORMAT = "healthcard-sim-sam/1"


def simulator_sam_document(
    keyset: KeySet, specs: Mapping[str, KeySpec] = STANDARD_KEY_SPECS
) -> dict[str, Any]:
    """The simulated SAM's key file for ``keyset`` (all secrets in clear; the e-card platform
    keys are left out: a SAM does not hold them)."""
    keys = []
    seen: dict[int, str] = {}
    for role, master in keyset.keys.items():
        if role in PLATFORM_ROLES:
            continue  # e-card platform keys are never SAM keys
        spec = specs.get(role)
        if spec is None:
            raise UnknownKeyRole(f"no SAM key index (KeySpec) for role {role!r}")
        if spec.sam_p2 in seen:
            raise SecurityModuleError(
                f"roles {seen[spec.sam_p2]} and {role} share SAM key index {spec.sam_p2:02X}"
            )
        seen[spec.sam_p2] = role
        keys.append(
            {
                "index": f"{spec.sam_p2:02X}",
                "usage": f"{spec.sam_p1:02X}",
                "role": role,
                "algorithm": keyset.algorithm.name,
                "key": master.value.hex().upper(),
                "kcv": master.kcv,
            }
        )
    document: dict[str, Any] = {
        "format": SIM_SAM_FORMAT,
        "algorithm": keyset.algorithm.name,
        "pin": keyset.sam_pin,
        "keys": keys,
        "sm2_private_key": None if keyset.sm2_private is None else f"{keyset.sm2_private:064X}",
    }
    if keyset.certificate is not None:
        document["serial"] = SamCertificate.from_bytes(keyset.certificate).subject.hex().upper()
        document["files"] = {"EF1C": keyset.certificate.hex().upper()}
    return document
