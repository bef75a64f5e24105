"""Authorize -> (handler) -> Settle | Release: the payment flow of one request,
as the API calls it. Each flow reads like its rules in a module of its own
(authorize.py, settle.py, release.py, redeem.py, replay.py); they share the ports, the
reconcile policy and the claims in flight (context.py).

Pure domain: talks to facilitators, the chain, the ledger, tracking and telemetry
only through the Protocols in ports.py."""

from __future__ import annotations

import uuid

from . import authorize, release, settle
from .claims import InFlightClaims
from .context import PaymentContext
from .flow import AuthorizeInput, Challenge, Rejection, ReleaseInput, SettleInput, SettleResult, Verified
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
        )

    @property
    def in_flight(self) -> InFlightClaims:
        return self._ctx.claims

    async def authorize(self, req: AuthorizeInput) -> tuple[uuid.UUID, Challenge | Rejection | Verified]:
        return await authorize.authorize(self._ctx, req)

    async def settle(self, req: SettleInput) -> SettleResult:
        return await settle.settle(self._ctx, req)

    async def release(self, req: ReleaseInput) -> str:
        """The ledger state the claim moved to."""
        return await release.release(self._ctx, req)

    async def release_all(self, reason: str) -> int:
        return await release.release_all(self._ctx, reason)
