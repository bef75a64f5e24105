"""What a used nonce says about a payment (DESIGN §4 rules 1 and 4).

`authorizationState` is true once the nonce is used up: by the transfer of this
payment, by the payer's own `cancelAuthorization` (no money moves), or by another
authorization the payer signed with the same nonce (say 1 unit to himself) and got
executed first. So "used" is never read as "paid": a payment counts as made only
when the transaction that used the nonce moved at least its amount of its asset
from the payer to its payTo. That transaction is found by its
`AuthorizationUsed(payer, nonce)` log and judged by its receipt.

The live settle path and the recovery job both ask `check_payment`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..constants import AUTHORIZATION_CANCELED_TOPIC, AUTHORIZATION_USED_TOPIC, TRANSFER_TOPIC, Reason
from .ledger import LedgerEntry
from .ports import ChainLog, ChainReader

# The token checks validBefore against the block's timestamp, not our clock: an
# unused nonce counts as dead only this long after validBefore, so a transaction
# still waiting for a block whose clock lags ours is not written off too early.
CLOCK_MARGIN_S = 30.0


@dataclass(frozen=True)
class ExpectedTransfer:
    """What the chain must show for one payment: an EIP-3009 transfer of at least
    `amount` of `asset` from `payer` to `pay_to` that used `nonce`."""

    network: str
    asset: str
    payer: str
    pay_to: str
    amount: int
    nonce: str
    valid_before: int

    @classmethod
    def of(cls, entry: LedgerEntry) -> ExpectedTransfer:
        return cls(
            entry.network, entry.asset, entry.payer, entry.pay_to, entry.amount, entry.nonce, entry.valid_before
        )


class Verdict(enum.Enum):
    PAID = "paid"  # this payment's transfer is on chain
    CANCELED = "canceled"  # the payer canceled the nonce: nothing moved
    USED_ELSEWHERE = "used_elsewhere"  # another transfer used the nonce: nothing paid to us
    EXPIRED = "expired"  # unused past validBefore: no transaction can use it any more
    UNUSED = "unused"  # unused for now: a transaction may still use it
    UNTRACED = "untraced"  # used, but the transaction that used it cannot be found or read
    UNREADABLE = "unreadable"  # the chain could not be read


# Verdicts no later read can change.
FINAL = frozenset({Verdict.PAID, Verdict.CANCELED, Verdict.USED_ELSEWHERE, Verdict.EXPIRED})

_FAILURE_REASONS = {
    Verdict.CANCELED: Reason.AUTHORIZATION_CANCELED,
    Verdict.USED_ELSEWHERE: Reason.NONCE_USED_ELSEWHERE,
    Verdict.EXPIRED: Reason.EXPIRED_UNSETTLED,
}


@dataclass(frozen=True)
class ChainCheck:
    verdict: Verdict
    transaction: str = ""  # this payment's transaction, when PAID

    @property
    def final(self) -> bool:
        return self.verdict in FINAL

    @property
    def failure_reason(self) -> str:
        """Our reason code for a final verdict that is not PAID."""
        return _FAILURE_REASONS.get(self.verdict, "")


async def check_payment(
    chain: ChainReader,
    expected: ExpectedTransfer,
    *,
    transaction: str = "",
    now: Callable[[], float] = time.time,
) -> ChainCheck:
    """What the chain shows for `expected`. `transaction` (one a facilitator named) is
    judged first, so a payment it made needs no log search."""
    if not chain.configured(expected.network):
        return ChainCheck(Verdict.UNREADABLE)
    used = await chain.authorization_used(expected.network, expected.asset, expected.payer, expected.nonce)
    if used is None:
        return ChainCheck(Verdict.UNREADABLE)
    if not used:
        expired = now() >= expected.valid_before + CLOCK_MARGIN_S
        return ChainCheck(Verdict.EXPIRED if expired else Verdict.UNUSED)
    if transaction:
        named = await _judge(chain, expected, transaction)
        if named is not None:
            return named
    events = await chain.nonce_events(expected.network, expected.asset, expected.payer, expected.nonce)
    for event in events or ():
        if _names_nonce(event, AUTHORIZATION_CANCELED_TOPIC, expected):
            return ChainCheck(Verdict.CANCELED)
        if _names_nonce(event, AUTHORIZATION_USED_TOPIC, expected):
            return await _judge(chain, expected, event.transaction) or ChainCheck(Verdict.UNTRACED)
    # Used, by nothing in the blocks we may search, or the logs could not be read.
    return ChainCheck(Verdict.UNTRACED)


async def _judge(chain: ChainReader, expected: ExpectedTransfer, transaction: str) -> ChainCheck | None:
    """PAID or USED_ELSEWHERE by the receipt of `transaction`; None when it is not
    mined, cannot be read, or did not use this nonce."""
    logs = await chain.receipt_logs(expected.network, transaction)
    if logs is None:
        return None
    paid = _pays(logs, expected)
    if paid is None:
        return None
    return ChainCheck(Verdict.PAID, transaction) if paid else ChainCheck(Verdict.USED_ELSEWHERE)


def _pays(logs: Sequence[ChainLog], expected: ExpectedTransfer) -> bool | None:
    """Whether the transfer that used the nonce in these logs pays `expected`; None when
    they hold no AuthorizationUsed(payer, nonce). FiatToken emits that log and then
    the authorization's own Transfer, so the Transfer right after it is the one
    paid with this nonce — not some other Transfer of the same transaction."""
    for index, log in enumerate(logs):
        if _names_nonce(log, AUTHORIZATION_USED_TOPIC, expected):
            following = logs[index + 1] if index + 1 < len(logs) else None
            return following is not None and _transfers_enough(following, expected)
    return None


def _names_nonce(log: ChainLog, topic: str, expected: ExpectedTransfer) -> bool:
    """`log` is the token's `topic` event for (payer, nonce)."""
    return _token_event(log, topic, expected.asset, expected.payer, expected.nonce)


def _transfers_enough(log: ChainLog, expected: ExpectedTransfer) -> bool:
    """`log` is the token's Transfer(payer -> payTo) of at least the amount."""
    value = _hex_int(log.data)
    return (
        _token_event(log, TRANSFER_TOPIC, expected.asset, expected.payer, expected.pay_to)
        and value is not None
        and value >= expected.amount
    )


def _token_event(log: ChainLog, topic: str, token: str, first: str, second: str) -> bool:
    """`log` is `token`'s `topic` event with indexed arguments (first, second)."""
    return (
        _same(log.address, token)
        and len(log.topics) == 3
        and log.topics[0].lower() == topic
        and _same(log.topics[1], first)
        and _same(log.topics[2], second)
    )


def _same(word: str, expected: str) -> bool:
    """The same address, topic or nonce, whatever the case and zero padding."""
    number = _hex_int(word)
    return number is not None and number == _hex_int(expected)


def _hex_int(value: str) -> int | None:
    """0x hex as a number; None when it is not hex."""
    try:
        return int(value, 16)
    except (TypeError, ValueError):
        return None
