"""Faults for testing hosts (tearing, removal, hostile replies) and a modeled APDU latency.

APDU indices count every ``process()`` call a card receives, starting at 1, across power
cycles (``SimCard.apdu_count``). Each planned fault fires once.

Latency (ISO/IEC 7816-3 timing, all constants documented in docs/sim.md):

* one character = 12 etu in T=0 (10 bits + 2 guard etu), 11 etu in T=1 (CGT = 11);
  etu = 1 / baud seconds;
* T=1 wraps each APDU in an I-block: prologue NAD PCB LEN + epilogue LRC = 4 bytes per
  direction, plus a block guard time of 22 etu before the card answers;
* T=0 adds one procedure byte (ACK) per command that carries data; the header is 5 bytes;
* card processing: a fixed dispatch cost, a cost per cipher block, per SM3 block and per
  SM2 signature, and EEPROM writes by 64-byte page (2.5 ms erase+write per page touched).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field


class Hostile(enum.Enum):
    """A misbehaving reply, planned for a given APDU index."""

    #: The real reply with one extra byte inserted before the SW (length disagrees with Le).
    WRONG_LENGTH = "wrong_length"
    #: ``61 10`` now, and every GET RESPONSE answers 16 filler bytes + ``61 10`` again.
    ENDLESS_61XX = "endless_61xx"
    #: 1..40 random bytes without meaning.
    GARBAGE = "garbage"
    #: A single byte: no status word at all.
    TRUNCATED = "truncated"


@dataclass
class FaultPlan:
    """What goes wrong, and when (APDU indices are 1-based, see module doc).

    ``tear_at``: power is lost while APDU n executes. With ``tear_applies`` the command's
    writes reach EEPROM (all of them), otherwise none do; either way there is no answer
    and the card counts as removed until re-inserted.
    ``remove_at``: the card is pulled out just before APDU n (nothing executes).
    ``hostile``: APDU index -> misbehaving reply (the command itself is still executed).
    """

    tear_at: int | None = None
    tear_applies: bool = False
    remove_at: int | None = None
    hostile: dict[int, Hostile] = field(default_factory=dict)


@dataclass
class OpCost:
    """Work a command did, filled in by the COS while it runs."""

    cipher_blocks: int = 0
    hash_blocks: int = 0
    signatures: int = 0
    written: list[tuple[int, int]] = field(default_factory=list)  # (offset-ish, length)

    def write(self, offset: int, length: int) -> None:
        if length > 0:
            self.written.append((offset, length))

    def reset(self) -> None:
        self.cipher_blocks = self.hash_blocks = self.signatures = 0
        self.written.clear()


@dataclass
class LatencyModel:
    """Modeled time per APDU; ``total`` accumulates; ``sleep`` makes it real time."""

    baud: int = 9600
    sleep: bool = False
    t0_char_etu: int = 12
    t1_char_etu: int = 11
    t1_block_overhead: int = 4
    t1_bgt_etu: int = 22
    dispatch_s: float = 0.0003
    cipher_block_s: float = 0.00005
    hash_block_s: float = 0.00004
    signature_s: float = 0.060
    eeprom_page: int = 64
    eeprom_page_s: float = 0.0025
    total: float = 0.0
    apdus: int = 0

    def transfer_seconds(self, protocol: str, command_len: int, response_len: int) -> float:
        etu = 1.0 / self.baud
        if protocol == "T=0":
            procedure = 1 if command_len > 5 else 0
            chars = command_len + procedure + response_len
            return chars * self.t0_char_etu * etu
        chars = command_len + response_len + 2 * self.t1_block_overhead
        return chars * self.t1_char_etu * etu + self.t1_bgt_etu * etu

    def work_seconds(self, cost: OpCost) -> float:
        pages = 0
        for offset, length in cost.written:
            first = offset // self.eeprom_page
            last = (offset + length - 1) // self.eeprom_page
            pages += last - first + 1
        return (self.dispatch_s + cost.cipher_blocks * self.cipher_block_s
                + cost.hash_blocks * self.hash_block_s + cost.signatures * self.signature_s
                + pages * self.eeprom_page_s)

    def charge(self, protocol: str, command_len: int, response_len: int, cost: OpCost) -> float:
        """Account one APDU; sleeps for it when ``sleep`` is set. Returns the seconds."""
        seconds = self.transfer_seconds(protocol, command_len, response_len)
        seconds += self.work_seconds(cost)
        self.total += seconds
        self.apdus += 1
        if self.sleep:
            time.sleep(seconds)
        return seconds
