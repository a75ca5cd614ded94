"""The documented minimum APDU count and bytes of one personalization (docs/profiles.md §5).

Computed from the profile and the record by formula, without building commands, so the plan
and the executor can be measured against it. Bytes are wire bytes: command (header, Lc, data,
Le) plus response data plus the status word. The formula assumes T=1 (no GET RESPONSE); over
T=0 each SELECT of a DF adds one GET RESPONSE for its FCI.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from healthcard_apdu.model import CardData, CyclicFile
from healthcard_apdu.perso.chunks import cover
from healthcard_apdu.perso.profile import (
    FileProfile,
    Profile,
    access_granted_by,
    access_kind,
    file_image,
)

__all__ = ["Cost", "minimum_cost"]

HEADER = 4
SW = 2
KEY_LENGTH = 16
HEALTH_AUTH_DATA = 17


@dataclass(frozen=True)
class Cost:
    """APDUs and wire bytes, with a per-component breakdown ``{component: (apdus, bytes)}``."""

    apdus: int
    bytes: int
    parts: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"apdus": self.apdus, "bytes": self.bytes,
                "parts": {k: {"apdus": a, "bytes": b} for k, (a, b) in self.parts.items()}}


class _Tally:
    def __init__(self) -> None:
        self.parts: dict[str, tuple[int, int]] = {}

    def add(self, part: str, count: int, each_or_total: int, *, total: bool = False) -> None:
        apdus, size = self.parts.get(part, (0, 0))
        self.parts[part] = (apdus + count, size + (each_or_total if total else
                                                    count * each_or_total))

    def cost(self) -> Cost:
        return Cost(sum(a for a, _ in self.parts.values()),
                    sum(b for _, b in self.parts.values()), dict(self.parts))


def _case3(lc: int, response: int = 0) -> int:
    """Short case-3 command with ``lc`` data bytes, plus response data and SW."""
    return HEADER + 1 + lc + response + SW


def _case2(le: int) -> int:
    """Short case-2 command expecting ``le`` bytes (which come back), plus SW."""
    return HEADER + 1 + le + SW


def minimum_cost(profile: Profile, record: CardData, *, read_back: bool = True) -> Cost:
    """The fewest APDUs (and, among those, bytes) that issue ``record`` under ``profile`` and
    read back every written byte. See docs/profiles.md §5 for the argument."""
    t = _Tally()
    contents = {ef.path: content for ef, content in record.file_contents()}
    current = "MF"
    block = profile.algorithm.block_size
    for df in profile.dfs:
        # navigation: the parent must be current before CREATE FILE of a DF
        if df.parent is not None and df.parent != current:
            path = _path_to(profile, df.parent)
            here = profile.df(current)
            targets = path[-1:] if df.parent == "MF" or here.parent == df.parent else path
            for target in targets:
                d = profile.df(target)
                t.add("select", 1, _case3(2, len(d.expected_fci())))
        current = df.name
        t.add("create_df", 1, _case3(len(df.create_data())))
        t.add("create_key_file", 1, _case3(7))
        keys = profile.keys_in(df.name)
        t.add("write_key", len(keys), _case3(5 + KEY_LENGTH))
        own = profile.files_in(df.name)
        t.add("create_ef", len(own), _case3(7))
        sfis = [f.sfi for f in own]
        read_keys: set[str] = set()
        for f in own:
            content = contents.get(f.path)
            if content is None:
                continue
            written = _file_cost(t, profile, f, content, sfis.count(f.sfi) == 1, read_back)
            if written and read_back and access_kind(f.read) != "free":
                read_keys.add(_read_key_role(profile, f))
        for role in read_keys:
            key = profile.key(role)
            t.add("challenge", 1, _case2(8))
            data = HEALTH_AUTH_DATA if key.auth == "health" else block
            t.add("authenticate", 1, _case3(data))
    if profile.end_issuance:
        t.add("end_issuance", 1, _case2(0))
    return t.cost()


def _path_to(profile: Profile, name: str) -> list[str]:
    chain = []
    node: str | None = name
    while node is not None:
        chain.append(node)
        node = profile.df(node).parent
    return list(reversed(chain))


def _read_key_role(profile: Profile, f: FileProfile) -> str:
    scope = "MF" if access_kind(f.read) == "mf" else f.df
    candidates = [k for k in profile.keys_in(scope) if access_granted_by(f.read, k)]
    preferred = [k for k in candidates if k.role == f.ef.read_key]
    return (preferred or candidates)[0].role


def _file_cost(
    t: _Tally, profile: Profile, f: FileProfile, content: object, sfi_unique: bool,
    read_back: bool,
) -> bool:
    """Add the writes (and reads) of one file; True when anything is written."""
    if f.structure == "transparent":
        image = file_image(f, content)
        chunks = cover(image, profile.card.binary_fill, profile.card.max_command_data)
        if not chunks:
            return False
        if not sfi_unique or chunks[0][0] > 0xFF:
            t.add("select", 1, _case3(2))
        for _offset, length in chunks:
            t.add("write", 1, _case3(length))
            if read_back:
                step = profile.card.max_response
                for start in range(0, length, step):
                    t.add("read", 1, _case2(min(step, length - start)))
        return True
    if isinstance(content, CyclicFile):
        records = [e.to_bytes() for e in content.entries]
    else:
        records = [r for _, r in content.to_records()]  # type: ignore[attr-defined]
    if not records:
        return False
    if not sfi_unique:
        t.add("select", 1, _case3(2))
    for r in records:
        t.add("write", 1, _case3(len(r)))
        if read_back:
            t.add("read", 1, _case2(len(r)))
    return True
