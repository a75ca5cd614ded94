"""File tree of the simulated COS: MF, DDF/ADF, transparent / record EFs and key files.

FMCOS 2.0 semantics (docs/reference/cos-crypto.md §2): access bytes ``XY`` are evaluated against the
security-state register (SSR) of the current DF, or of the MF for ``0Y``. Records of
variable-length files are SIMPLE-TLV (``tag len value``). The newest record of a cyclic
file is record 1. Nothing here knows the health-card layout.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from healthcard_apdu.sim.keys import KeyFile

MF_FID = 0x3F00
#: FMCOS nests at most three DF levels (MF, DDF, ADF) [FM-UM 7.13].
MAX_DF_DEPTH = 3
#: DF attribute ``app_fid`` value meaning "FCI without a proprietary A5 template".
NO_FCI_FILE = 0xFF
#: Reserved record-file byte (CREATE FILE byte 5) value meaning "erase right = write right".
SAME_AS_WRITE = 0xFF
#: Space an EF or DF header takes in the simulated EEPROM (FMCOS counts 8 for record files).
HEADER_BYTES = 8


def access_ok(ac: int, ssr: int, mf_ssr: int) -> bool:
    """FMCOS access byte ``XY``: ``0Y`` MF.SSR >= Y; X < Y never; else Y <= SSR <= X."""
    x, y = ac >> 4, ac & 0x0F
    if x == 0:
        return mf_ssr >= y
    if x < y:
        return False
    return y <= ssr <= x


class EfKind(enum.Enum):
    """EF structure, by the low six bits of the CREATE FILE type byte."""

    BINARY = 0x28
    FIXED = 0x2A
    VARIABLE = 0x2C
    CYCLIC = 0x2E

    @property
    def is_record(self) -> bool:
        return self is not EfKind.BINARY


#: Type-byte bits: the file needs secure messaging for writes (MAC / encryption).
TYPE_MAC = 0x80
TYPE_ENC = 0x40


@dataclass(eq=False)
class Ef:
    """An elementary file. Records are stored in record-number order (index 0 = record 1)."""

    fid: int
    kind: EfKind
    type_byte: int
    read_ac: int
    write_ac: int
    erase_ac: int = SAME_AS_WRITE
    byte7: int = 0xFF
    size: int = 0
    nrec: int = 0
    reclen: int = 0
    data: bytearray = field(default_factory=bytearray)
    records: list[bytes] = field(default_factory=list)

    @property
    def sfi(self) -> int:
        return self.fid & 0x1F

    @property
    def needs_sm(self) -> bool:
        """Plain (CLA 00) writes are refused with 6900 when either protection bit is set."""
        return bool(self.type_byte & (TYPE_MAC | TYPE_ENC))

    @property
    def effective_erase_ac(self) -> int:
        return self.write_ac if self.erase_ac == SAME_AS_WRITE else self.erase_ac

    @property
    def space(self) -> int:
        """EEPROM bytes taken (FMCOS: records take nrec * (reclen + 1) + 8)."""
        if self.kind in (EfKind.FIXED, EfKind.CYCLIC):
            return self.nrec * (self.reclen + 1) + HEADER_BYTES
        return self.size + HEADER_BYTES

    @property
    def variable_used(self) -> int:
        return sum(len(r) for r in self.records)

    def record_by_tag(self, tag: int) -> int | None:
        """Index of the first record whose first byte (tag) is ``tag``."""
        for i, rec in enumerate(self.records):
            if rec and rec[0] == tag:
                return i
        return None


@dataclass(eq=False)
class Df:
    """A dedicated file (the MF is the root DF)."""

    fid: int
    name: bytes
    size: int = 0xFFFF
    create_ac: int = 0xF0
    erase_ac: int = 0xF0
    app_fid: int = NO_FCI_FILE
    reserved: bytes = b"\xff\xff"
    children: dict[int, Df | Ef] = field(default_factory=dict)
    keyfile: KeyFile | None = None
    #: 0 usable, 1 temporarily blocked (APPLICATION BLOCK P2=00), 2 permanently blocked.
    blocked: int = 0
    parent: Df | None = field(default=None, repr=False)

    @property
    def is_mf(self) -> bool:
        return self.parent is None

    @property
    def depth(self) -> int:
        """1 for the MF, 2 for its child DFs, ..."""
        n, node = 1, self
        while node.parent is not None:
            n, node = n + 1, node.parent
        return n

    def path(self) -> list[Df]:
        """DFs from the MF down to this one."""
        out: list[Df] = []
        node: Df | None = self
        while node is not None:
            out.append(node)
            node = node.parent
        out.reverse()
        return out

    def add(self, child: Df | Ef) -> None:
        if isinstance(child, Df):
            child.parent = self
        self.children[child.fid] = child

    def ef_by_sfi(self, sfi: int) -> Ef | None:
        for child in self.children.values():
            if isinstance(child, Ef) and child.sfi == sfi:
                return child
        return None

    def fci(self) -> bytes:
        """``6F L 84 Ln name [A5 L prop]``; A5 is present unless ``app_fid`` is FF.

        The A5 content is the binary EF whose SFI is ``app_fid & 1F`` when it exists,
        else empty (``A5 00``, as on the traced cards).
        """
        body = b"\x84" + bytes((len(self.name),)) + self.name
        if self.app_fid != NO_FCI_FILE:
            prop = b""
            fci_file = self.ef_by_sfi(self.app_fid & 0x1F)
            if fci_file is not None and fci_file.kind is EfKind.BINARY:
                prop = bytes(fci_file.data)[:0x7F]
            body += b"\xa5" + bytes((len(prop),)) + prop
        return b"\x6f" + bytes((len(body),)) + body

    @property
    def space(self) -> int:
        own = HEADER_BYTES + 8 + len(self.name)
        if self.keyfile is not None:
            own += HEADER_BYTES + self.keyfile.size
        return own + sum(c.space for c in self.children.values())

    def walk(self) -> Iterator[Df]:
        """This DF and every DF below it, depth first."""
        yield self
        for child in self.children.values():
            if isinstance(child, Df):
                yield from child.walk()
