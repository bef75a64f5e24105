"""Authorize -> (handler) -> Settle | Release: the payment flow of one request,
as the API calls it. Each flow reads like its rules in a module of its own
(authorize.py, settle.py, release.py, redeem.py, replay.py); they share the ports, the
reconcile policy and the claims in flight (context.py).

Pure domain: talks to facilitators, the chain, the ledger, tracking and telemetry
only through the Protocols in ports.py."""

from __future__ import annotations

import uuid

from . import authorize, claims, release, settle
from .channels import settle as channel_requests
from .channels.room import ChannelRoom, parse_payment_id
from .claims import InFlightClaims
from .context import PaymentContext
from .flow import AuthorizeInput, ReleaseInput, SettleInput, SettleResult
from .idempotency import IdempotencyPolicy
from .ports import ChainReader, FacilitatorPool, IdentifierStore, LedgerStore, Telemetry, Tracker
from .settlement import ReconcilePolicy


class PaymentService:
    def __init__(
        self,
        *,
        facilitators: FacilitatorPool,
        ledger_store: LedgerStore,
        chain: ChainReader,
        tracker: Tracker,
        telemetry: Telemetry,
        policy: ReconcilePolicy,
        identifiers: IdentifierStore,
        idempotency: IdempotencyPolicy,
        channels: ChannelRoom | None = None,
    ) -> None:
        self._ctx = PaymentContext(
            facilitators,
            ledger_store,
            chain,
            tracker,
            telemetry,
            policy,
            InFlightClaims(),
            identifiers,
            idempotency,
            channels,
        )

    @property
    def in_flight(self) -> InFlightClaims:
        return self._ctx.claims

    @property
    def channels_in_flight(self) -> int:
        return len(self._ctx.channels.flights) if self._ctx.channels is not None else 0

    async def authorize(self, req: AuthorizeInput) -> tuple[uuid.UUID, authorize.Outcome]:
        return await authorize.authorize(self._ctx, req)

    async def settle(self, req: SettleInput) -> SettleResult:
        # Which scheme a request was paid with shows in its payment id.
        if parse_payment_id(req.payment_id) is not None:
            return await channel_requests.settle(self._ctx, req)
        # An exact payment settles what its payer signed, whatever the charge says.
        return await settle.settle(self._ctx, req)

    async def release(self, req: ReleaseInput) -> str:
        """The state the claim moved to (a channel request: "released")."""
        if parse_payment_id(req.payment_id) is not None:
            return await channel_requests.release(self._ctx, req)
        return await release.release(self._ctx, req)

    async def release_all(self, reason: str) -> int:
        released = await release.release_all(self._ctx, reason)
        return released + await channel_requests.release_all(self._ctx, reason)

    async def forget_closed(self) -> int:
        """Forget the claims held here that another replica finished (claims.py)."""
        return await claims.forget_closed(self._ctx.ledger, self._ctx.identifiers, self._ctx.claims)
