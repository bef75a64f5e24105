"""payment_channels SQL (migrations/0006): the server's state of each batch-settlement
channel, and the reservation that serialises the requests of one channel across
every replica on the database.

A request holds a channel by one conditional UPDATE (nobody holds it, or the
holder's time ran out); its charge is committed by another one that names the
holder's token and the charged total the request was verified against, so two
replicas can never both count a voucher, and a Settle after the reservation was
taken over commits nothing. A charge's commit is an ordinary (synchronous) commit:
durable before the paid answer leaves; taking a hold does not wait for the flush."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from x402.mechanisms.evm.batch_settlement.types import ChannelConfig

from ..payments.channels.state import Channel, Mirror, Reservation
from .db import on_the_money_path

T = TypeVar("T")

_RESERVE_SET = """
    reserved_by = $2, reserved_until = now() + make_interval(secs => $3), reserved_kind = $4,
    reserved_amount = $5, reserved_max_claimable = $6, reserved_signature = $7, reserved_tracking_id = $8,
    updated_at = now()
"""

# A hold is not a charge: its commit does not wait for the WAL flush (set_config
# with is_local, in the statement's own transaction). Lost in a database crash, the
# hold is simply gone: the request's Settle then finds another holder or none and
# commits nothing, and nothing is served; the charge's commit, synchronous, flushes
# the hold's WAL with its own.
RESERVE = f"""
UPDATE payment_channels SET {_RESERVE_SET}
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush_wait
WHERE channel_id = $1 AND (reserved_by IS NULL OR reserved_until < now())
RETURNING payment_channels.*
"""

OPEN = """
INSERT INTO payment_channels (
    channel_id, network, payer, payer_authorizer, receiver, receiver_authorizer, token, withdraw_delay, salt,
    charged_cumulative, balance, total_claimed, withdraw_requested_at, refund_nonce, synced_at,
    reserved_by, reserved_until, reserved_kind, reserved_amount, reserved_max_claimable, reserved_signature,
    reserved_tracking_id
)
VALUES ($1, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, now(),
        $2, now() + make_interval(secs => $3), $4, $5, $6, $7, $8)
ON CONFLICT (channel_id) DO NOTHING
RETURNING *
"""

GET = "SELECT * FROM payment_channels WHERE channel_id = $1"

REFRESH = """
UPDATE payment_channels
SET balance = $3, total_claimed = greatest(total_claimed, $4), withdraw_requested_at = $5, refund_nonce = $6, synced_at = now(),
    updated_at = now()
WHERE channel_id = $1 AND reserved_by = $2
RETURNING *
"""

# The charge of the request holding the channel, and the voucher it brought
# ($6/$7 NULL: a refund, which keeps the voucher we hold); the mirror when the
# request learned it ($8 NULL: unchanged).
COMMIT = """
UPDATE payment_channels
SET charged_cumulative = charged_cumulative + $4,
    signed_max_claimable = coalesce($5, signed_max_claimable),
    voucher_signature = coalesce($6, voucher_signature),
    balance = coalesce($7, balance),
    total_claimed = greatest(total_claimed, coalesce($8, total_claimed)),
    withdraw_requested_at = coalesce($9, withdraw_requested_at),
    refund_nonce = coalesce($10, refund_nonce),
    synced_at = CASE WHEN $7::numeric IS NULL THEN synced_at ELSE now() END,
    last_request_at = now(),
    reserved_by = NULL, reserved_until = NULL, reserved_kind = NULL, reserved_amount = NULL,
    reserved_max_claimable = NULL, reserved_signature = NULL, reserved_tracking_id = NULL,
    updated_at = now()
WHERE channel_id = $1 AND reserved_by = $2 AND charged_cumulative = $3
RETURNING *
"""

# A charge taken back: the answer it paid for never reached the client. Only while
# nothing happened on the channel since (the same total, the same voucher, no hold).
UNCHARGE = """
UPDATE payment_channels
SET charged_cumulative = charged_cumulative - $3, updated_at = now()
WHERE channel_id = $1 AND charged_cumulative = $2 AND signed_max_claimable = $4
  AND (reserved_by IS NULL OR reserved_until < now())
"""

UNRESERVE = """
UPDATE payment_channels
SET reserved_by = NULL, reserved_until = NULL, reserved_kind = NULL, reserved_amount = NULL,
    reserved_max_claimable = NULL, reserved_signature = NULL, reserved_tracking_id = NULL, updated_at = now()
WHERE channel_id = $1 AND reserved_by = $2
"""

PAGE = """
SELECT * FROM payment_channels
WHERE channel_id > $1 AND ($2 = '' OR lower(payer) = lower($2))
ORDER BY channel_id
LIMIT $3
"""


def channel_of(row: asyncpg.Record) -> Channel:
    reservation = None
    if row["reserved_by"] is not None:
        reservation = Reservation(
            token=row["reserved_by"],
            kind=row["reserved_kind"],
            amount=int(row["reserved_amount"]),
            max_claimable=int(row["reserved_max_claimable"]),
            signature=row["reserved_signature"],
            tracking_id=row["reserved_tracking_id"],
        )
    return Channel(
        channel_id=row["channel_id"],
        network=row["network"],
        config=ChannelConfig(
            payer=row["payer"],
            payer_authorizer=row["payer_authorizer"],
            receiver=row["receiver"],
            receiver_authorizer=row["receiver_authorizer"],
            token=row["token"],
            withdraw_delay=row["withdraw_delay"],
            salt=row["salt"],
        ),
        charged=int(row["charged_cumulative"]),
        signed_max_claimable=int(row["signed_max_claimable"]),
        voucher_signature=row["voucher_signature"],
        mirror=Mirror(
            balance=int(row["balance"]),
            total_claimed=int(row["total_claimed"]),
            withdraw_requested_at=int(row["withdraw_requested_at"]),
            refund_nonce=int(row["refund_nonce"]),
        ),
        synced_at=row["synced_at"],
        last_request_at=row["last_request_at"],
        reservation=reservation,
        reserved_until=row["reserved_until"],
    )


def _reserving(reservation: Reservation, hold_s: float) -> tuple:
    return (
        reservation.token,
        hold_s,
        reservation.kind,
        reservation.amount,
        reservation.max_claimable,
        reservation.signature,
        reservation.tracking_id,
    )


class PgChannels:
    """The ChannelStore port (payments/ports.py) on PostgreSQL."""

    def __init__(self, db_pool: asyncpg.Pool) -> None:
        self._db_pool = db_pool

    async def _run(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        return await on_the_money_path(self._db_pool, call)

    async def _one(self, sql: str, *args: object) -> Channel | None:
        row = await self._run(lambda conn: conn.fetchrow(sql, *args))
        return channel_of(row) if row else None

    async def get(self, channel_id: str) -> Channel | None:
        return await self._one(GET, channel_id)

    async def reserve(self, channel_id: str, reservation: Reservation, hold_s: float) -> Channel | None:
        return await self._one(RESERVE, channel_id, *_reserving(reservation, hold_s))

    async def open(self, channel: Channel, reservation: Reservation, hold_s: float) -> Channel | None:
        config, mirror = channel.config, channel.mirror
        return await self._one(
            OPEN,
            channel.channel_id,
            *_reserving(reservation, hold_s),
            channel.network,
            config.payer,
            config.payer_authorizer,
            config.receiver,
            config.receiver_authorizer,
            config.token,
            config.withdraw_delay,
            config.salt,
            channel.charged,
            mirror.balance,
            mirror.total_claimed,
            mirror.withdraw_requested_at,
            mirror.refund_nonce,
        )

    async def refresh(self, channel_id: str, token: uuid.UUID, mirror: Mirror) -> Channel | None:
        return await self._one(
            REFRESH,
            channel_id,
            token,
            mirror.balance,
            mirror.total_claimed,
            mirror.withdraw_requested_at,
            mirror.refund_nonce,
        )

    async def commit(
        self,
        channel_id: str,
        token: uuid.UUID,
        charged: int,
        charge: int,
        voucher: tuple[int, str] | None,
        mirror: Mirror | None,
    ) -> Channel | None:
        max_claimable, signature = voucher if voucher is not None else (None, None)
        return await self._one(
            COMMIT,
            channel_id,
            token,
            charged,
            charge,
            max_claimable,
            signature,
            *(
                (mirror.balance, mirror.total_claimed, mirror.withdraw_requested_at, mirror.refund_nonce)
                if mirror is not None
                else (None, None, None, None)
            ),
        )

    async def uncharge(self, channel_id: str, charged: int, charge: int, max_claimable: int) -> bool:
        status = await self._run(lambda conn: conn.execute(UNCHARGE, channel_id, charged, charge, max_claimable))
        return status == "UPDATE 1"

    async def unreserve(self, channel_id: str, token: uuid.UUID) -> bool:
        status = await self._run(lambda conn: conn.execute(UNRESERVE, channel_id, token))
        return status == "UPDATE 1"

    async def page(self, after: str, limit: int, payer: str = "") -> list[Channel]:
        rows = await self._run(lambda conn: conn.fetch(PAGE, after, payer, limit))
        return [channel_of(row) for row in rows]
