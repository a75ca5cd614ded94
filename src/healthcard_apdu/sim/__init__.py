"""Simulated health user card (FMCOS-style COS) and PSAM, in-process or over vpcd.

Independent of the host layers: only :mod:`healthcard_apdu.apdu` and
:mod:`healthcard_apdu.crypto` are used. See docs/cos.md and docs/sim.md.
"""

from healthcard_apdu.sim.card import SimCard, SimSam, make_atr
from healthcard_apdu.sim.errors import CardMuteError, ImageError, SimError
from healthcard_apdu.sim.faults import FaultPlan, Hostile, LatencyModel
from healthcard_apdu.sim.image import CardImage, load_image, save_image
from healthcard_apdu.sim.sam import SamState, load_sam_keys

__all__ = [
    "CardImage",
    "CardMuteError",
    "FaultPlan",
    "Hostile",
    "ImageError",
    "LatencyModel",
    "SamState",
    "SimCard",
    "SimError",
    "SimSam",
    "load_image",
    "load_sam_keys",
    "make_atr",
    "save_image",
]
