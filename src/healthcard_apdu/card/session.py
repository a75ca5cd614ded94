"""Runtime state of one user card: current DF/EF, DF security state, diversification factors.

The model says what the card *is* (files, keys, items); :class:`CardSession` tracks what the
card *currently is doing* and sends the APDUs that change it:

* **Selection.** The current DF and EF are cached; SELECT is sent only when the target differs.
  Routes follow ISO/IEC 7816-4 FID resolution (children, parent, siblings of the current DF;
  the MF by 3F00). An unknown position (start, after an error or a raw APDU) begins at the MF.
* **Security state.** FMCOS keeps one security-state register per DF; a successful external
  authentication sets it to the key's follow-up state and selecting a DF resets it. The session
  remembers which key's state is active and authenticates only when another key is needed
  (read rights need exactly the RK state, write rights exactly the UK state, so reading after
  writing authenticates again).
* **Factors.** Card factor = the card product's rule over the ATR's historical bytes (default:
  the first 8, ``security.FactorRule``); city factor from DDF1/EF05 YYCSDM (a free read, done
  once). Both can be given instead.
* **Factor confirmation.** Before the first EXTERNAL AUTHENTICATE on a card the factor is
  confirmed with INTERNAL AUTHENTICATE (no try counter; :mod:`healthcard_apdu.card.factor`):
  the configured rule's factor, then the other known rules'. None confirmed:
  :class:`FactorNotConfirmed` before any try is spent. No internal key in the module or on
  the card: the rule is followed and ``on_notice`` hears about it once.
* **Recovery.** A refused command (other than "record not found") makes the cached position
  unknown, so the next operation selects from the MF and authenticates again.
* **No retries.** A refused external authentication raises its typed error with the tries
  left; the key is then refused locally for the rest of the session without another attempt.
  ``6A88`` (the card has no such key) raises :class:`KeyNotPresent` instead, and that key is
  not sent again either.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

from healthcard_apdu.apdu import commands
from healthcard_apdu.apdu.command import CommandApdu
from healthcard_apdu.apdu.errors import (
    AuthenticationBlocked,
    AuthenticationFailed,
    CardError,
    NotFound,
)
from healthcard_apdu.apdu.response import ResponseApdu
from healthcard_apdu.card.errors import CardOperationError, KeyNotPresent, in_context
from healthcard_apdu.card.factor import (
    FactorConfirmation,
    FactorNotConfirmed,
    FactorStatus,
    confirm_card_factor,
    skipped_confirmation,
)
from healthcard_apdu.model import DFS, EF, KEYS, decode_tlv, df, ef, item
from healthcard_apdu.model import key as model_key
from healthcard_apdu.security import (
    DEFAULT_FACTOR_RULE,
    STANDARD_KEY_SPECS,
    CardFactors,
    FactorRule,
    KeySpec,
    SecurityModule,
    city_factor_from_region,
    protect_update_record,
)
from healthcard_apdu.security.errors import SecurityModuleError
from healthcard_apdu.transport.atr import AtrError, parse_atr
from healthcard_apdu.transport.base import TransportError
from healthcard_apdu.transport.channel import Channel

__all__ = ["RK_PLAINTEXT", "CardSession"]

log = logging.getLogger(__name__)

RK_PLAINTEXT = bytes.fromhex("1122334455667788")
"""Plaintext A of the RK external authentications (HDOS and the traces); UK keys use R."""

_CHALLENGE_LENGTH = 8
_KEY_NOT_FOUND = 0x6A88
_PARENT = {d.name: d.parent for d in DFS}
_STK = {k.df: k.name for k in KEYS if k.role == "secure_messaging"}
_CITY_ITEM = item("YYCSDM")
_ISSUER_EF = "DDF1/EF05"


def _df_path(name: str) -> list[str]:
    """DF names from the MF down to ``name``."""
    path = [name]
    while (parent := _PARENT[path[-1]]) is not None:
        path.append(parent)
    return path[::-1]


def _reachable(current: str, target: str) -> bool:
    """Can ``target`` be selected by FID while ``current`` is the current DF?"""
    parent = _PARENT[current]
    return (
        target in ("MF", current)
        or _PARENT[target] == current
        or target == parent
        or (parent is not None and _PARENT[target] == parent)
    )


def _route(current: str | None, target: str) -> list[str]:
    """The DFs to SELECT, in order, to make ``target`` current."""
    path = _df_path(target)
    if current is None:
        return path
    if current == target:
        return []
    for index in range(len(path) - 1, -1, -1):
        if _reachable(current, path[index]):
            return path[index:]
    return path  # pragma: no cover - the MF is always reachable


class CardSession:
    """Selection, authentication and factor state of one user card over a channel."""

    def __init__(
        self,
        channel: Channel,
        security: SecurityModule,
        *,
        key_specs: Mapping[str, KeySpec] = STANDARD_KEY_SPECS,
        card_factor: bytes | None = None,
        city_code: str | None = None,
        factor_rule: FactorRule | str = DEFAULT_FACTOR_RULE,
        confirm_factor: bool = True,
        on_notice: Callable[[FactorConfirmation], None] | None = None,
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.channel = channel
        self.security = security
        self.key_specs = key_specs
        self.current_df: str | None = None
        self.current_ef: str | None = None
        self.auth_key: str | None = None
        #: The card product's rule; a given ``card_factor`` is the rule ``fixed:HEX``.
        self.factor_rule = (
            FactorRule("fixed", value=bytes(card_factor)) if card_factor is not None
            else FactorRule.parse(factor_rule)
        )
        self.confirm_factor = confirm_factor
        self.on_notice = on_notice
        self.rng = rng
        #: The confirmation of the current card (None until the first authentication needs it).
        self.factor_confirmation: FactorConfirmation | None = None
        self._given_city_factor = None if city_code is None else city_factor_from_region(city_code)
        self._card_factor: bytes | None = None
        self._city_factor = self._given_city_factor
        self._failed: dict[str, CardError] = {}

    # -- state ------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """Forget the position and security state (after a reset, raw APDU or error)."""
        self.current_df = None
        self.current_ef = None
        self.auth_key = None

    def reset_factors(self) -> None:
        """Forget the factors read from the card and its factor confirmation (another card may
        be in the reader now). Factors given by the caller stay; so do refused keys (never
        retried by this session)."""
        self._card_factor = None
        self._city_factor = self._given_city_factor
        self.factor_confirmation = None

    # -- sending ----------------------------------------------------------------------------

    def call(self, command: CommandApdu, where: str) -> ResponseApdu:
        """Send ``command``; a refusal is re-raised with ``where`` (file/record) in front."""
        try:
            return self.channel.call(command)
        except NotFound as exc:  # a missing record changes nothing on the card
            raise in_context(exc, where) from exc
        except CardError as exc:
            self.invalidate()  # the card may not be where we think: start again from the MF
            raise in_context(exc, where) from exc
        except TransportError:
            self.invalidate()
            raise

    def call_data(self, command: CommandApdu, where: str) -> bytes:
        """``call(command, where).data`` without the response object (the reads' hot path)."""
        try:
            return self.channel.call_data(command)
        except NotFound as exc:
            raise in_context(exc, where) from exc
        except CardError as exc:
            self.invalidate()
            raise in_context(exc, where) from exc
        except TransportError:
            self.invalidate()
            raise

    # -- selection --------------------------------------------------------------------------

    def select_df(self, name: str) -> None:
        """Make DF ``name`` current (no APDU when it already is)."""
        for step in _route(self.current_df, name):
            fid = df(step).fid
            try:
                self.call(commands.select_fid(fid), f"SELECT {step}")
            except BaseException:
                self.invalidate()
                raise
            self.current_df, self.current_ef, self.auth_key = step, None, None

    def select_ef(self, target: EF) -> None:
        """Make ``target`` the current EF (selecting its DF first if needed)."""
        self.select_df(target.df)
        if self.current_ef == target.path:
            return
        try:
            self.call(commands.select_fid(target.fid), f"SELECT {target.path}")
        except BaseException:
            self.current_ef = None
            raise
        self.current_ef = target.path

    # -- factors ----------------------------------------------------------------------------

    def _historical(self) -> bytes:
        try:
            return parse_atr(self.channel.atr()).historical_bytes
        except AtrError as exc:
            if not self.factor_rule.needs_atr:
                return b""
            raise CardOperationError(f"card ATR: {exc}") from None

    def check_factor(self) -> FactorConfirmation:
        """Confirm the card factor now (once per card; cached) and return the result without
        raising on :attr:`FactorStatus.NOT_CONFIRMED`. Forgets the selection and security
        state (the key's DF, DDF1, is current afterwards when INTERNAL AUTHENTICATE was sent)."""
        if self.factor_confirmation is None:
            historical = self._historical()
            if not self.confirm_factor:
                result = skipped_confirmation(self.factor_rule, historical)
            else:
                self.invalidate()
                try:
                    result = confirm_card_factor(
                        self.channel, self.security, rule=self.factor_rule,
                        historical=historical, city_factor=self._city_factor,
                        key_specs=self.key_specs, rng=self.rng)
                finally:
                    self.invalidate()
                if result.tries:  # INTERNAL AUTHENTICATE was sent: the key's DF is current
                    self.current_df = model_key(result.key).df
                if self._city_factor is None and result.city_factor is not None:
                    self._city_factor = result.city_factor
            self.factor_confirmation = result
            if self.on_notice is not None and (
                result.status is FactorStatus.IMPOSSIBLE or result.by_other_rule
            ):
                self.on_notice(result)
        return self.factor_confirmation

    def ensure_factor(self) -> FactorConfirmation:
        """:meth:`check_factor`, raising :class:`FactorNotConfirmed` when no candidate matched."""
        result = self.check_factor()
        if result.status is FactorStatus.NOT_CONFIRMED:
            raise FactorNotConfirmed(result)
        return result

    def _ensure_factor_in_place(self) -> None:
        """Confirm the factor if not done yet, then select again what was current."""
        if self.factor_confirmation is not None:
            self.ensure_factor()
            return
        df_name, ef_path = self.current_df, self.current_ef
        self.ensure_factor()
        if df_name is not None:
            self.select_df(df_name)
        if ef_path is not None:
            self.select_ef(ef(ef_path))

    @property
    def card_factor(self) -> bytes:
        """The card factor (confirmed first, see :meth:`ensure_factor`)."""
        if self._card_factor is None:
            self._card_factor = self.ensure_factor().factor
        return self._card_factor

    @property
    def has_city_factor(self) -> bool:
        return self._city_factor is not None

    @property
    def city_factor(self) -> bytes:
        """City factor from YYCSDM in DDF1/EF05 (read once, by tag; the file is free to read)."""
        if self._city_factor is None:
            self.set_city_code(self.read_city_code())
        assert self._city_factor is not None
        return self._city_factor

    def set_city_code(self, code: str) -> None:
        try:
            self._city_factor = city_factor_from_region(code)
        except SecurityModuleError as exc:
            raise CardOperationError(
                f"{_ISSUER_EF}: application city code YYCSDM {code!r} gives no city factor ({exc})",
                path=_ISSUER_EF,
            ) from None

    def read_city_code(self) -> str:
        target = ef(_ISSUER_EF)
        self.select_ef(target)
        raw = self.call(
            commands.read_record_by_tag(_CITY_ITEM.no, _CITY_ITEM.tlv_length),
            f"{_ISSUER_EF} item 57 YYCSDM",
        ).data
        value = decode_tlv(_CITY_ITEM, raw)
        assert isinstance(value, str)
        return value

    def factors(self, spec: KeySpec) -> CardFactors:
        city = self.city_factor if spec.levels == 2 else None
        return CardFactors(self.card_factor, city)

    def key_spec(self, name: str) -> KeySpec:
        try:
            return self.key_specs[name]
        except KeyError:
            raise CardOperationError(f"no SAM key specification for key {name}") from None

    # -- authentication ---------------------------------------------------------------------

    def ensure_access(self, target: EF, key_name: str | None, where: str) -> None:
        """Select ``target`` and put its DF into the state of ``key_name`` (None: free)."""
        if key_name is not None and self.auth_key != key_name:
            self.ensure_factor()  # may select DDF1: do it before selecting the target
        if key_name is not None and self._city_factor is None:
            stk = _STK.get(target.df)
            levels = {self.key_spec(key_name).levels}
            if stk is not None and stk in self.key_specs:
                levels.add(self.key_specs[stk].levels)
            if 2 in levels:
                _ = self.city_factor  # selects DDF1/EF05: do it before selecting the target
        self.select_ef(target)
        if key_name is not None and self.auth_key != key_name:
            self.authenticate(key_name, where)

    def authenticate(self, key_name: str, where: str) -> None:
        """External authentication with ``key_name`` in the current DF; never retried."""
        spec = self.key_spec(key_name)
        card_key = model_key(key_name)
        label = f"{where}: external authentication with {key_name}"
        failed = self._failed.get(key_name)
        if isinstance(failed, KeyNotPresent):
            raise KeyNotPresent(
                failed.sw,
                f"{where}: {key_name}",
                f"{failed.meaning}; answered earlier in this session, not sent again",
                key=key_name,
            )
        if failed is not None:
            raise type(failed)(
                failed.sw,
                f"{label} refused earlier in this session, not retried ({failed.command})",
                failed.meaning,
                failed.retries_left,
            )
        self._ensure_factor_in_place()
        factors = self.factors(spec)
        challenge = self.call(commands.get_challenge(_CHALLENGE_LENGTH), label).data
        plain = challenge if card_key.role in ("update", "erase") else RK_PLAINTEXT
        data = self.security.external_auth_data(spec, factors, challenge, plain)
        command = commands.external_authenticate(card_key.card_key_ref, data)
        try:
            self.call(command, label)
        except (AuthenticationFailed, AuthenticationBlocked) as exc:
            self.auth_key = None
            self._failed[key_name] = exc
            raise
        except NotFound as exc:
            self.auth_key = None
            if exc.sw != _KEY_NOT_FOUND:
                raise
            missing = KeyNotPresent(
                exc.sw,
                f"{where}: {command.label} ({key_name})",
                f"key {key_name} not present on this card (not a refused authentication; "
                "no try spent)",
                key=key_name,
            )
            self._failed[key_name] = missing
            raise missing from exc
        except BaseException:
            self.auth_key = None
            raise
        self.auth_key = key_name
        log.debug("authenticated %s in %s", key_name, self.current_df)

    # -- protected writes -------------------------------------------------------------------

    def update_record_sm(self, record: int, plaintext: bytes, where: str) -> None:
        """``04 DC rr 04`` with the current DF's STK session key
        (docs/reference/healthcard-layout.md §3.6)."""
        if self.current_df is None:
            raise CardOperationError(f"{where}: no current DF for secure messaging")
        self._ensure_factor_in_place()
        spec = self.key_spec(_STK[self.current_df])
        if spec.levels == 2 and self._city_factor is None:  # reading it would move away
            raise CardOperationError(f"{where}: city factor unknown before secure messaging")
        factors = self.factors(spec)
        challenge = self.call(commands.get_challenge(_CHALLENGE_LENGTH), where).data
        session = self.security.session(spec, factors, challenge)
        self.call(protect_update_record(session, record, plaintext), where)
