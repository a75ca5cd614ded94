"""Response shaping for T=1 and T=0 cards, and GET RESPONSE.

Both protocols see whole APDUs (vpcd passes them unchanged); what differs is how a card
hands back response data:

* T=1: data comes back with the command. If Le is given and shorter than the data, the
  card answers ``6C xx`` (xx = the right length).
* T=0: a command that carries data (case 3/4) or has no Le gets ``61 xx`` and the data
  waits for GET RESPONSE; a case-2 command whose Le differs from the data length gets
  ``6C xx`` (Le 00 means 256).
* Error status words carry no data.
* ``whole_record_le00`` (a real-card quirk): READ RECORD with Le = 00 returns the whole record
  with ``9000`` under both protocols, as the cards in public reader logs did.
"""

from __future__ import annotations

from healthcard_apdu.apdu.command import CommandApdu

SW_OK = 0x9000
SW_NOTHING_PENDING = 0x6985
_READ_RECORD = 0xB2


def _is_normal(sw: int) -> bool:
    return sw == SW_OK or sw >> 8 in (0x62, 0x63)


def _len_byte(n: int) -> int:
    return n & 0xFF  # 256 -> 00


class ResponseShaper:
    """Turns (data, SW) into wire bytes for one protocol; keeps GET RESPONSE data."""

    def __init__(self, protocol: str, *, whole_record_le00: bool = False) -> None:
        self.protocol = protocol
        self.pending = b""
        self.whole_record_le00 = whole_record_le00

    def clear(self) -> None:
        self.pending = b""

    def shape(self, cmd: CommandApdu, data: bytes, sw: int) -> tuple[bytes, int]:
        """The (data, SW) that goes on the wire for a command's result."""
        self.pending = b""
        if not data or not _is_normal(sw):
            return b"", sw
        if self.whole_record_le00 and cmd.ins == _READ_RECORD and cmd.le == 256 and not cmd.data:
            return data, sw
        if self.protocol == "T=0":
            if cmd.data or cmd.le is None:
                self.pending = data[:256] if sw == SW_OK else b""
                if not self.pending:
                    return b"", sw
                return b"", 0x6100 | _len_byte(len(self.pending))
            if cmd.le != len(data):
                return b"", 0x6C00 | _len_byte(len(data))
            return data, sw
        if cmd.le is not None and cmd.le < len(data) <= 256:
            return b"", 0x6C00 | _len_byte(len(data))
        return data, sw

    def get_response(self, cmd: CommandApdu) -> tuple[bytes, int]:
        """GET RESPONSE ``00 C0 00 00 Le``: Le 00 takes what is there (up to 256)."""
        if cmd.p1 or cmd.p2:
            return b"", 0x6A86
        if not self.pending:
            return b"", SW_NOTHING_PENDING
        available = len(self.pending)
        le = 256 if cmd.le is None else cmd.le
        if le == 256:
            take = min(available, 256)
        elif le > available:
            return b"", 0x6C00 | _len_byte(available)
        else:
            take = le
        out, self.pending = self.pending[:take], self.pending[take:]
        if self.pending:
            return out, 0x6100 | _len_byte(min(len(self.pending), 256))
        return out, SW_OK
