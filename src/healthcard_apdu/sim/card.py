"""Simulated cards as objects: :class:`SimCard` (user card) and :class:`SimSam` (PSAM).

Both satisfy the transport's ``CardLike`` protocol structurally (``present``, ``atr()``,
``process()``, ``power_on()``, ``power_off()``, plus ``reset()``). A user card backed by a
file loads its image at power-on and persists it atomically after every command that
wrote EEPROM; reads never touch the disk. Faults (:class:`FaultPlan`) and a modeled
latency (:class:`LatencyModel`) apply to both cards.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import ApduFormatError
from healthcard_apdu.crypto import BlockCipher
from healthcard_apdu.sim.cos import UserCardOS
from healthcard_apdu.sim.errors import CardMuteError, ImageError
from healthcard_apdu.sim.faults import FaultPlan, Hostile, LatencyModel, OpCost
from healthcard_apdu.sim.image import (
    DEFAULT_CAPACITY,
    CardImage,
    Quirks,
    atomic_write,
    decode_image,
    encode_image,
)
from healthcard_apdu.sim.protocol import ResponseShaper
from healthcard_apdu.sim.sam import SamOS, SamState, load_sam_keys

#: Historical-byte prefixes (category byte 0x48 is proprietary per ISO/IEC 7816-4 8.1.1).
#: The user card's historical bytes follow its image's ATR layout (CardImage.historical_bytes).
USER_CARD_HISTORICAL_PREFIX = b"\x48\x43"  # "HC" (the factor-last layout)
SAM_HISTORICAL_PREFIX = b"\x48\x53"  # "HS"


def make_atr(protocol: str, historical: bytes) -> bytes:
    """A minimal ATR: ``3B 0K hist`` for T=0, ``3B 8K 01 hist TCK`` for T=1."""
    if len(historical) > 15:
        raise ValueError(f"at most 15 historical bytes, got {len(historical)}")
    k = len(historical)
    if protocol == "T=0":
        return bytes((0x3B, k)) + historical
    body = bytes((0x80 | k, 0x01)) + historical
    tck = 0
    for b in body:
        tck ^= b
    return b"\x3b" + body + bytes((tck,))


class _SimDevice:
    """APDU plumbing shared by both cards: presence, power, faults, latency, GET RESPONSE."""

    def __init__(self, protocol: str, faults: FaultPlan | None, latency: LatencyModel | None):
        self.faults = faults if faults is not None else FaultPlan()
        self.latency = latency
        self.apdu_count = 0
        self._present = True
        self._powered = False
        self._endless = False
        self._shaper = ResponseShaper(protocol)
        self._garbage = random.Random(0x5EED)
        # A served card is driven by the vpcd thread while tests may touch it too.
        self._lock = threading.RLock()

    # -- to implement -----------------------------------------------------------------------

    def atr(self) -> bytes:
        raise NotImplementedError

    def _execute(self, cmd: CommandApdu) -> tuple[bytes, int]:
        raise NotImplementedError

    def _reset_session(self) -> None:
        raise NotImplementedError

    def _load(self) -> None:
        """Called at power-on (cold): bring EEPROM state in from storage."""

    def _is_dirty(self) -> bool:
        return False

    def _commit(self) -> None:
        """Persist the state the last command wrote."""

    def _rollback(self) -> None:
        """Forget the state the last command wrote."""

    def _prepare_tear(self) -> None:
        """Called before an APDU that will tear: make sure its writes can be rolled back."""

    def _command_refused(self) -> None:
        """A malformed APDU was answered 6700: it still counts as the "next command"."""

    def _cost(self) -> OpCost:
        raise NotImplementedError

    # -- CardLike ---------------------------------------------------------------------------

    @property
    def present(self) -> bool:
        return self._present

    @property
    def powered(self) -> bool:
        return self._powered

    @property
    def protocol(self) -> str:
        return self._shaper.protocol

    def insert(self) -> None:
        """Put the card (back) into the reader; it is unpowered until ``power_on``."""
        with self._lock:
            self._present = True

    def remove(self) -> None:
        """Pull the card out of the reader."""
        with self._lock:
            self._present = False
            self._power_lost()

    def power_on(self) -> None:
        with self._lock:
            if not self._present:
                raise CardMuteError("power on: no card in the reader")
            self._load()
            self._reset_session()
            self._shaper.clear()
            self._endless = False
            self._powered = True

    def power_off(self) -> None:
        with self._lock:
            self._power_lost()

    def reset(self) -> None:
        """Warm reset: session state is lost, EEPROM is kept."""
        with self._lock:
            if not self._present:
                raise CardMuteError("reset: no card in the reader")
            self._reset_session()
            self._shaper.clear()
            self._endless = False
            self._powered = True

    def _power_lost(self) -> None:
        self._powered = False
        self._reset_session()
        self._shaper.clear()
        self._endless = False

    def process(self, apdu: bytes) -> bytes:
        with self._lock:
            return self._process(apdu)

    def _process(self, apdu: bytes) -> bytes:
        if not self._present:
            raise CardMuteError("card removed")
        if not self._powered:
            raise CardMuteError("card not powered")
        self.apdu_count += 1
        index = self.apdu_count
        plan = self.faults
        if plan.remove_at == index:
            plan.remove_at = None
            self.remove()
            raise CardMuteError(f"card removed before APDU {index}")
        cost = self._cost()
        cost.reset()
        if plan.tear_at == index:
            self._prepare_tear()
        data, sw = self._run(bytes(apdu))
        if plan.tear_at == index:
            plan.tear_at = None
            if self._is_dirty():
                if plan.tear_applies:
                    self._commit()
                else:
                    self._rollback()
            self.remove()
            raise CardMuteError(f"power lost during APDU {index}")
        if self._is_dirty():
            try:
                self._commit()
            except OSError:
                self._rollback()
                data, sw = b"", 0x6581
        reply = data + sw.to_bytes(2, "big")
        hostile = plan.hostile.pop(index, None)
        if hostile is not None:
            reply = self._hostile(hostile, reply)
        if self.latency is not None:
            self.latency.charge(self.protocol, len(apdu), len(reply), cost)
        return reply

    def _run(self, raw: bytes) -> tuple[bytes, int]:
        try:
            cmd = CommandApdu.from_bytes(raw)
        except ApduFormatError:
            self._shaper.clear()
            self._command_refused()
            return b"", 0x6700
        if cmd.ins == 0xC0 and cmd.cla == 0x00:
            if self._endless:
                le = 16 if cmd.le in (None, 256) else cmd.le
                return b"\xa5" * le, 0x6110
            return self._shaper.get_response(cmd)
        self._endless = False
        data, sw = self._execute(cmd)
        return self._shaper.shape(cmd, data, sw)

    def _hostile(self, kind: Hostile, reply: bytes) -> bytes:
        if kind is Hostile.WRONG_LENGTH:
            return reply[:-2] + b"\x00" + reply[-2:]
        if kind is Hostile.ENDLESS_61XX:
            self._endless = True
            return b"\x61\x10"
        if kind is Hostile.TRUNCATED:
            return reply[:1]
        return bytes(self._garbage.randrange(256) for _ in range(self._garbage.randint(1, 40)))


class SimCard(_SimDevice):
    """A simulated health user card (FMCOS-style COS) over a :class:`CardImage`.

    With ``path`` the image file is the card's EEPROM: it is read at every power-on and
    replaced atomically after each writing command (``durable=False`` skips fsync, for
    tmpfs test runs). Without ``path`` the card lives in memory only.
    """

    def __init__(
        self,
        image: CardImage | None = None,
        *,
        path: Path | str | None = None,
        faults: FaultPlan | None = None,
        latency: LatencyModel | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        durable: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.durable = durable
        if image is None:
            if self.path is None:
                raise ImageError("SimCard needs an image or a path")
            raw = self._read_file()
            image = decode_image(raw, str(self.path))
        else:
            raw = encode_image(image)
            if self.path is not None:
                atomic_write(self.path, raw, durable=durable)
        # Last committed image bytes; None while an in-memory card has no use for a snapshot.
        self._committed: bytes | None = raw
        self.os = UserCardOS(image, rng=rng)
        super().__init__(image.protocol, faults, latency)
        self._shaper.whole_record_le00 = image.quirks.record_le00

    @classmethod
    def blank(
        cls,
        serial: bytes,
        *,
        path: Path | str | None = None,
        overwrite: bool = False,
        protocol: str = "T=1",
        cipher16: BlockCipher = BlockCipher.SM4,
        capacity: int = DEFAULT_CAPACITY,
        atr_layout: str = "factor-first",
        historical: bytes | None = None,
        quirks: Quirks | None = None,
        **kwargs: object,
    ) -> SimCard:
        """A blank card (MF only, issuance state) whose card factor is ``serial``; its ATR
        carries it in ``atr_layout`` (or the explicit ``historical`` bytes), ``quirks``
        imitate a real card family (docs/sim.md)."""
        if path is not None and Path(path).exists() and not overwrite:
            raise ImageError(f"{path}: card image exists (use overwrite=True)")
        image = CardImage.blank(serial, protocol=protocol, cipher16=cipher16, capacity=capacity,
                                atr_layout=atr_layout, historical=historical, quirks=quirks)
        return cls(image, path=path, **kwargs)  # type: ignore[arg-type]

    @classmethod
    def open(cls, path: Path | str, **kwargs: object) -> SimCard:
        """The card whose image is stored in ``path``."""
        return cls(None, path=path, **kwargs)  # type: ignore[arg-type]

    @property
    def image(self) -> CardImage:
        return self.os.image

    @property
    def card_factor(self) -> bytes:
        return self.image.serial

    def atr(self) -> bytes:
        return make_atr(self.image.protocol, self.image.historical_bytes())

    def _read_file(self) -> bytes:
        assert self.path is not None
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise ImageError(f"{self.path}: cannot read card image ({exc.strerror})") from exc

    def _load(self) -> None:
        if self.path is None:
            return
        raw = self._read_file()
        if raw != self._committed:
            self._committed = raw
            self.os.attach(decode_image(raw, str(self.path)))
            self._shaper.protocol = self.os.image.protocol
            self._shaper.whole_record_le00 = self.os.image.quirks.record_le00

    def _execute(self, cmd: CommandApdu) -> tuple[bytes, int]:
        return self.os.execute(cmd)

    def _command_refused(self) -> None:
        self.os.challenge = None  # a challenge is valid for the next command only

    def _reset_session(self) -> None:
        self.os.reset_session()

    def _is_dirty(self) -> bool:
        return self.os.dirty

    def _commit(self) -> None:
        if self.path is None and self.faults.tear_at is None:
            # In memory with no tear scheduled: nothing can roll back, so skip the encoding
            # (it dominates personalization time); _prepare_tear snapshots when needed.
            self._committed = None
        else:
            raw = encode_image(self.os.image)
            if self.path is not None:
                atomic_write(self.path, raw, durable=self.durable)
            self._committed = raw
        self.os.dirty = False

    def _prepare_tear(self) -> None:
        if self._committed is None:
            self._committed = encode_image(self.os.image)

    def _rollback(self) -> None:
        self.os.dirty = False
        if self._committed is None:
            raise AssertionError("rollback without a snapshot (tear not prepared)")
        self.os.attach(decode_image(self._committed))

    def _cost(self) -> OpCost:
        return self.os.cost

    def set_protocol(self, protocol: str) -> None:
        """Switch T=1 / T=0 (persisted like any EEPROM change); takes effect now."""
        if protocol not in ("T=1", "T=0"):
            raise ValueError(f"protocol must be T=1 or T=0, got {protocol!r}")
        self.image.protocol = protocol
        self._shaper.protocol = protocol
        self._commit()


class SimSam(_SimDevice):
    """A simulated PSAM (T=0) whose master keys come from a SAM key file (docs/sim.md).

    The key file is only read; PIN tries and session keys live in memory.
    """

    def __init__(
        self,
        state: SamState,
        *,
        faults: FaultPlan | None = None,
        latency: LatencyModel | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.os = SamOS(state, rng=rng)
        super().__init__("T=0", faults, latency)

    @classmethod
    def from_key_file(cls, path: Path | str, **kwargs: object) -> SimSam:
        return cls(load_sam_keys(Path(path)), **kwargs)  # type: ignore[arg-type]

    @property
    def state(self) -> SamState:
        return self.os.state

    def atr(self) -> bytes:
        return make_atr("T=0", SAM_HISTORICAL_PREFIX + self.os.state.serial[-8:])

    def _execute(self, cmd: CommandApdu) -> tuple[bytes, int]:
        return self.os.execute(cmd)

    def _reset_session(self) -> None:
        self.os.reset_session()

    def _cost(self) -> OpCost:
        return self.os.cost
