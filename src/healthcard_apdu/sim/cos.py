"""Command interpreter of the simulated user card (FMCOS 2.0 dialect + health-card forms).

Every handler takes the parsed command and returns ``(data, SW)``; protocol shaping
(61xx / 6Cxx / GET RESPONSE) happens in :mod:`healthcard_apdu.sim.protocol`. Handlers
check everything before they change state, so a refused command changes nothing except
try counters. ``dirty`` tells the card to persist the image after the command.

All choices the public sources leave open are documented in docs/cos.md.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.crypto import (
    BlockCipher,
    CryptoError,
    challenge_iv,
    diversify,
    ecb_decrypt,
    ecb_encrypt,
    fmcos_mac,
    line_decrypt,
    xor_fold,
)
from healthcard_apdu.sim.faults import OpCost
from healthcard_apdu.sim.fs import (
    MAX_DF_DEPTH,
    MF_FID,
    Df,
    Ef,
    EfKind,
    access_ok,
)
from healthcard_apdu.sim.image import CardImage
from healthcard_apdu.sim.keys import (
    PROTECTED_BITS,
    TYPE_DES_DECRYPT,
    TYPE_DES_ENCRYPT,
    TYPE_DES_MAC,
    TYPE_EXTERNAL,
    TYPE_INTERNAL,
    TYPE_LINE_PROTECTION,
    TYPE_PIN,
    Key,
    KeyFile,
    base_type,
)

Result = tuple[bytes, int]
Handler = Callable[[CommandApdu, "bytes | None"], Result]

OK = 0x9000

#: Key identifiers of the health-card roles inside a DF key file (docs/cos.md §4).
KID_MASTER = 0x00
KID_STK = 0x02
KID_LOCK = 0x03
#: Health-card EXTERNAL / INTERNAL AUTHENTICATE data length: crypt(8) || A(8) || version.
HEALTH_AUTH_LEN = 0x11
#: Secure-messaging commands are short APDUs: Lc' is one byte of the MAC input.
_MAX_SHORT_LC = 0xFF
#: EF type bytes accepted by CREATE FILE (low six bits; 0x40 / 0x80 are protection bits).
_EF_KINDS = {kind.value: kind for kind in EfKind}
_DF_TYPE = 0x38
_KEYFILE_TYPE = 0x3F

#: Allowed CLA bytes per INS.
_CLA = {
    0xA4: {0x00}, 0xB0: {0x00}, 0xB2: {0x00}, 0x84: {0x00}, 0x82: {0x00}, 0x88: {0x00},
    0x20: {0x00}, 0xD6: {0x00, 0x04}, 0xDC: {0x00, 0x04}, 0xE2: {0x00, 0x04},
    0xD2: {0x00, 0x04, 0x80, 0x84}, 0x0C: {0x00, 0x04, 0x80, 0x84},
    0xE0: {0x80}, 0x0E: {0x80}, 0xE8: {0x80}, 0xD4: {0x80, 0x84}, 0x5E: {0x80},
    0x1E: {0x84}, 0x18: {0x84}, 0x16: {0x84},
}
#: Commands a blocked application still answers.
_ALLOWED_WHEN_APP_BLOCKED = frozenset({0xA4, 0x84, 0x18})


def _tlv_ok(record: bytes) -> bool:
    """SIMPLE-TLV record: one tag byte (not 00/FF), one length byte, exactly that value."""
    return len(record) >= 2 and record[0] not in (0x00, 0xFF) and record[1] == len(record) - 2


class UserCardOS:
    """The user card's command set over a :class:`CardImage` (session state included)."""

    def __init__(self, image: CardImage, *, rng: Callable[[int], bytes] = os.urandom) -> None:
        self.image = image
        self.rng = rng
        self.cost = OpCost()
        self.dirty = False
        self.reset_session()
        self._handlers: dict[int, Handler] = {
            0xA4: self._select, 0xB0: self._read_binary, 0xD6: self._update_binary,
            0xB2: self._read_record, 0xDC: self._update_record, 0xE2: self._append_record,
            0xD2: self._flag_record, 0x0C: self._flag_record, 0x84: self._get_challenge,
            0x82: self._external_authenticate, 0x88: self._internal_authenticate,
            0x20: self._verify, 0x5E: self._change_pin, 0x1E: self._application_block,
            0x18: self._application_unblock, 0x16: self._card_block, 0xE0: self._create_file,
            0xD4: self._write_key, 0x0E: self._erase_df, 0xE8: self._end_issuance,
        }

    # --- session -------------------------------------------------------------------------

    def reset_session(self) -> None:
        """State lost on reset / power-off: current DF is the MF, SSRs 0, no challenge."""
        self.cur_df: Df = self.image.mf
        self.cur_ef: Ef | None = None
        self.ssr = 0
        self.mf_ssr = 0
        self.challenge: bytes | None = None

    def attach(self, image: CardImage) -> None:
        """Use another image (reloaded from disk or rolled back); resets the session."""
        self.image = image
        self.reset_session()

    def execute(self, cmd: CommandApdu) -> Result:
        """Run one command (not GET RESPONSE) and return (data, SW)."""
        challenge, self.challenge = self.challenge, None
        if self.image.card_blocked:
            return b"", 0x6A81
        handler = self._handlers.get(cmd.ins)
        if handler is None:
            return b"", 0x6D00
        if cmd.cla not in _CLA[cmd.ins]:
            return b"", 0x6E00
        blocked = max((df.blocked for df in self.cur_df.path() if not df.is_mf), default=0)
        if blocked and cmd.ins not in _ALLOWED_WHEN_APP_BLOCKED:
            return b"", 0x9303 if blocked == 2 else 0x6A81
        return handler(cmd, challenge)

    # --- helpers -------------------------------------------------------------------------

    def _ok(self, ac: int) -> bool:
        return access_ok(ac, self.ssr, self.mf_ssr)

    def _set_state(self, state: int) -> None:
        self.ssr = state
        if self.cur_df.is_mf:
            self.mf_ssr = state

    def _enter_df(self, df: Df) -> None:
        self.cur_df, self.cur_ef = df, None
        self.ssr = 0
        if df.is_mf:
            self.mf_ssr = 0

    def _cipher(self, key: bytes) -> BlockCipher:
        return self.image.cipher16 if len(key) == 16 else BlockCipher.TDES

    def _touch(self, length: int) -> None:
        """Account an EEPROM write of ``length`` bytes and mark the image dirty."""
        self.dirty = True
        self.cost.write(0, max(length, 1))

    def _keyfile(self, df: Df | None = None) -> KeyFile | None:
        return (df or self.cur_df).keyfile

    def _find_key(self, base: int, kid: int, df: Df | None = None) -> Key | None:
        kf = self._keyfile(df)
        return kf.find(base, kid) if kf is not None else None

    def _count_failure(self, key: Key, sw_when_left: int | None = None) -> Result:
        left = key.record_failure()
        self._touch(1)
        if sw_when_left is not None:
            return b"", sw_when_left
        return b"", 0x63C0 | left

    def _count_success(self, key: Key) -> None:
        if key.record_success():
            self._touch(1)

    def _session_mac_check(
        self, key: Key, challenge: bytes | None, mac_input: bytes, mac: bytes
    ) -> int:
        """Check a MAC made with SK = diversify(key, challenge), IV zero. Returns SW."""
        if key.blocked:
            return 0x6983
        if challenge is None or len(challenge) != 8:
            return 0x6985
        cipher = self._cipher(key.value)
        session = diversify(cipher, key.value, challenge)
        expected = fmcos_mac(cipher, session, mac_input, bytes(cipher.block_size))
        self.cost.cipher_blocks += 1 + len(mac_input) // cipher.block_size + 1
        if not hmac.compare_digest(expected, mac):
            self._count_failure(key)
            return 0x9302
        self._count_success(key)
        return OK

    def _payload(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        """The plain data of a write: as sent, or decrypted and MAC-checked when CLA is 04."""
        if cmd.cla == 0x04:
            return self._unwrap_sm(cmd, chal)
        return cmd.data, OK

    def _unwrap_sm(self, cmd: CommandApdu, challenge: bytes | None) -> tuple[bytes, int]:
        """Health-card SM form: data = E || MAC4 under SK = diversify(STK, challenge)."""
        stk = self._find_key(TYPE_LINE_PROTECTION, KID_STK)
        if stk is None:
            return b"", 0x6A88
        cipher = self._cipher(stk.value)
        body, mac = cmd.data[:-4], cmd.data[-4:]
        if len(cmd.data) > _MAX_SHORT_LC:  # Lc' is one byte of the MAC input
            return b"", 0x6700
        if len(cmd.data) < 4 + cipher.block_size or len(body) % cipher.block_size:
            return b"", 0x6988
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data)))
        sw = self._session_mac_check(stk, challenge, header + body, mac)
        if sw != OK:
            return b"", sw
        assert challenge is not None
        session = diversify(cipher, stk.value, challenge)
        try:
            plain = line_decrypt(cipher, session, body)
        except CryptoError:
            return b"", 0x6988
        self.cost.cipher_blocks += len(body) // cipher.block_size
        return plain, OK

    def _write_allowed(self, cmd: CommandApdu, ef: Ef, ac: int) -> int:
        """During issuance every write is allowed; afterwards CLA and access rules apply."""
        if not self.image.issued:
            return OK
        if cmd.cla == 0x00 and ef.needs_sm:
            return 0x6900
        return OK if self._ok(ac) else 0x6982

    def _resolve_fid(self, fid: int) -> Df | Ef | None:
        if fid == MF_FID:
            return self.image.mf
        cur = self.cur_df
        child = cur.children.get(fid)
        if child is not None:
            return child
        if fid == cur.fid:
            return cur
        parent = cur.parent
        if parent is not None:
            if fid == parent.fid:
                return parent
            sibling = parent.children.get(fid)
            if isinstance(sibling, Df):
                return sibling
        return None

    def _ef_for(self, sfi: int, kinds_record: bool | None) -> tuple[Ef | None, int]:
        """Current EF, or the EF with this SFI (then it becomes current)."""
        if sfi:
            ef = self.cur_df.ef_by_sfi(sfi)
            if ef is None:
                return None, 0x6A82
            self.cur_ef = ef
        ef = self.cur_ef
        if ef is None:
            return None, 0x6986
        if kinds_record is not None and ef.kind.is_record != kinds_record:
            return None, 0x6981
        return ef, OK

    # --- SELECT --------------------------------------------------------------------------

    def _select(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        p1, p2, data = cmd.p1, cmd.p2, cmd.data
        if p2 not in (0x00, 0x0C):
            return b"", 0x6A86
        target: Df | Ef | None
        if p1 == 0x00:
            if not data:
                target = self.image.mf
            elif len(data) != 2:
                return b"", 0x6700
            else:
                target = self._resolve_fid(int.from_bytes(data, "big"))
        elif p1 == 0x04:
            if not 1 <= len(data) <= 16:
                return b"", 0x6700
            target = next((df for df in self.image.mf.walk() if df.name == data), None)
        elif p1 in (0x01, 0x02):
            if len(data) != 2:
                return b"", 0x6700
            child = self.cur_df.children.get(int.from_bytes(data, "big"))
            want_df = p1 == 0x01
            target = child if child is not None and isinstance(child, Df) == want_df else None
        elif p1 == 0x03:
            target = self.cur_df.parent
        else:
            return b"", 0x6A86
        if target is None:
            return b"", 0x6A82
        if isinstance(target, Ef):
            self.cur_ef = target
            return b"", OK
        self._enter_df(target)
        return (b"" if p2 == 0x0C else target.fci()), OK

    # --- binary files --------------------------------------------------------------------

    def _read_binary(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        sfi, offset = _binary_address(cmd)
        ef, sw = self._ef_for(sfi, kinds_record=False)
        if ef is None:
            return b"", sw
        if not self._ok(ef.read_ac):
            return b"", 0x6982
        if offset >= ef.size:
            return b"", 0x6B00
        le = 256 if cmd.le is None else cmd.le
        n = min(le, ef.size - offset)
        data = bytes(ef.data[offset : offset + n])
        if n < le and le != 256:
            return data, 0x6282
        return data, OK

    def _update_binary(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        sfi, offset = _binary_address(cmd)
        ef, sw = self._ef_for(sfi, kinds_record=False)
        if ef is None:
            return b"", sw
        sw = self._write_allowed(cmd, ef, ef.write_ac)
        if sw != OK:
            return b"", sw
        data, sw = self._payload(cmd, chal)
        if sw != OK:
            return b"", sw
        if not data:
            return b"", 0x6700
        if offset >= ef.size:
            return b"", 0x6B00
        if offset + len(data) > ef.size:
            return b"", 0x6700
        ef.data[offset : offset + len(data)] = data
        self.dirty = True
        self.cost.write(offset, len(data))
        return b"", OK

    # --- record files --------------------------------------------------------------------

    def _read_record(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        mode, sfi = cmd.p2 & 0x07, cmd.p2 >> 3
        if mode not in (0x00, 0x04) or sfi == 0x1F:
            return b"", 0x6A86
        ef, sw = self._ef_for(sfi, kinds_record=True)
        if ef is None:
            return b"", sw
        if not self._ok(ef.read_ac):
            return b"", 0x6982
        if mode == 0x04:
            if cmd.p1 == 0:
                return b"", 0x6A86
            if cmd.p1 > len(ef.records):
                return b"", 0x6A83
            return ef.records[cmd.p1 - 1], OK
        index = ef.record_by_tag(cmd.p1)
        if index is None:
            return b"", 0x6A83
        return ef.records[index], OK

    def _check_new_record(self, ef: Ef, record: bytes) -> int:
        if ef.kind is EfKind.VARIABLE:
            return OK if _tlv_ok(record) else 0x6A80
        return OK if len(record) == ef.reclen else 0x6700

    def _update_record(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        mode, sfi = cmd.p2 & 0x07, cmd.p2 >> 3
        if mode not in (0x03, 0x04) or sfi == 0x1F:
            return b"", 0x6A86
        ef, sw = self._ef_for(sfi, kinds_record=True)
        if ef is None:
            return b"", sw
        if mode == 0x03 and (ef.kind is not EfKind.CYCLIC or cmd.p1 != 0):
            return b"", 0x6A86 if ef.kind is EfKind.CYCLIC else 0x6981
        if mode == 0x04 and cmd.p1 == 0:
            return b"", 0x6A86
        sw = self._write_allowed(cmd, ef, ef.write_ac)
        if sw != OK:
            return b"", sw
        if mode == 0x04 and cmd.p1 > len(ef.records):
            return b"", 0x6A83
        record, sw = self._payload(cmd, chal)
        if sw != OK:
            return b"", sw
        sw = self._check_new_record(ef, record)
        if sw != OK:
            return b"", sw
        if mode == 0x03:
            return self._push_cyclic(ef, record)
        old = ef.records[cmd.p1 - 1]
        if ef.kind is EfKind.VARIABLE:
            if len(record) != len(old):
                return b"", 0x6700
            if record[0] != old[0]:
                return b"", 0x6A80
        ef.records[cmd.p1 - 1] = record
        self._touch(len(record))
        return b"", OK

    def _push_cyclic(self, ef: Ef, record: bytes) -> Result:
        ef.records.insert(0, record)
        del ef.records[ef.nrec :]
        self._touch(len(record))
        return b"", OK

    def _append_record(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if cmd.p1 != 0 or cmd.p2 & 0x07 or (cmd.p2 >> 3) == 0x1F:
            return b"", 0x6A86
        ef, sw = self._ef_for(cmd.p2 >> 3, kinds_record=True)
        if ef is None:
            return b"", sw
        sw = self._write_allowed(cmd, ef, ef.write_ac)
        if sw != OK:
            return b"", sw
        record, sw = self._payload(cmd, chal)
        if sw != OK:
            return b"", sw
        sw = self._check_new_record(ef, record)
        if sw != OK:
            return b"", sw
        if ef.kind is EfKind.CYCLIC:
            return self._push_cyclic(ef, record)
        if ef.kind is EfKind.FIXED and len(ef.records) >= ef.nrec:
            return b"", 0x6A84
        if ef.kind is EfKind.VARIABLE and ef.variable_used + len(record) > ef.size:
            return b"", 0x6A84
        ef.records.append(record)
        self._touch(len(record))
        return b"", OK

    def _flag_record(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        """WRITE RECORD (D2) sets a record to 00.., ERASE RECORD (0C) to FF.. (DF03 flags).

        ``xx D2 rr 04 00`` plain, or ``84 D2 rr 04 04 MAC`` with an STK session MAC.
        """
        if cmd.p2 & 0x07 != 0x04 or cmd.p1 == 0:
            return b"", 0x6A86
        ef, sw = self._ef_for(cmd.p2 >> 3, kinds_record=True)
        if ef is None:
            return b"", sw
        erase = cmd.ins == 0x0C
        ac = ef.effective_erase_ac if erase else ef.write_ac
        if self.image.issued and not self._ok(ac):
            return b"", 0x6982
        if cmd.p1 > len(ef.records):
            return b"", 0x6A83
        if len(cmd.data) == 4:
            stk = self._find_key(TYPE_LINE_PROTECTION, KID_STK)
            if stk is None:
                return b"", 0x6A88
            header = bytes((cmd.cla | 0x04, cmd.ins, cmd.p1, cmd.p2, 4))
            sw = self._session_mac_check(stk, chal, header, cmd.data)
            if sw != OK:
                return b"", sw
        elif cmd.data:
            return b"", 0x6700
        old = ef.records[cmd.p1 - 1]
        ef.records[cmd.p1 - 1] = (b"\xff" if erase else b"\x00") * len(old)
        self._touch(len(old))
        return b"", OK

    # --- authentication ------------------------------------------------------------------

    def _get_challenge(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        if cmd.p1 or cmd.p2:
            return b"", 0x6A86
        le = 8 if cmd.le in (None, 256) else cmd.le
        if le not in (4, 8, 16):
            return b"", 0x6700
        self.challenge = self.rng(le)
        return self.challenge, OK

    def _external_authenticate(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if cmd.p1 != 0:
            return b"", 0x6A86
        key = self._find_key(TYPE_EXTERNAL, cmd.p2 & 0x7F)
        if key is None:
            return b"", 0x6A88
        if key.blocked:
            return b"", 0x6983
        if not self._ok(key.use_ac):
            return b"", 0x6982
        cipher = self._cipher(key.value)
        data = cmd.data
        if len(data) == HEALTH_AUTH_LEN:
            if chal is None or len(chal) != 8:
                return b"", 0x6985
            crypt, plain = data[:8], data[8:16]
            session = diversify(cipher, key.value, chal)
            expected = _health_cryptogram(cipher, session, plain)
            self.cost.cipher_blocks += 4
        elif len(data) in (8, cipher.block_size):
            if chal is None or len(chal) > cipher.block_size:
                return b"", 0x6985
            full = ecb_encrypt(cipher, key.value, challenge_iv(chal, cipher.block_size))
            self.cost.cipher_blocks += 1
            crypt, expected = data, full[: len(data)]
        else:
            return b"", 0x6700
        if not hmac.compare_digest(crypt, expected):
            return self._count_failure(key)
        self._count_success(key)
        self._set_state(key.follow_up)
        return b"", OK

    def _internal_authenticate(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        data, kid = cmd.data, cmd.p2 & 0x7F
        if cmd.p1 == 0x00 and len(data) == HEALTH_AUTH_LEN:
            key = self._find_key(TYPE_INTERNAL, kid)
            if key is None and kid == 0 and self.cur_df.keyfile is not None:
                key = self.cur_df.keyfile.first_of(TYPE_INTERNAL)
            if key is None:
                return b"", 0x6A88
            if not self._ok(key.use_ac):
                return b"", 0x6982
            cipher = self._cipher(key.value)
            session = diversify(cipher, key.value, data[:8])
            self.cost.cipher_blocks += 4
            return _health_cryptogram(cipher, session, data[8:16]), OK
        wanted = {0x00: TYPE_DES_ENCRYPT, 0x01: TYPE_DES_DECRYPT, 0x02: TYPE_DES_MAC}
        if cmd.p1 not in wanted:
            return b"", 0x6A86
        key = self._find_key(wanted[cmd.p1], kid)
        if key is None and cmd.p1 == 0x00:
            key = self._find_key(TYPE_INTERNAL, kid)
        if key is None:
            return b"", 0x6A88
        if not self._ok(key.use_ac):
            return b"", 0x6982
        cipher = self._cipher(key.value)
        if not data:
            return b"", 0x6700
        self.cost.cipher_blocks += max(1, len(data) // cipher.block_size)
        if cmd.p1 == 0x02:
            return fmcos_mac(cipher, key.value, data, bytes(cipher.block_size)), OK
        if len(data) % cipher.block_size:
            return b"", 0x6700
        op = ecb_encrypt if cmd.p1 == 0x00 else ecb_decrypt
        return op(cipher, key.value, data), OK

    # --- PIN -----------------------------------------------------------------------------

    @staticmethod
    def _pin_matches(stored: bytes, given: bytes) -> bool:
        return hmac.compare_digest(stored.rstrip(b"\xff"), given.rstrip(b"\xff"))

    def _verify(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        if cmd.p1 != 0:
            return b"", 0x6A86
        key = self._find_key(TYPE_PIN, cmd.p2)
        if key is None:
            return b"", 0x6A88
        if key.blocked:
            return b"", 0x6983
        if not cmd.data:
            return b"", 0x63C0 | key.tries_left
        if not self._ok(key.use_ac):
            return b"", 0x6982
        if len(cmd.data) > len(key.value):
            return b"", 0x6700
        if not self._pin_matches(key.value, cmd.data):
            return self._count_failure(key)
        self._count_success(key)
        self._set_state(key.follow_up)
        return b"", OK

    def _change_pin(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        if cmd.p1 != 0x01:
            return b"", 0x6A86
        key = self._find_key(TYPE_PIN, cmd.p2)
        if key is None:
            return b"", 0x6A88
        if key.blocked:
            return b"", 0x6983
        sep = cmd.data.find(b"\xff")
        if sep <= 0:
            return b"", 0x6A80
        old, new = cmd.data[:sep], cmd.data[sep + 1 :]
        if not new or len(new) > len(key.value) or len(old) > len(key.value):
            return b"", 0x6700
        if not self._pin_matches(key.value, old):
            return self._count_failure(key)
        self._count_success(key)
        key.value = new + b"\xff" * (len(key.value) - len(new))
        self._touch(len(key.value))
        return b"", OK

    # --- application / card block --------------------------------------------------------

    def _lock_mac(self, cmd: CommandApdu, chal: bytes | None, df: Df) -> int:
        if len(cmd.data) != 4:
            return 0x6700
        key = self._find_key(TYPE_LINE_PROTECTION, KID_LOCK, df)
        if key is None:
            return 0x6A88
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2, 4))
        return self._session_mac_check(key, chal, header, cmd.data)

    def _application_block(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if cmd.p1 != 0 or cmd.p2 not in (0x00, 0x01):
            return b"", 0x6A86
        if self.cur_df.is_mf:
            return b"", 0x6985
        sw = self._lock_mac(cmd, chal, self.cur_df)
        if sw != OK:
            return b"", sw
        self.cur_df.blocked = max(self.cur_df.blocked, 2 if cmd.p2 == 0x01 else 1)
        self._touch(1)
        return b"", OK

    def _application_unblock(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if cmd.p1 or cmd.p2:
            return b"", 0x6A86
        if self.cur_df.blocked == 2:
            return b"", 0x9303
        sw = self._lock_mac(cmd, chal, self.cur_df)
        if sw != OK:
            return b"", sw
        if self.cur_df.blocked:
            self.cur_df.blocked = 0
            self._touch(1)
        return b"", OK

    def _card_block(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        if cmd.p1 or cmd.p2:
            return b"", 0x6A86
        sw = self._lock_mac(cmd, chal, self.image.mf)
        if sw != OK:
            return b"", sw
        self.image.card_blocked = True
        self._touch(1)
        return b"", OK

    # --- issuance ------------------------------------------------------------------------

    def _create_file(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        if self.image.issued:
            return b"", 0x6985
        data, cur = cmd.data, self.cur_df
        if not data:
            return b"", 0x6700
        fid = (cmd.p1 << 8) | cmd.p2
        kind_byte = data[0]
        if cur.keyfile is not None and not self._ok(cur.create_ac):
            return b"", 0x6982
        if kind_byte == _KEYFILE_TYPE:
            return self._create_keyfile(data)
        if kind_byte == _DF_TYPE:
            return self._create_df(fid, data)
        kind = _EF_KINDS.get(base_type(kind_byte))
        if kind is None or kind_byte & 0x30 != 0x20:
            return b"", 0x6A80
        if len(data) != 7:
            return b"", 0x6700
        if fid in (MF_FID, 0xFFFF, cur.fid) or fid in cur.children:
            return b"", 0x6A86
        ef = Ef(fid, kind, kind_byte, data[3], data[4], data[5], data[6])
        if kind in (EfKind.BINARY, EfKind.VARIABLE):
            ef.size = int.from_bytes(data[1:3], "big")
            if ef.size == 0:
                return b"", 0x6A80
            if kind is EfKind.BINARY:
                ef.data = bytearray(ef.size)
        else:
            ef.nrec, ef.reclen = data[1], data[2]
            if ef.nrec == 0 or ef.reclen == 0:
                return b"", 0x6A80
            ef.size = ef.nrec * ef.reclen
        if self.image.mf.space + ef.space > self.image.capacity:
            return b"", 0x6A84
        cur.add(ef)
        self._touch(ef.space)
        return b"", OK

    def _create_keyfile(self, data: bytes) -> Result:
        if len(data) != 7:
            return b"", 0x6700
        cur = self.cur_df
        if cur.keyfile is not None:
            return b"", 0x6A86
        size = int.from_bytes(data[1:3], "big")
        if size == 0:
            return b"", 0x6A80
        if self.image.mf.space + size + 8 > self.image.capacity:
            return b"", 0x6A84
        cur.keyfile = KeyFile(size, data[3], data[4], bytes(data[5:7]))
        self._touch(size)
        return b"", OK

    def _create_df(self, fid: int, data: bytes) -> Result:
        if not 8 + 5 <= len(data) <= 8 + 16:
            return b"", 0x6700
        cur, mf = self.cur_df, self.image.mf
        size = int.from_bytes(data[1:3], "big")
        create_ac, erase_ac, app_fid = data[3], data[4], data[5]
        reserved, name = bytes(data[6:8]), bytes(data[8:])
        if fid == MF_FID:
            if mf.children or mf.keyfile is not None:
                return b"", 0x6A86
            mf.name, mf.size, mf.create_ac, mf.erase_ac = name, size, create_ac, erase_ac
            mf.app_fid, mf.reserved = app_fid, reserved
            self._enter_df(mf)
            self._touch(len(data))
            return b"", OK
        if fid in (0xFFFF, 0x0000, cur.fid) or fid in cur.children:
            return b"", 0x6A86
        if cur.depth + 1 > MAX_DF_DEPTH:
            return b"", 0x6A80
        df = Df(fid, name, size, create_ac, erase_ac, app_fid, reserved)
        if mf.space + df.space > self.image.capacity:
            return b"", 0x6A84
        cur.add(df)
        self._enter_df(df)
        self._touch(df.space)
        return b"", OK

    def _write_key(self, cmd: CommandApdu, chal: bytes | None) -> Result:
        kf = self.cur_df.keyfile
        if kf is None:
            return b"", 0x6A82
        if cmd.p2 == 0xFF:
            return b"", 0x6A86
        plaintext_mode = cmd.cla == 0x80
        if plaintext_mode:
            if self.image.issued:
                return b"", 0x6985
            payload = cmd.data
        else:
            payload, sw = self._unwrap_key(cmd, chal, kf)
            if sw != OK:
                return b"", sw
        if len(payload) < 5 + 2:
            return b"", 0x6700
        new_type, use, change, b3, b4 = payload[:5]
        value = bytes(payload[5:])
        if base_type(new_type) == TYPE_PIN:
            if not 2 <= len(value) <= 8:
                return b"", 0x6700
        elif len(value) not in (8, 16):
            return b"", 0x6700
        if cmd.p1 == 0x01:
            existing = kf.find(base_type(new_type), cmd.p2)
            if existing is None:
                if not self._ok(kf.add_ac):
                    return b"", 0x6982
                key = Key(new_type, cmd.p2, use, change, b3, b4, value)
                if kf.used + key.space > kf.size:
                    return b"", 0x6A84
                kf.keys.append(key)
                self._touch(key.space)
                return b"", OK
        else:
            existing = kf.find_type(cmd.p1, cmd.p2)
            if existing is None:
                return b"", 0x6A88
        if not self._ok(existing.change_ac):
            return b"", 0x6982
        if plaintext_mode and existing.type_byte & PROTECTED_BITS:
            return b"", 0x6982
        if len(value) != len(existing.value) or base_type(new_type) != existing.base:
            return b"", 0x6700
        existing.type_byte, existing.use_ac, existing.change_ac = new_type, use, change
        existing.b3, existing.value = b3, value
        if not existing.has_counter:
            existing.b4 = b4
        self._touch(existing.space)
        return b"", OK

    def _unwrap_key(
        self, cmd: CommandApdu, chal: bytes | None, kf: KeyFile
    ) -> tuple[bytes, int]:
        """Ciphertext + MAC under the DF master key (KID 00, type 39), IV = challenge."""
        master = kf.find(TYPE_EXTERNAL, KID_MASTER)
        if master is None:
            return b"", 0x6A88
        if master.blocked:
            return b"", 0x6983
        cipher = self._cipher(master.value)
        body, mac = cmd.data[:-4], cmd.data[-4:]
        if len(cmd.data) > _MAX_SHORT_LC:  # Lc' is one byte of the MAC input
            return b"", 0x6700
        if len(cmd.data) < 4 + cipher.block_size or len(body) % cipher.block_size:
            return b"", 0x6700
        if chal is None or len(chal) > cipher.block_size:
            return b"", 0x6985
        header = bytes((cmd.cla, cmd.ins, cmd.p1, cmd.p2, len(cmd.data)))
        iv = challenge_iv(chal, cipher.block_size)
        expected = fmcos_mac(cipher, master.value, header + body, iv)
        self.cost.cipher_blocks += 2 * (len(body) // cipher.block_size) + 1
        if not hmac.compare_digest(expected, mac):
            return b"", 0x9302
        try:
            return line_decrypt(cipher, master.value, body), OK
        except CryptoError:
            return b"", 0x6988

    def _erase_df(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        if cmd.p1 or cmd.p2 or cmd.data:
            return b"", 0x6A86
        cur = self.cur_df
        if self.image.issued and not cur.is_mf:
            return b"", 0x6985
        if not self._ok(cur.erase_ac):
            return b"", 0x6982
        cur.children.clear()
        cur.keyfile = None
        cur.blocked = 0
        self.cur_ef = None
        self._enter_df(cur)
        if cur.is_mf:
            self.image.issued = False
        self._touch(64)
        return b"", OK

    def _end_issuance(self, cmd: CommandApdu, _chal: bytes | None) -> Result:
        if cmd.p1 or cmd.p2 or cmd.data:
            return b"", 0x6A86
        if self.image.issued:
            return b"", 0x6985
        self.image.issued = True
        self._touch(1)
        return b"", OK


def _health_cryptogram(cipher: BlockCipher, session: bytes, plain: bytes) -> bytes:
    """Health-card authentication cryptogram (docs/cos.md): SM4 folds E(A||00*8) to 8 bytes;
    a 3DES session key encrypts the 8-byte A directly."""
    if cipher.block_size == 16:
        return xor_fold(ecb_encrypt(cipher, session, plain + bytes(8)))
    return ecb_encrypt(cipher, session, plain)


def _binary_address(cmd: CommandApdu) -> tuple[int, int]:
    """(SFI or 0 for the current EF, offset) of READ/UPDATE BINARY: P1 b8 set = SFI in P1."""
    if cmd.p1 & 0x80:
        return cmd.p1 & 0x1F, cmd.p2
    return 0, (cmd.p1 << 8) | cmd.p2
