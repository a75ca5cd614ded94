"""Use records (用卡数据监测): where, how and for what step an e-card was used.

The code tables (``data/use_codes.json``) are the ones the platforms publish in their SDKs and
HIS code: the 6-digit medical step (诊疗环节), the Tencent 7-digit scene, the channel (2-digit
provincial or 4-digit Tencent ``cardChannel``) and the fee type. A :class:`UseContext` is
validated before anything is verified or written; a :class:`UseRecord` is one accepted use, as
stored by the registry and exported as JSON Lines.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Final

from healthcard_apdu.ehc.errors import EhcInputError
from healthcard_apdu.model.errors import ValidationError
from healthcard_apdu.model.validators import validate_region_code

__all__ = [
    "CARD_TYPE_EHC",
    "CHANNELS",
    "COST_TYPES",
    "FEE_STEPS",
    "MEDICAL_STEPS",
    "SCENES",
    "CodeLabel",
    "UseContext",
    "UseRecord",
]

CodeLabel = tuple[str, str]
CARD_TYPE_EHC: Final = "11"
"""Tencent ``cardType`` of the electronic health card."""
FEE_STEPS: Final = frozenset({"010105", "0101051", "0101053"})
"""Steps and scenes that need a fee type (``cardCostTypes``)."""
MAX_TEXT = 64


def _load() -> dict[str, Mapping[str, CodeLabel]]:
    text = resources.files(__package__).joinpath("data", "use_codes.json").read_text("utf-8")
    raw = json.loads(text)
    return {
        name: MappingProxyType({code: (zh, en) for code, (zh, en) in table["codes"].items()})
        for name, table in raw.items()
    }


_TABLES = _load()
MEDICAL_STEPS: Mapping[str, CodeLabel] = _TABLES["medical_steps"]
SCENES: Mapping[str, CodeLabel] = _TABLES["scenes"]
CHANNELS: Mapping[str, CodeLabel] = _TABLES["channels"]
COST_TYPES: Mapping[str, CodeLabel] = _TABLES["cost_types"]


def _code(field: str, value: str, table: Mapping[str, CodeLabel], title: str) -> None:
    if value not in table:
        codes = ", ".join(table)
        raise EhcInputError(field, f"{value!r} is not a {title} code ({codes})")


def _identifier(field: str, value: str, *, required: bool) -> None:
    if not value:
        if required:
            raise EhcInputError(field, "must not be empty")
        return
    if len(value) > MAX_TEXT:
        raise EhcInputError(field, f"{len(value)} characters, at most {MAX_TEXT}")
    if value != value.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise EhcInputError(field, "has control characters or surrounding spaces")


@dataclass(frozen=True, kw_only=True)
class UseContext:
    """Where and why a code is used: organisation code (``hospitalCode``), terminal ID,
    channel, medical step; optionally the scene, city (GB/T 2260), department and fee type."""

    org_code: str
    terminal: str
    channel: str
    medstep: str
    scene: str | None = None
    city_code: str | None = None
    department: str | None = None
    cost_type: str | None = None

    def __post_init__(self) -> None:
        _identifier("org_code", self.org_code, required=True)
        _identifier("terminal", self.terminal, required=True)
        _code("channel", self.channel, CHANNELS, "channel")
        _code("medstep", self.medstep, MEDICAL_STEPS, "medical step")
        if self.scene is not None:
            _code("scene", self.scene, SCENES, "scene")
        if self.city_code is not None:
            try:
                validate_region_code(self.city_code)
            except ValidationError as exc:
                raise EhcInputError("city_code", exc.reason) from None
        if self.department is not None:
            _identifier("department", self.department, required=True)
        if self.cost_type is not None:
            _code("cost_type", self.cost_type, COST_TYPES, "fee type")
        elif self.medstep in FEE_STEPS or self.scene in FEE_STEPS:
            step = self.scene if self.scene in FEE_STEPS else self.medstep
            raise EhcInputError("cost_type", f"is required for the payment step {step}")
        if self.scene in ("0101011", "0101012") and self.department is None:
            raise EhcInputError("department", f"is required for the scene {self.scene}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "org_code": self.org_code,
            "terminal": self.terminal,
            "channel": self.channel,
            "medstep": self.medstep,
            "scene": self.scene,
            "city_code": self.city_code,
            "department": self.department,
            "cost_type": self.cost_type,
        }


@dataclass(frozen=True, kw_only=True)
class UseRecord:
    """One accepted use of an e-card, as the registry keeps it."""

    id: int
    at: dt.datetime
    ehc_id: str
    kind: str
    context: UseContext
    jti: str | None = None
    kid: str | None = None
    card_type: str = CARD_TYPE_EHC

    def to_dict(self) -> dict[str, Any]:
        """One JSON Lines object (keys in a fixed order, time as ISO-8601 UTC)."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "ehc_id": self.ehc_id,
            "kind": self.kind,
            "card_type": self.card_type,
            **self.context.to_dict(),
            "jti": self.jti,
            "kid": self.kid,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
