"""Who authorizes our claims and refunds: the receiver authorizer every channel a
route opens names. Either a key the sidecar holds (it signs ClaimBatch and Refund
itself), or the facilitator's: the one its /supported lists for batch-settlement
on the route's network (`extra.receiverAuthorizer`); the facilitator then signs.

The facilitator's is looked up in the configured order, not by health: every
replica must offer the same authorizer, or a channel opened through one replica's
402 would be refused by another. A facilitator that answers without one is asked
again after `retry_s`; an answer found is kept for the process's life (a channel's
authorizer never changes, so neither may ours while channels are open)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from eth_utils import is_address, to_checksum_address
from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.mechanisms.evm.batch_settlement.types import AuthorizerSigner

from ..ports import FacilitatorPool
from ..routes import PricedRoute
from .terms import ChannelTerms

log = logging.getLogger(__name__)

_ZERO = "0x" + "0" * 40


def advertised_authorizer(supported: dict, network: str) -> str | None:
    """The receiver authorizer a /supported answer lists for batch-settlement (v2) on `network`."""
    for kind in supported.get("kinds", ()):
        if not isinstance(kind, dict):
            continue
        if (kind.get("x402Version"), kind.get("scheme"), kind.get("network")) != (2, SCHEME_BATCH_SETTLEMENT, network):
            continue
        extra = kind.get("extra")
        address = extra.get("receiverAuthorizer") if isinstance(extra, dict) else None
        if isinstance(address, str) and is_address(address) and address.lower() != _ZERO:
            return to_checksum_address(address)
    return None


class ReceiverAuthorizers:
    def __init__(
        self,
        facilitators: FacilitatorPool,
        withdraw_delay: int,
        signer: AuthorizerSigner | None = None,
        deposit_requests: int = 10,
        retry_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._facilitators = facilitators
        self._withdraw_delay = withdraw_delay
        self._deposit_requests = deposit_requests
        self._signer = signer
        self._retry_s = retry_s
        self._clock = clock
        self._found: dict[tuple[tuple[str, ...], str], ChannelTerms] = {}
        self._missing_until: dict[tuple[tuple[str, ...], str], float] = {}

    @property
    def signer(self) -> AuthorizerSigner | None:
        """Our own key's signer; None when the facilitator signs."""
        return self._signer

    async def terms(self, route: PricedRoute) -> ChannelTerms | None:
        """The route's channel terms; None when no receiver authorizer is to be had."""
        if self._signer is not None:
            return ChannelTerms(
                to_checksum_address(self._signer.address), self._withdraw_delay, deposit_requests=self._deposit_requests
            )
        key = (route.facilitators, route.network)
        found = self._found.get(key)
        if found is not None or self._clock() < self._missing_until.get(key, 0.0):
            return found
        for facilitator in self._facilitators.in_order(route.facilitators):
            answer = await facilitator.supported()
            address = advertised_authorizer(answer.data, route.network) if answer.ok and answer.data else None
            if address is not None:
                terms = self._found[key] = ChannelTerms(
                    address, self._withdraw_delay, facilitator.url, self._deposit_requests
                )
                return terms
        log.warning("no facilitator lists a batch-settlement receiver authorizer on %s", route.network)
        self._missing_until[key] = self._clock() + self._retry_s
        return None
