"""Test helper: issue a national-layout health card with raw FMCOS APDUs (docs/cos.md).

This is test code, written from docs/reference/healthcard-layout.md §1–3 and docs/cos.md without the
host's model/perso code, so it doubles as an independent check of the perso later. It
also builds the matching SAM key file and host-side cryptograms for tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.crypto import (
    BlockCipher,
    diversify,
    diversify_levels,
    ecb_encrypt,
    fmcos_mac,
    line_encrypt,
    sm3,
    xor_fold,
)

Send = Callable[[bytes], bytes]

TRACE_CARD_FACTOR = bytes.fromhex("0081866B00001015")
CITY_CODE = "210000"
CITY_FACTOR = CITY_CODE[:2].encode() + b"000000"
MF_NAME = b"jmjkkyyhj".ljust(16, b"\x00")
DDF1_NAME = b"WS.SYS.DDF01"
DF_NAMES = {
    "DF01": bytes.fromhex("915600013200"),
    "DF02": bytes.fromhex("915600013201"),
    "DF03": bytes.fromhex("915600013202"),
}
FID = {"MF": 0x3F00, "DDF1": 0xDDF1, "DF01": 0xDF01, "DF02": 0xDF02, "DF03": 0xDF03}
SAM_PIN = "123456"
SAM_SM2_PRIVATE = 0x3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8
RK_PLAIN = bytes.fromhex("1122334455667788")

# Key types and try counters of the issued card (docs/cos.md).
T_EXT, T_LINE, T_INT = 0x39, 0x36, 0x34
MASTER_FOLLOW_UP = 0x0A
AUTH_COUNTER = 0xFF  # 15 tries: the traces show 63CE after the first failure


@dataclass(frozen=True)
class Role:
    """One health-card key: where it lives on the card and how the SAM addresses it."""

    name: str
    df: str
    ref: int
    key_type: int
    follow_up: int
    sam_p1: int
    sam_p2: int

    @property
    def kid(self) -> int:
        return self.ref & 0x7F

    @property
    def levels(self) -> int:
        return 2 if self.sam_p1 >> 4 == 4 else 1


# docs/reference/healthcard-layout.md §3.2 (ref = P2 of 00 82; SAM P1/P2 of 80 DE).
ROLES: tuple[Role, ...] = (
    Role("STM_MF", "MF", 0x02, T_LINE, 0xFF, 0x28, 0x16),
    Role("BK_MF", "MF", 0x03, T_LINE, 0xFF, 0x27, 0x35),
    Role("IRK_DDF1", "DDF1", 0x04, T_INT, 0x01, 0x47, 0x21),
    Role("STK_DDF1", "DDF1", 0x02, T_LINE, 0xFF, 0x28, 0x02),
    Role("RK1_DDF1", "DDF1", 0x04, T_EXT, 0x01, 0x47, 0x31),
    Role("UK1_DDF1", "DDF1", 0x05, T_EXT, 0x02, 0x27, 0x2A),
    Role("STK_DF01", "DF01", 0x82, T_LINE, 0xFF, 0x28, 0x03),
    Role("LK_DF01", "DF01", 0x83, T_LINE, 0xFF, 0x27, 0x27),
    Role("RK1_DF01", "DF01", 0x84, T_EXT, 0x01, 0x47, 0x32),
    Role("UK1_DF01", "DF01", 0x85, T_EXT, 0x02, 0x27, 0x2B),
    Role("STK_DF02", "DF02", 0x82, T_LINE, 0xFF, 0x48, 0x04),
    Role("LK_DF02", "DF02", 0x83, T_LINE, 0xFF, 0x27, 0x28),
    Role("RK1_DF02", "DF02", 0x84, T_EXT, 0x01, 0x47, 0x33),
    Role("UK1_DF02", "DF02", 0x85, T_EXT, 0x02, 0x47, 0x2C),
    Role("UK2_DF02", "DF02", 0x86, T_EXT, 0x03, 0x47, 0x2D),
    Role("UK3_DF02", "DF02", 0x87, T_EXT, 0x04, 0x47, 0x2E),
    Role("STK_DF03", "DF03", 0x82, T_LINE, 0xFF, 0x48, 0x05),
    Role("LK_DF03", "DF03", 0x83, T_LINE, 0xFF, 0x27, 0x29),
    Role("RK1_DF03", "DF03", 0x84, T_EXT, 0x01, 0x47, 0x34),
    Role("UK1_DF03", "DF03", 0x85, T_EXT, 0x02, 0x47, 0x2F),
    Role("UK2_DF03", "DF03", 0x86, T_EXT, 0x03, 0x27, 0x30),
)
ROLE = {r.name: r for r in ROLES}


def master_key(name: str) -> bytes:
    """Deterministic test master key for a role or a DF master key ("MASTER_<df>")."""
    return sm3(b"healthcard-sim test master key " + name.encode())[:16]


def card_key(name: str, card_factor: bytes, cipher: BlockCipher = BlockCipher.SM4) -> bytes:
    """The diversified key the card stores for a role."""
    if name.startswith("MASTER_"):
        return diversify(cipher, master_key(name), card_factor)
    role = ROLE[name]
    factors = [card_factor] if role.levels == 1 else [card_factor, CITY_FACTOR]
    return diversify_levels(cipher, master_key(name), factors)


# --- file layout (docs/reference/healthcard-layout.md §1.2, §2.2) ------------------------------


@dataclass(frozen=True)
class FileSpec:
    df: str
    fid: int
    kind: int  # CREATE FILE type byte
    read: int
    write: int
    erase: int = 0xFF
    size: int = 0  # binary / variable
    nrec: int = 0
    reclen: int = 0
    items: tuple[tuple[int, int], ...] = ()  # (tag, value length) for TLV record files


NEVER = 0xEF
FILES: tuple[FileSpec, ...] = (
    FileSpec("DDF1", 0xEF05, 0x2C, 0xF0, NEVER, items=(
        (0x01, 1), (0x02, 4), (0x03, 30), (0x04, 11), (0x05, 180), (0x06, 4), (0x08, 18),
        (0x09, 3), (0x0A, 10), (0x39, 3))),
    FileSpec("DDF1", 0xEF06, 0x2C, 0x11, NEVER,
             items=((0x0B, 30), (0x0C, 1), (0x0D, 1), (0x0E, 4), (0x0F, 18))),
    FileSpec("DDF1", 0xEF07, 0x28, 0x11, 0x22, size=3074),
    FileSpec("DDF1", 0xEF08, 0xAC, 0x11, 0x22,
             items=((0x07, 4), (0x10, 20), (0x11, 20), (0x12, 1), (0x13, 1), (0x14, 1))),
    FileSpec("DF01", 0xEF05, 0xAC, 0x11, 0x22,
             items=((0x15, 1), (0x16, 100), (0x17, 1), (0x18, 100))),
    FileSpec("DF01", 0xEF06, 0xAC, 0x11, 0x22, items=tuple(
        (tag, length) for base in (0x19, 0x1C, 0x1F)
        for tag, length in ((base, 30), (base + 1, 1), (base + 2, 20)))),
    FileSpec("DF01", 0xEF07, 0xAC, 0x11, 0x22, items=((0x22, 1), (0x23, 1), (0x24, 3))),
    FileSpec("DF01", 0xEF08, 0xAC, 0x11, 0x22,
             items=((0x25, 1), (0x26, 18), (0x27, 17), (0x28, 18))),
    FileSpec("DF02", 0xEF05, 0xAC, 0x11, 0x22,
             items=(*((tag, 1) for tag in range(0x29, 0x37)), (0x37, 40))),
    FileSpec("DF02", 0xEF06, 0xAC, 0x11, 0x33, items=((0x38, 1),)),
    FileSpec("DF02", 0xEF07, 0x2E, 0x11, 0x44, nrec=3, reclen=120),
    FileSpec("DF02", 0xEF08, 0x2E, 0x11, 0x44, nrec=10, reclen=24),
    FileSpec("DF03", 0xEF05, 0x2A, 0x11, 0x22, 0x33, nrec=3, reclen=1),
    FileSpec("DF03", 0xEF06, 0x2A, 0x11, 0x22, 0x33, nrec=5, reclen=1),
    *(FileSpec("DF03", 0xEE00 + n, 0x28, 0x11, 0x22, size=1893) for n in (1, 2, 3)),
    *(FileSpec("DF03", 0xED00 + n, 0x28, 0x11, 0x22, size=3267) for n in (1, 2, 3, 4, 5)),
)


def files_in(df: str) -> list[FileSpec]:
    return [f for f in FILES if f.df == df]


def file_spec(df: str, fid: int) -> FileSpec:
    return next(f for f in FILES if f.df == df and f.fid == fid)


#: Default record values (tag -> value) for a test holder; everything else is zero-filled.
SAMPLE_VALUES: dict[int, bytes] = {
    0x01: b"1", 0x02: b"V1.1", 0x06: bytes.fromhex("20130401"), 0x08: b"110101199001011234",
    0x39: bytes.fromhex("210000"), 0x0B: "张三".encode("gbk"), 0x0C: b"\x01", 0x0D: b"\x01",
    0x07: bytes.fromhex("2011FFFF"),
}


def tlv(tag: int, length: int, value: bytes | None = None) -> bytes:
    body = (SAMPLE_VALUES.get(tag, b"") if value is None else value)[:length]
    return bytes((tag, length)) + body + bytes(length - len(body))


# --- APDU plumbing -------------------------------------------------------------------------


class IssuanceError(AssertionError):
    pass


def apdu(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: int | None = None) -> bytes:
    out = bytes((cla, ins, p1, p2))
    if data:
        out += bytes((len(data),)) + data
    if le is not None:
        out += bytes((le & 0xFF,))
    return out


def run(send: Send, raw: bytes, expect: int = 0x9000) -> bytes:
    reply = send(raw)
    sw = int.from_bytes(reply[-2:], "big")
    if sw != expect:
        raise IssuanceError(f"{raw.hex().upper()} -> SW {sw:04X}, expected {expect:04X}")
    return reply[:-2]


def select(send: Send, fid: int) -> bytes:
    return run(send, apdu(0x00, 0xA4, 0x00, 0x00, fid.to_bytes(2, "big")))


def create_df(fid: int, size: int, create: int, erase: int, app_fid: int, name: bytes) -> bytes:
    data = bytes((0x38,)) + size.to_bytes(2, "big") + bytes((create, erase, app_fid))
    return apdu(0x80, 0xE0, fid >> 8, fid & 0xFF, data + b"\xff\xff" + name)


def create_keyfile(size: int, sfi: int, add: int) -> bytes:
    return apdu(0x80, 0xE0, 0, 0, b"\x3f" + size.to_bytes(2, "big") + bytes((sfi, add, 0xFF, 0xFF)))


def create_ef(spec: FileSpec) -> bytes:
    if spec.kind & 0x3F in (0x2A, 0x2E):
        dims = bytes((spec.nrec, spec.reclen))
    else:
        size = spec.size or sum(2 + n for _, n in spec.items)
        dims = size.to_bytes(2, "big")
    data = bytes((spec.kind,)) + dims + bytes((spec.read, spec.write, spec.erase, 0xFF))
    return apdu(0x80, 0xE0, spec.fid >> 8, spec.fid & 0xFF, data)


def write_key_plain(kid: int, key_type: int, use: int, change: int, b3: int, b4: int,
                    value: bytes) -> bytes:
    return apdu(0x80, 0xD4, 0x01, kid, bytes((key_type, use, change, b3, b4)) + value)


def _issue_keys(send: Send, df: str, card_factor: bytes, cipher: BlockCipher) -> None:
    master = card_key(f"MASTER_{df}", card_factor, cipher)
    run(send, write_key_plain(0x00, T_EXT, 0xF0, 0xAA, MASTER_FOLLOW_UP, 0x33, master))
    for role in ROLES:
        if role.df != df:
            continue
        value = card_key(role.name, card_factor, cipher)
        if role.key_type == T_EXT:
            header = (T_EXT, 0xF0, 0xAA, role.follow_up, AUTH_COUNTER)
        elif role.key_type == T_LINE:
            header = (T_LINE, 0xF0, 0xAA, 0xFF, 0x33)
        else:
            header = (T_INT, 0xF0, 0xAA, 0x01, 0x00)
        run(send, write_key_plain(role.kid, *header, value))


def _issue_files(send: Send, df: str) -> None:
    for spec in files_in(df):
        run(send, create_ef(spec))
    for spec in files_in(df):
        if spec.items:
            select(send, spec.fid)
            for tag, length in spec.items:
                run(send, apdu(0x00, 0xE2, 0x00, 0x00, tlv(tag, length)))
        elif spec.kind == 0x2A:
            select(send, spec.fid)
            for _ in range(spec.nrec):
                run(send, apdu(0x00, 0xE2, 0x00, 0x00, b"\xff" * spec.reclen))


def issue_national_card(
    send: Send, card_factor: bytes, *, cipher: BlockCipher = BlockCipher.SM4,
    end_issuance: bool = True,
) -> None:
    """Personalize a blank simulated card into the national 32K layout."""
    run(send, create_df(0x3F00, 0xFFFF, 0xF0, 0xAA, 0x95, MF_NAME))
    run(send, create_keyfile(0x0100, 0x00, 0xF0))
    _issue_keys(send, "MF", card_factor, cipher)
    run(send, create_df(0xDDF1, 0x2000, 0xF0, 0xAA, 0x95, DDF1_NAME))
    run(send, create_keyfile(0x0100, 0x00, 0xF0))
    _issue_keys(send, "DDF1", card_factor, cipher)
    _issue_files(send, "DDF1")
    for df in ("DF01", "DF02", "DF03"):
        select(send, FID["DDF1"])
        run(send, create_df(FID[df], 0x8000, 0xF0, 0xAA, 0xFF, DF_NAMES[df]))
        run(send, create_keyfile(0x0100, 0x80 | (FID[df] & 0x1F), 0xF0))
        _issue_keys(send, df, card_factor, cipher)
        _issue_files(send, df)
    if end_issuance:
        run(send, apdu(0x80, 0xE8, 0x00, 0x00, le=0))
    select(send, FID["MF"])


# --- SAM key file --------------------------------------------------------------------------


def sam_key_file(cipher: BlockCipher = BlockCipher.SM4) -> dict[str, Any]:
    return {
        "format": "healthcard-sim-sam/1",
        "algorithm": cipher.name,
        "serial": "00000000000000000042",
        "pin": SAM_PIN,
        "pin_tries": 3,
        "keys": [
            {"index": f"{r.sam_p2:02X}", "usage": f"{r.sam_p1:02X}", "role": r.name,
             "key": master_key(r.name).hex()}
            for r in ROLES
        ],
        "sm2_private_key": f"{SAM_SM2_PRIVATE:064X}",
    }


def write_sam_key_file(path: Path, cipher: BlockCipher = BlockCipher.SM4) -> Path:
    path.write_text(json.dumps(sam_key_file(cipher), indent=1))
    return path


# --- host-side cryptograms (computed directly, for tests) -------------------------------------


def factors_for(role: Role, card_factor: bytes) -> list[bytes]:
    return [card_factor] if role.levels == 1 else [card_factor, CITY_FACTOR]


def ext_auth(role_name: str, card_factor: bytes, challenge: bytes,
             plain: bytes = RK_PLAIN, cipher: BlockCipher = BlockCipher.SM4) -> bytes:
    """``00 82 00 ref 11 crypt || A || 01`` for the health-card form."""
    role = ROLE[role_name]
    session = diversify(cipher, card_key(role_name, card_factor, cipher), challenge)
    if cipher.block_size == 16:
        crypt = xor_fold(ecb_encrypt(cipher, session, plain + bytes(8)))
    else:  # 3DES: E_SK(A), no fold (docs/cos.md §5)
        crypt = ecb_encrypt(cipher, session, plain)
    return apdu(0x00, 0x82, 0x00, role.ref, crypt + plain + b"\x01")


def sm_wrap(cla_ins_p1_p2: bytes, plain: bytes, stk_card: bytes, challenge: bytes,
            cipher: BlockCipher = BlockCipher.SM4) -> bytes:
    """Health-card SM command ``04 INS P1 P2 Lc' E || MAC`` (docs/cos.md §6)."""
    session = diversify(cipher, stk_card, challenge)
    body = line_encrypt(cipher, session, plain)
    header = cla_ins_p1_p2 + bytes((len(body) + 4,))
    mac = fmcos_mac(cipher, session, header + body, bytes(cipher.block_size))
    return header + body + mac


def session_mac_apdu(header4: bytes, key_card: bytes, challenge: bytes,
                     cipher: BlockCipher = BlockCipher.SM4) -> bytes:
    """``CLA INS P1 P2 04 MAC`` with MAC under diversify(key, challenge), IV zero."""
    session = diversify(cipher, key_card, challenge)
    header = header4 + b"\x04"
    return header + fmcos_mac(cipher, session, header, bytes(cipher.block_size))


class Channel:
    """Tiny helper over a ``send`` function: returns (data, SW)."""

    def __init__(self, send: Send, card_factor: bytes,
                 cipher: BlockCipher = BlockCipher.SM4) -> None:
        self.send = send
        self.card_factor = card_factor
        self.cipher = cipher

    def __call__(self, raw: bytes | str) -> tuple[bytes, int]:
        """Send an APDU; hex text is checked to be well formed (typos would give 6700)."""
        if isinstance(raw, str):
            raw = bytes.fromhex(raw.replace(" ", ""))
            CommandApdu.from_bytes(raw)
        return self.raw(raw)

    def raw(self, raw: bytes | str) -> tuple[bytes, int]:
        """Send bytes as they are (also malformed ones)."""
        if isinstance(raw, str):
            raw = bytes.fromhex(raw.replace(" ", ""))
        reply = self.send(raw)
        return reply[:-2], int.from_bytes(reply[-2:], "big")

    def select_path(self, *names: str) -> None:
        for name in names:
            _data, sw = self(apdu(0x00, 0xA4, 0x00, 0x00, FID[name].to_bytes(2, "big")))
            assert sw == 0x9000, f"SELECT {name}: {sw:04X}"

    def select_ef(self, fid: int) -> int:
        return self(apdu(0x00, 0xA4, 0x00, 0x00, fid.to_bytes(2, "big")))[1]

    def challenge(self) -> bytes:
        data, sw = self("0084000008")
        assert sw == 0x9000 and len(data) == 8
        return data

    def auth(self, role_name: str, plain: bytes = RK_PLAIN) -> int:
        chal = self.challenge()
        return self(ext_auth(role_name, self.card_factor, chal, plain, self.cipher))[1]

    def sm(self, header4: bytes, plain: bytes, stk_name: str) -> int:
        chal = self.challenge()
        stk = card_key(stk_name, self.card_factor, self.cipher)
        return self(sm_wrap(header4, plain, stk, chal, self.cipher))[1]


def hexes(items: Iterable[bytes]) -> list[str]:
    return [i.hex().upper() for i in items]


# --- ready-made cards -------------------------------------------------------------------------

_ISSUED: dict[tuple[bytes, str, str, bool], bytes] = {}


def issued_image_bytes(card_factor: bytes = TRACE_CARD_FACTOR, protocol: str = "T=1",
                       cipher: BlockCipher = BlockCipher.SM4, end: bool = True) -> bytes:
    """Encoded image of a freshly issued card (cached: issuance runs once per variant)."""
    from healthcard_apdu.sim import SimCard
    from healthcard_apdu.sim.image import encode_image

    cache_key = (card_factor, protocol, cipher.name, end)
    if cache_key not in _ISSUED:
        card = SimCard.blank(card_factor, protocol="T=1", cipher16=cipher)
        card.power_on()
        issue_national_card(card.process, card_factor, cipher=cipher, end_issuance=end)
        card.image.protocol = protocol
        _ISSUED[cache_key] = encode_image(card.image)
    return _ISSUED[cache_key]


def issued_card(card_factor: bytes = TRACE_CARD_FACTOR, protocol: str = "T=1",
                cipher: BlockCipher = BlockCipher.SM4, end: bool = True, **kwargs: Any) -> Any:
    """A powered, issued in-memory SimCard (kwargs go to SimCard)."""
    from healthcard_apdu.sim import SimCard
    from healthcard_apdu.sim.image import decode_image

    card = SimCard(decode_image(issued_image_bytes(card_factor, protocol, cipher, end)), **kwargs)
    card.power_on()
    return card
