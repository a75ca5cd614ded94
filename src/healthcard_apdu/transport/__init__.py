"""Transport layer: links to a card (PC/SC, in-process, replay), the APDU channel above them
(T=0 61xx/6Cxx handling, command chaining, size limits) and JSONL tracing with secret masking.

pyscard is only imported when a PC/SC function is used (:mod:`.pcsc`).
"""

from healthcard_apdu.transport.atr import AtrError, AtrInfo, parse_atr
from healthcard_apdu.transport.base import (
    CardRemovedError,
    ForwardingTransport,
    NoCardError,
    NoReaderError,
    ProtocolError,
    ReaderBusyError,
    ReplayMismatch,
    ServiceUnavailableError,
    Transport,
    TransportError,
)
from healthcard_apdu.transport.channel import Channel, SecretSpec
from healthcard_apdu.transport.inprocess import CardLike, InProcessTransport
from healthcard_apdu.transport.replay import ReplayStep, ReplayTransport, read_trace
from healthcard_apdu.transport.trace import Masker, Range, Tracer, default_masker, mask_hex

__all__ = [
    "AtrError",
    "AtrInfo",
    "CardLike",
    "CardRemovedError",
    "Channel",
    "ForwardingTransport",
    "InProcessTransport",
    "Masker",
    "NoCardError",
    "NoReaderError",
    "ProtocolError",
    "Range",
    "ReaderBusyError",
    "ReplayMismatch",
    "ReplayStep",
    "ReplayTransport",
    "SecretSpec",
    "ServiceUnavailableError",
    "Tracer",
    "Transport",
    "TransportError",
    "default_masker",
    "mask_hex",
    "parse_atr",
    "read_trace",
]
