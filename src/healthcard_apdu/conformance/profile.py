"""What the suite takes from the issuance profile: identity, hash, production flag, file set,
and the card-product settings.

The expectations of the cases come from the model's national layout; the profile says which
files the card is meant to have (local variants drop some: those cases are not applicable),
their sizes, which ones need secure messaging, whether the card is a production card (then
destructive cases are refused), and what the card product looks like: where its card factor
sits in the ATR, whether SELECT of a DF must answer an FCI, the DF names -- so that a lab can
test a real card family without failing on our simulator's cosmetics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from healthcard_apdu.conformance.case import ConformanceError
from healthcard_apdu.perso.errors import ProfileError
from healthcard_apdu.perso.profile import Profile, load_profile
from healthcard_apdu.security import DEFAULT_FACTOR_RULE, FactorRule

SM_TYPE_BITS = 0xC0


@dataclass(frozen=True)
class FileFacts:
    """One EF as the profile creates it."""

    type_byte: int
    size: int
    records: int
    record_length: int

    @property
    def needs_sm(self) -> bool:
        return bool(self.type_byte & SM_TYPE_BITS)


@dataclass(frozen=True)
class ProfileInfo:
    """The profile a run checks against (``sha256`` of the profile file's bytes)."""

    name: str
    source: str
    sha256: str
    production: bool
    files: Mapping[str, FileFacts] = field(default_factory=lambda: MappingProxyType({}))
    factor_rule: FactorRule = DEFAULT_FACTOR_RULE
    select_fci: str = "required"
    df_names: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def from_profile(cls, profile: Profile, raw: bytes) -> ProfileInfo:
        files = {
            f.path: FileFacts(f.type_byte, f.size, f.nrec, f.reclen) for f in profile.files
        }
        names = {d.name: d.df_name for d in profile.dfs}
        return cls(profile.name, profile.source, hashlib.sha256(raw).hexdigest(),
                   profile.production, MappingProxyType(files), profile.product.factor_rule,
                   profile.product.select_fci, MappingProxyType(names))

    def df_name(self, name: str, default: bytes) -> bytes:
        """The DF name the profile gives DF ``name`` (the layout's otherwise)."""
        return self.df_names.get(name, default)

    @classmethod
    def load(cls, source: str | Path) -> ProfileInfo:
        """A profile file or built-in profile name (as ``perso`` loads it)."""
        try:
            profile = load_profile(source)
            raw = Path(profile.source).read_bytes()
        except ProfileError as exc:
            raise ConformanceError(str(exc)) from None
        except OSError as exc:
            raise ConformanceError(f"profile {source}: {exc.strerror}") from None
        return cls.from_profile(profile, raw)

    def has_file(self, path: str) -> bool:
        return not self.files or path in self.files

    def file(self, path: str) -> FileFacts | None:
        return self.files.get(path)
