"""Helpers for the personalization tests: key sets, simulated cards, profile variants and a
transport that records or tampers with APDUs."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from healthcard_apdu import model
from healthcard_apdu.crypto import BlockCipher, diversify_levels
from healthcard_apdu.perso.execute import personalize
from healthcard_apdu.perso.profile import Profile, builtin_profile_path, load_profile
from healthcard_apdu.security import (
    DEFAULT_ROLES,
    KeySet,
    SoftwareSecurityModule,
    city_factor_from_region,
)
from healthcard_apdu.sim import SimCard
from healthcard_apdu.sim.image import decode_image, encode_image
from healthcard_apdu.transport import InProcessTransport, Transport

CARD_FACTOR = bytes.fromhex("0081866B00001015")
OTHER_FACTOR = bytes.fromhex("1122334455667788")


def keyset(algorithm: BlockCipher = BlockCipher.SM4, variant: int = 0) -> KeySet:
    """A fresh random key set (cached per algorithm and variant)."""
    return _keyset(algorithm, variant)


@functools.cache
def _keyset(algorithm: BlockCipher, variant: int) -> KeySet:
    return KeySet.generate(DEFAULT_ROLES, algorithm)  # with the SM2 key that signs EE/ED


def software(algorithm: BlockCipher = BlockCipher.SM4, variant: int = 0) -> SoftwareSecurityModule:
    return SoftwareSecurityModule(keyset(algorithm, variant))


def profile_text(name: str) -> str:
    return builtin_profile_path(name).read_text(encoding="utf-8")


def profile_variant(name: str, replacements: dict[str, str], tmp: Any) -> Profile:
    """A built-in profile with text replacements, written to ``tmp`` and loaded."""
    text = profile_text(name)
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / f"{name}-variant.toml"
    path.write_text(text, encoding="utf-8")
    return load_profile(path)


def blank_card(
    algorithm: BlockCipher = BlockCipher.SM4, factor: bytes = CARD_FACTOR, **kwargs: Any
) -> SimCard:
    cipher16 = BlockCipher.SM4 if algorithm is BlockCipher.SM4 else BlockCipher.TDES
    return SimCard.blank(factor, cipher16=cipher16, **kwargs)


def resident_for(profile_name: str) -> model.CardData:
    """The sample resident, without the photo for profiles that have no photo file."""
    sample = model.sample_resident()
    if load_profile(profile_name).file("DDF1/EF07") is None:
        return dataclasses.replace(sample, photo=model.Photo())
    return sample


@functools.cache
def _issued_image(profile_name: str, algorithm: BlockCipher) -> bytes:
    card = blank_card(algorithm)
    with InProcessTransport(card) as transport:
        personalize(transport, load_profile(profile_name), resident_for(profile_name),
                    software(algorithm))
    return encode_image(card.image)


def issued_card(
    profile_name: str = "national-32k", algorithm: BlockCipher = BlockCipher.SM4, **kwargs: Any
) -> SimCard:
    """A card personalized with the sample resident (image cached, card object fresh)."""
    return SimCard(decode_image(_issued_image(profile_name, algorithm)), **kwargs)


def card_keys(
    ks: KeySet, profile: Profile, card_factor: bytes = CARD_FACTOR, region: str = "110000"
) -> dict[str, bytes]:
    """Role -> the key the card stores, computed independently of the perso code."""
    city = city_factor_from_region(region)
    out = {}
    for key in profile.keys:
        factors = [card_factor] if key.levels == 1 else [card_factor, city]
        out[key.role] = diversify_levels(ks.algorithm, ks.keys[key.role].value, factors)
    return out


Hook = Callable[[bytes], bytes]


class TapTransport(Transport):
    """Records every APDU; optional hooks rewrite commands or responses."""

    def __init__(
        self,
        inner: Transport,
        *,
        on_command: Hook | None = None,
        on_response: Callable[[bytes, bytes], bytes] | None = None,
    ) -> None:
        self.inner = inner
        self.commands: list[bytes] = []
        self.on_command = on_command
        self.on_response = on_response

    @property
    def name(self) -> str:
        return f"tap:{self.inner.name}"

    def transmit(self, apdu: bytes) -> bytes:
        if self.on_command is not None:
            apdu = self.on_command(apdu)
        self.commands.append(apdu)
        response = self.inner.transmit(apdu)
        if self.on_response is not None:
            response = self.on_response(apdu, response)
        return response

    def atr(self) -> bytes:
        return self.inner.atr()

    def reset(self, cold: bool = False) -> bytes:
        return self.inner.reset(cold)

    def close(self) -> None:
        self.inner.close()

    def count(self, cla_ins: str) -> int:
        """Number of commands starting with these hex bytes (e.g. ``"0082"``)."""
        prefix = bytes.fromhex(cla_ins)
        return sum(1 for c in self.commands if c.startswith(prefix))
