"""Load through batch-settlement payment channels: one channel per concurrent client.

A voucher cannot be handed to any client the way an exact payment can: it is valid
only on its own channel and only right after the one before it was charged, and a
server serialises the requests of one channel. So before a level (none of it
measured):

1. one new channel per concurrent client, funded for its share of the level
   (`Signer.channels`: the 8 funded devnet payers in turn, a random salt each);
2. every payment of each channel pre-signed by the SDK's client, in order
   (`Signer.sign_channels`): its deposit, then its vouchers;
3. each deposit sent through the target itself, which verifies and settles it at
   the facilitator and charges the price, so the channel is open on chain and the
   server holds it;

then the level drives the vouchers, one lane per client (`loadgen.run_lanes`).
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass
from typing import Any

from x402.schemas import PaymentRequired

from devnet.wallets import INITIAL_PAYER_BALANCE

from .loadgen import Send
from .signing import Channel, Signer
from .targets import ChannelTarget

USDC = 10**6  # atomic units per USDC (6 decimals)


class ChannelError(Exception):
    """Channels could not be opened for a level; the message says why."""


@dataclass(frozen=True)
class Lanes:
    """The vouchers of each client's channel, ready to send, and what funds them."""

    lanes: list[list[Any]]
    channels: list[Channel]
    price: int

    def describe(self) -> str:
        per_payer = _deposits_by_payer(self.channels, self.price)
        total = sum(per_payer.values())
        return (
            f"{len(self.channels)} × {self.channels[0].payments - 1} vouchers, deposits"
            f" {total / USDC:.3f} USDC ({max(per_payer.values()) / USDC:.3f} from the busiest payer)"
        )


async def open_lanes(
    target: ChannelTarget,
    send: Send,
    signer: Signer,
    required: PaymentRequired,
    clients: int,
    vouchers: int,
    request_prefix: str,
) -> Lanes:
    """`clients` channels opened through `target`, each with `vouchers` vouchers to send."""
    price = int(required.accepts[0].amount)
    channels = signer.channels(clients, vouchers + 1)
    _check_funds(channels, price)
    sequences = await signer.sign_channels(required, channels)
    deposits = await asyncio.gather(
        *(send(target.prepare(payments[0], f"{request_prefix}{n}.deposit")) for n, payments in enumerate(sequences))
    )
    refused = collections.Counter(error for error in deposits if error is not None)
    if refused:
        kinds = ", ".join(f"{kind} ×{count}" for kind, count in refused.most_common(3))
        raise ChannelError(f"{target.name}: {sum(refused.values())} of {clients} deposits refused: {kinds}")
    lanes = [
        [target.prepare(payment, f"{request_prefix}{n}.{k}") for k, payment in enumerate(payments[1:], start=1)]
        for n, payments in enumerate(sequences)
    ]
    return Lanes(lanes, channels, price)


def _deposits_by_payer(channels: list[Channel], price: int) -> collections.Counter[int]:
    per_payer: collections.Counter[int] = collections.Counter()
    for channel in channels:
        per_payer[channel.payer] += channel.deposit(price)
    return per_payer


def _check_funds(channels: list[Channel], price: int) -> None:
    """Every payer must be able to fund its channels of a level (it may have spent some
    before: a deposit it cannot cover is refused, and says so)."""
    payer, needed = _deposits_by_payer(channels, price).most_common(1)[0]
    if needed > INITIAL_PAYER_BALANCE:
        raise ChannelError(
            f"devnet payer {payer} would deposit {needed / USDC:.2f} USDC in one level, more than the"
            f" {INITIAL_PAYER_BALANCE / USDC:.0f} USDC it starts with: lower --max-requests or --seconds"
        )
