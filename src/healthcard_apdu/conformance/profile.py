"""What the suite takes from the issuance profile: identity, hash, production flag, file set.

The expectations of the cases come from the model's national layout; the profile says which
files the card is meant to have (local variants drop some: those cases are not applicable),
their sizes, which ones need secure messaging, and whether the card is a production card
(then destructive cases are refused).
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

    @classmethod
    def from_profile(cls, profile: Profile, raw: bytes) -> ProfileInfo:
        files = {
            f.path: FileFacts(f.type_byte, f.size, f.nrec, f.reclen) for f in profile.files
        }
        return cls(profile.name, profile.source, hashlib.sha256(raw).hexdigest(),
                   profile.production, MappingProxyType(files))

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
