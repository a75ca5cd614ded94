"""Seeded defects for the simulated user card: one per conformance group.

A defective card is a normal :class:`SimCard` over a copy of an issued image, with either the
image changed (what a faulty personalization leaves behind) or the COS changed by subclassing
:class:`UserCardOS` (what a faulty COS does). The conformance suite's tests prove that each
defect fails exactly the cases that should catch it.

Like the rest of ``sim``, this module knows nothing of the host layers; file targets are
written as FID paths of the national tree (``"DF01/EF08"``: DF01 under DDF1, EF08 in it).
"""

from __future__ import annotations

import enum
import time
from typing import Any

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.sim.card import SimCard
from healthcard_apdu.sim.cos import KID_STK, Result, UserCardOS
from healthcard_apdu.sim.errors import SimError
from healthcard_apdu.sim.fs import Df, Ef
from healthcard_apdu.sim.image import CardImage, decode_image, encode_image
from healthcard_apdu.sim.keys import TYPE_EXTERNAL, TYPE_LINE_PROTECTION, Key

__all__ = ["DEFAULT_TARGETS", "Defect", "DefectiveCardOS", "DefectiveSimCard", "defective_card"]


class Defect(enum.Enum):
    """What is wrong with the card (the conformance group that must catch it in brackets)."""

    #: [reset/ATR] a warm reset keeps the current DF and its security state.
    STATE_SURVIVES_WARM_RESET = "state_survives_warm_reset"
    #: [file structure/FCI] the FCI of the target DF carries a wrong DF name.
    WRONG_FCI = "wrong_fci"
    #: [sizes/record formats] the last TLV record of the target file is one byte too long.
    WRONG_RECORD_LENGTH = "wrong_record_length"
    #: [data item encodings] an item of the target file holds non-decimal BCD nibbles.
    BAD_ITEM_ENCODING = "bad_item_encoding"
    #: [access matrix] the target file is readable without authentication.
    READ_WITHOUT_AUTH = "read_without_auth"
    #: [authentication] external-authentication try counters stop at one try left.
    COUNTER_NEVER_BLOCKS = "counter_never_blocks"
    #: [secure messaging] the MAC of secure-messaging writes (STK) is not checked.
    MAC_NOT_CHECKED = "mac_not_checked"
    #: [cyclic records] a new cyclic record goes to the end; record 1 is dropped when full.
    CYCLIC_APPENDS_AT_END = "cyclic_appends_at_end"
    #: [DF03 signatures] one byte of the target record's signature is wrong.
    BAD_RECORD_SIGNATURE = "bad_record_signature"
    #: [block/unblock] APPLICATION BLOCK answers 9000 but blocks nothing.
    BLOCK_IGNORED = "block_ignored"
    #: [issuance end state] CREATE FILE still works after END ISSUANCE.
    CREATE_AFTER_ISSUANCE = "create_after_issuance"
    #: [timing] INTERNAL AUTHENTICATE takes ``delay`` seconds.
    SLOW_INTERNAL_AUTH = "slow_internal_auth"
    #: [tearing] a torn UPDATE BINARY leaves the first half of its bytes written.
    TORN_WRITE_PARTIAL = "torn_write_partial"


#: Default target of the defects that act on one file or DF.
DEFAULT_TARGETS: dict[Defect, str] = {
    Defect.WRONG_FCI: "DF02",
    Defect.WRONG_RECORD_LENGTH: "DF01/EF07",
    Defect.BAD_ITEM_ENCODING: "DDF1/EF05",
    Defect.READ_WITHOUT_AUTH: "DF01/EF08",
    Defect.BAD_RECORD_SIGNATURE: "DF03/EE01",
}
#: BAD_ITEM_ENCODING: the record (by tag) that gets non-decimal nibbles (06 = FKSJ, a cn date).
BAD_ITEM_TAG = 0x06
#: BAD_RECORD_SIGNATURE: offset of the signature in an EE (1639) or ED (3013) file.
SIGNATURE_OFFSETS = {0xEE: 1639, 0xED: 3013}
_FREE = 0xF0


# --- image defects ---------------------------------------------------------------------------


def _fid(name: str) -> int:
    try:
        return 0x3F00 if name == "MF" else int(name, 16)
    except ValueError:
        raise SimError(f"defect target: {name!r} is not a FID name like DF01 or EF08") from None


def _find_df(image: CardImage, name: str) -> Df:
    fid = _fid(name)
    for node in image.mf.walk():
        if node.fid == fid:
            return node
    raise SimError(f"defect target: the card has no DF {name}")


def _find_ef(image: CardImage, path: str) -> Ef:
    df_name, _, ef_name = path.partition("/")
    node = _find_df(image, df_name).children.get(_fid(ef_name))
    if not isinstance(node, Ef):
        raise SimError(f"defect target: the card has no EF {path}")
    return node


def _longer_last_record(ef: Ef) -> None:
    if not ef.records:
        raise SimError("WRONG_RECORD_LENGTH: the target file has no records")
    last = ef.records[-1]
    ef.records[-1] = bytes((last[0], last[1] + 1)) + last[2:] + b"\x00"


def _bad_nibbles(ef: Ef) -> None:
    for index, record in enumerate(ef.records):
        if record[:1] == bytes((BAD_ITEM_TAG,)) and len(record) > 3:
            ef.records[index] = record[:3] + b"\xab" + record[4:]
            return
    raise SimError(f"BAD_ITEM_ENCODING: no record with tag {BAD_ITEM_TAG:02X} in the target")


def _flip_signature(ef: Ef, path: str) -> None:
    offset = SIGNATURE_OFFSETS.get(ef.fid >> 8)
    if offset is None or offset >= len(ef.data):
        raise SimError(f"BAD_RECORD_SIGNATURE: {path} is not an EE/ED record file")
    ef.data[offset] ^= 0xFF


def _damage_image(image: CardImage, defect: Defect, target: str) -> None:
    if defect is Defect.WRONG_RECORD_LENGTH:
        _longer_last_record(_find_ef(image, target))
    elif defect is Defect.BAD_ITEM_ENCODING:
        _bad_nibbles(_find_ef(image, target))
    elif defect is Defect.READ_WITHOUT_AUTH:
        _find_ef(image, target).read_ac = _FREE
    elif defect is Defect.BAD_RECORD_SIGNATURE:
        _flip_signature(_find_ef(image, target), target)
    elif defect is Defect.WRONG_FCI:
        _find_df(image, target)  # checked now; the FCI is changed when it is sent


# --- COS defects -----------------------------------------------------------------------------


class DefectiveCardOS(UserCardOS):
    """The user-card COS with one seeded misbehaviour."""

    #: Set by :class:`DefectiveSimCard` around a warm reset / a torn command.
    keep_session = False
    tearing = False

    def __init__(self, image: CardImage, *, defect: Defect, target: str = "",
                 delay: float = 0.6, **kwargs: Any) -> None:
        self.defect = defect
        self.target = target
        self.delay = delay
        super().__init__(image, **kwargs)

    def reset_session(self) -> None:
        if self.keep_session and self.defect is Defect.STATE_SURVIVES_WARM_RESET:
            return
        super().reset_session()

    def _select(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        data, sw = super()._select(cmd, _chal)
        if (self.defect is Defect.WRONG_FCI and data[:1] == b"\x6f"
                and self.cur_df.fid == _fid(self.target) and len(data) > 4):
            name_end = 4 + data[3]  # 6F L 84 Ln name...
            data = data[: name_end - 1] + bytes((data[name_end - 1] ^ 0x01,)) + data[name_end:]
        return data, sw

    def _count_failure(self, key: Key, sw_when_left: int | None = None) -> Result:
        if (self.defect is Defect.COUNTER_NEVER_BLOCKS and key.base == TYPE_EXTERNAL
                and key.tries_left <= 1):
            return b"", 0x63C1
        return super()._count_failure(key, sw_when_left)

    def _session_mac_check(
        self, key: Key, challenge: bytes | None, mac_input: bytes, mac: bytes,
        *, count: bool = True,
    ) -> int:
        if (self.defect is Defect.MAC_NOT_CHECKED and key.base == TYPE_LINE_PROTECTION
                and key.kid == KID_STK):
            if key.blocked:
                return 0x6983
            if challenge is None or len(challenge) != 8:
                return 0x6985
            return 0x9000
        return super()._session_mac_check(key, challenge, mac_input, mac, count=count)

    def _push_cyclic(self, ef: Ef, record: bytes) -> Result:
        if self.defect is not Defect.CYCLIC_APPENDS_AT_END:
            return super()._push_cyclic(ef, record)
        ef.records.append(record)
        del ef.records[: max(0, len(ef.records) - ef.nrec)]
        self._touch(len(record))
        return b"", 0x9000

    def _application_block(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        before = self.cur_df.blocked
        result = super()._application_block(cmd, chal)
        if self.defect is Defect.BLOCK_IGNORED:
            self.cur_df.blocked = before
        return result

    def _create_file(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if self.defect is not Defect.CREATE_AFTER_ISSUANCE or not self.image.issued:
            return super()._create_file(cmd, chal)
        self.image.issued = False
        try:
            return super()._create_file(cmd, chal)
        finally:
            self.image.issued = True

    def _internal_authenticate(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if self.defect is Defect.SLOW_INTERNAL_AUTH:
            time.sleep(self.delay)
        return super()._internal_authenticate(cmd, chal)

    def _update_binary(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if not (self.defect is Defect.TORN_WRITE_PARTIAL and self.tearing):
            return super()._update_binary(cmd, chal)
        ef = self.cur_ef
        before = bytes(ef.data) if ef is not None else b""
        result = super()._update_binary(cmd, chal)
        if ef is not None and result[1] == 0x9000:
            changed = [i for i, (a, b) in enumerate(zip(before, ef.data, strict=True)) if a != b]
            for index in changed[len(changed) // 2 :]:
                ef.data[index] = before[index]
        return result


class DefectiveSimCard(SimCard):
    """A :class:`SimCard` whose COS is a :class:`DefectiveCardOS`."""

    def __init__(self, image: CardImage, *, defect: Defect, target: str = "",
                 delay: float = 0.6, **kwargs: Any) -> None:
        super().__init__(image, **kwargs)
        self.defect = defect
        self.os = DefectiveCardOS(self.os.image, defect=defect, target=target, delay=delay,
                                  rng=self.os.rng)

    @property
    def defective_os(self) -> DefectiveCardOS:
        assert isinstance(self.os, DefectiveCardOS)
        return self.os

    def reset(self) -> None:
        self.defective_os.keep_session = True
        try:
            super().reset()
        finally:
            self.defective_os.keep_session = False

    def process(self, apdu: bytes) -> bytes:
        tearing = self.faults.tear_at == self.apdu_count + 1
        if tearing and self.defect is Defect.TORN_WRITE_PARTIAL:
            self.faults.tear_applies = True  # the partial write reaches the EEPROM
        self.defective_os.tearing = tearing
        try:
            return super().process(apdu)
        finally:
            self.defective_os.tearing = False


def defective_card(image: CardImage, defect: Defect, *, target: str | None = None,
                   delay: float = 0.6, **kwargs: Any) -> DefectiveSimCard:
    """A defective card built from a copy of ``image`` (an issued card's image).

    ``target`` overrides :data:`DEFAULT_TARGETS` for the file/DF defects; ``delay`` is the
    SLOW_INTERNAL_AUTH time in seconds; other keyword arguments go to :class:`SimCard`.
    """
    copy = decode_image(encode_image(image))
    where = target or DEFAULT_TARGETS.get(defect, "")
    _damage_image(copy, defect, where)
    return DefectiveSimCard(copy, defect=defect, target=where, delay=delay, **kwargs)
