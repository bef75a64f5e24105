"""One collector run: claim what we charged on every channel due, in batches of
`claimWithSignature` (one ClaimBatch signature each), then `settle(receiver,
token)` to sweep the claims to payTo. Both go to a facilitator's /settle.

- One run at a time across replicas: the run holds a PostgreSQL advisory lock.
- Isolation: the contract reverts a whole batch for one bad row, so a channel
  whose claim would revert (withdrawn or drained below what we charged, a voucher
  that does not recover to its payer) is left out before the batch is built; a
  batch the facilitator still refuses is split in halves until each bad channel
  stands alone. A left-out channel is recorded with its reason and tried again
  after `retry_s`; the others are claimed in the same run.
- Settles: periodic and on-demand runs sweep, for each receiver and token, what
  was claimed since its last sweep; runs a threshold or a withdrawal sets off only
  claim.
- Crash safety: each transaction's intent (channels and totals) is written before
  it is sent. An ambiguous answer, or an intent a dead replica left behind, is
  decided by reading the contract (`channels(channelId)`, `receivers`), never by
  guessing. Claims are cumulative on chain (a row raises totalClaimed to a total;
  a total already reached is a no-op), so claiming again a channel whose earlier
  claim is not on chain can never claim it twice."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from eth_utils import to_checksum_address
from x402.mechanisms.evm.batch_settlement.authorizer_signer import sign_claim_batch
from x402.mechanisms.evm.batch_settlement.errors import ERR_NOTHING_TO_SETTLE
from x402.mechanisms.evm.batch_settlement.server.channel_manager_common import (
    build_claim_payment_payload,
    build_payment_requirements,
    build_settle_payment_payload,
)
from x402.mechanisms.evm.batch_settlement.types import AuthorizerSigner
from x402.schemas import PaymentPayload, PaymentRequirements

from ...constants import Reason
from ..channels.authorizer import advertised_authorizer
from ..channels.state import Channel
from ..ports import ChainReader, CollectionStore, CollectionTelemetry, Facilitator, FacilitatorPool
from ..settlement import Learned, ask_facilitator
from ..verification import sanitize_reason
from . import screen
from .records import (
    BY_CHAIN,
    BY_FACILITATOR,
    CLAIM,
    DONE,
    FAILED,
    IN_DOUBT,
    LAPSED,
    SETTLE,
    Collection,
    CollectReport,
    LeftOut,
)

log = logging.getLogger(__name__)

COLLECT_LOCK = "collect"

# What set a run off (GetStatus, the CLI, telemetry).
PERIODIC = "periodic"
MANUAL = "manual"
CHANNEL_THRESHOLD = "channel_threshold"
TOTAL_THRESHOLD = "total_threshold"
WITHDRAWAL = "withdrawal"
# A claim is what secures a charge (claimed funds stay the receiver's in the
# contract); the sweep to payTo is one more transaction, made by the periodic and
# the on-demand runs only, not by every run a threshold or a withdrawal sets off.
SETTLING = frozenset({PERIODIC, MANUAL})


@dataclass(frozen=True)
class CollectorPolicy:
    interval_s: float  # a run at least this often
    channel_threshold: int  # unclaimed on one channel that sets a run off (0: none)
    total_threshold: int  # unclaimed in total that sets a run off (0: none)
    batch_size: int  # channels per claim transaction
    max_channels: int  # channels per run
    retry_s: float  # a left-out channel is tried again after this long
    busy_retry_s: float  # another replica holds the lock: ask again after this long
    retries: int  # of an ambiguous answer, on the same facilitator
    sleep: Callable[[float], Any] = asyncio.sleep
    clock: Callable[[], float] = time.monotonic


@dataclass(frozen=True)
class _Sender:
    """Who can send a batch for one receiver authorizer: with our own key, any
    facilitator (we sign); else only the facilitator that holds it (it signs)."""

    facilitators: tuple[Facilitator, ...]
    signer: AuthorizerSigner | None


@dataclass(frozen=True)
class _Group:
    network: str
    receiver: str
    token: str
    authorizer: str

    @property
    def account(self) -> tuple[str, str, str]:
        return self.network, self.receiver, self.token

    def requirements(self) -> PaymentRequirements:
        return build_payment_requirements(self.receiver, self.token, self.network)


@dataclass
class CollectorState:
    """What GetStatus shows of this replica's collector."""

    runs: int = 0
    failures: int = 0  # transactions refused, lapsed or in doubt, and runs that broke, since start
    last_run_at: datetime | None = None
    last: CollectReport | None = None
    last_failure: str = ""
    running: bool = False


def _body(payload: PaymentPayload, requirements: PaymentRequirements) -> dict[str, Any]:
    return {
        "x402Version": 2,
        "paymentPayload": payload.model_dump(mode="json", by_alias=True, exclude_none=True),
        "paymentRequirements": requirements.model_dump(mode="json", by_alias=True, exclude_none=True),
    }


class Collector:
    def __init__(
        self,
        store: CollectionStore,
        chain: ChainReader,
        facilitators: FacilitatorPool,
        telemetry: CollectionTelemetry,
        policy: CollectorPolicy,
        signer: AuthorizerSigner | None = None,
    ) -> None:
        self._store = store
        self._chain = chain
        self._facilitators = facilitators
        self._telemetry = telemetry
        self._signer = signer
        self.policy = policy
        self.state = CollectorState()

    async def collect(self, trigger: str, wait_s: float = 0.0) -> CollectReport:
        """One run, when no other replica's run holds the lock (waiting up to
        `wait_s` for it); a report with ran=False when it stayed busy."""
        policy = self.policy
        deadline = policy.clock() + wait_s
        while True:
            async with self._store.lock(COLLECT_LOCK) as held:
                if held:
                    return await self._run(trigger)
            if policy.clock() >= deadline:
                return CollectReport(trigger, ran=False, message="another replica's collector is running")
            await policy.sleep(min(0.2, max(0.0, deadline - policy.clock())))

    async def _run(self, trigger: str) -> CollectReport:
        report = CollectReport(trigger)
        self.state.running = True
        try:
            await self._resolve_open(report)
            await self._claim_due(report)
            if trigger in SETTLING:
                await self._settle_claimed(report)
        except Exception as exc:  # a broken run is retried by the next one; intents stay
            self.state.failures += 1
            self.state.last_failure = type(exc).__name__
            report.message = f"run broke off: {type(exc).__name__}"
            log.exception("collector run (%s) broke off; the next run resumes", trigger)
        finally:
            self.state.running = False
        self._finish(report)
        return report

    def _finish(self, report: CollectReport) -> None:
        state = self.state
        state.runs += 1
        state.last_run_at = datetime.now(timezone.utc)
        state.last = report
        failed = [c for c in (*report.claims, *report.settles) if c.state in (FAILED, LAPSED, IN_DOUBT)]
        state.failures += len(failed)
        if failed:
            state.last_failure = failed[-1].reason
        log.info(
            "collector run (%s): claimed %d channels (%d), settled %d, left out %d, failures %d",
            report.trigger,
            report.claimed_channels,
            report.claimed_amount,
            report.settled_amount,
            len(report.left_out),
            len(failed),
        )

    # -- intents left open -----------------------------------------------------

    async def _resolve_open(self, report: CollectReport) -> None:
        """Intents a run before this one did not see decided (its replica died, or
        the chain could not be read): the chain decides them now."""
        for collection in await self._store.open(limit=100):
            decided = await (self._claim_by_chain(collection) if collection.kind == CLAIM else self._settle_by_chain(collection))
            report.resolved.append(decided)

    # -- claims ----------------------------------------------------------------

    async def _claim_due(self, report: CollectReport) -> None:
        due = await self._store.due(self.policy.max_channels, self.policy.retry_s)
        groups: dict[_Group, list[Channel]] = {}
        for channel in due:
            config = channel.config
            group = _Group(
                channel.network,
                to_checksum_address(config.receiver),
                to_checksum_address(config.token),
                to_checksum_address(config.receiver_authorizer),
            )
            groups.setdefault(group, []).append(channel)
        for group, channels in groups.items():
            sender = await self._sender(group)
            claimable = [channel for channel in channels if await self._screened(channel, sender, report)]
            for start in range(0, len(claimable), self.policy.batch_size):
                await self._claim(group, sender, claimable[start : start + self.policy.batch_size], report)  # type: ignore[arg-type]

    async def _screened(self, channel: Channel, sender: _Sender | None, report: CollectReport) -> bool:
        """Whether the channel goes into a batch; if not, it is left out with its reason."""
        if sender is None:
            await self._leave_out(channel, screen.NO_AUTHORIZER, report, store=False)
            return False
        problem = screen.problem(channel)
        if problem == screen.EXCEEDS_BALANCE:
            # Our copy says so; the chain decides (a deposit may have been made on chain).
            onchain = await self._chain.channel(channel.network, channel.channel_id)
            if onchain is not None:
                await self._store.observe(channel.channel_id, onchain)
                if onchain.total_claimed >= channel.charged:
                    await self._store.claimed([(channel.channel_id, onchain.total_claimed)])
                    return False
                if onchain.balance >= channel.charged:
                    return True
        if problem is not None:
            await self._leave_out(channel, problem, report)
            return False
        return True

    async def _leave_out(self, channel: Channel, reason: str, report: CollectReport, store: bool = True) -> None:
        if store:
            await self._store.exclude(channel.channel_id, reason)
        left = LeftOut(channel.channel_id, channel.config.payer, screen.unclaimed(channel), reason)
        report.left_out.append(left)
        self._telemetry.event(
            "channel_claim_left_out",
            channel=channel.channel_id,
            payer=left.payer,
            unclaimed=str(left.unclaimed),
            reason=reason,
        )
        log.warning("channel %s left out of the claim: %s (unclaimed %d)", channel.channel_id, reason, left.unclaimed)

    async def _claim(self, group: _Group, sender: _Sender, channels: list[Channel], report: CollectReport) -> None:
        rows = tuple(screen.claim_row(channel) for channel in channels)
        collection = Collection.claim(group.network, group.receiver, group.token, rows)
        await self._store.record(collection)  # the intent, before anything is sent
        claims = [screen.voucher_claim(channel) for channel in channels]
        signature = sign_claim_batch(sender.signer, claims, group.network) if sender.signer is not None else None
        requirements = group.requirements()
        body = _body(build_claim_payment_payload(claims, requirements, signature), requirements)
        with self._telemetry.transaction(CLAIM, group.network, len(rows)):
            learned, facilitator = await self._send(sender.facilitators, body)
            decided = await self._claim_answered(collection, learned, facilitator)
            self._event(decided)
        report.claims.append(decided)
        if decided.state == FAILED and learned.refused:
            if len(channels) > 1:
                half = len(channels) // 2
                await self._claim(group, sender, channels[:half], report)
                await self._claim(group, sender, channels[half:], report)
            else:
                await self._refused_alone(channels[0], report)

    async def _claim_answered(self, collection: Collection, learned: Learned, facilitator: str) -> Collection:
        if learned.settled:
            decided = collection.decided(DONE, BY_FACILITATOR, transaction=learned.transaction, facilitator=facilitator)
            await self._store.claimed([(row.channel_id, row.total) for row in collection.rows])
            await self._store.decide(decided)
            return decided
        if learned.ambiguous:
            return await self._claim_by_chain(collection.decided(collection.state, "", facilitator=facilitator, transaction=learned.transaction))
        reason = learned.facilitator_reason if learned.refused else Reason.VERIFY_UNAVAILABLE
        decided = collection.decided(FAILED, BY_FACILITATOR if learned.refused else "", facilitator=facilitator, reason=reason)
        await self._store.decide(decided)
        return decided

    async def _claim_by_chain(self, collection: Collection) -> Collection:
        """Every row's channel read on chain: claimed where totalClaimed reached the
        row's total. All claimed: done; any not: lapsed (those channels are due
        again); unreadable: in doubt, asked again by the next run."""
        reached: list[tuple[str, int]] = []
        for row in collection.rows:
            onchain = await self._chain.channel(collection.network, row.channel_id)
            if onchain is None:
                decided = collection.decided(IN_DOUBT, "", reason=Reason.PAYMENT_IN_DOUBT)
                await self._store.decide(decided)
                return decided
            await self._store.observe(row.channel_id, onchain)
            if onchain.total_claimed >= row.total:
                reached.append((row.channel_id, row.total))
        await self._store.claimed(reached)
        if len(reached) == len(collection.rows):
            decided = collection.decided(DONE, BY_CHAIN, reason="")
        else:
            decided = collection.decided(LAPSED, BY_CHAIN, reason="claim_not_on_chain")
        await self._store.decide(decided)
        return decided

    async def _refused_alone(self, channel: Channel, report: CollectReport) -> None:
        """A claim of this one channel was refused: the chain tells why (withdrawn
        or drained below what we charged), else the refusal is the reason."""
        onchain = await self._chain.channel(channel.network, channel.channel_id)
        if onchain is not None:
            await self._store.observe(channel.channel_id, onchain)
            if onchain.total_claimed >= channel.charged:
                await self._store.claimed([(channel.channel_id, onchain.total_claimed)])
                return
            if onchain.balance < channel.charged:
                await self._leave_out(channel, screen.EXCEEDS_BALANCE, report)
                return
        await self._leave_out(channel, screen.REFUSED, report)

    # -- settles ---------------------------------------------------------------

    async def _settle_claimed(self, report: CollectReport) -> None:
        """Sweep what is claimed for each receiver and token with claims since its
        last sweep (this run's, and those of runs that only claimed)."""
        accounts = set(await self._store.unsettled_accounts())
        for network, receiver, token in sorted(accounts):
            totals = await self._chain.receiver_totals(network, receiver, token)
            if totals is not None and totals[0] <= totals[1]:
                continue  # nothing claimed is left to sweep
            amount = totals[0] - totals[1] if totals is not None else 0
            collection = Collection.settle(network, receiver, token, amount)
            await self._store.record(collection)
            requirements = build_payment_requirements(receiver, token, network)
            body = _body(build_settle_payment_payload(requirements, receiver, token), requirements)
            with self._telemetry.transaction(SETTLE, network, 0):
                learned, facilitator = await self._send(tuple(self._facilitators.candidates(())), body)
                decided = await self._settle_answered(collection, learned, facilitator)
                self._event(decided)
            report.settles.append(decided)

    async def _settle_answered(self, collection: Collection, learned: Learned, facilitator: str) -> Collection:
        if learned.settled:
            data = learned.data or {}
            # The SDK answers amount "" : the intent's figure (what was claimed and not swept) stands.
            amount = int(data["amount"]) if str(data.get("amount") or "").isdigit() else collection.amount
            decided = collection.decided(DONE, BY_FACILITATOR, transaction=learned.transaction, facilitator=facilitator, amount=amount)
        elif learned.refused and learned.facilitator_reason == ERR_NOTHING_TO_SETTLE:
            decided = collection.decided(DONE, BY_FACILITATOR, facilitator=facilitator, amount=0)
        elif learned.ambiguous:
            return await self._settle_by_chain(collection.decided(collection.state, "", facilitator=facilitator, transaction=learned.transaction))
        else:
            reason = learned.facilitator_reason if learned.refused else Reason.VERIFY_UNAVAILABLE
            decided = collection.decided(FAILED, BY_FACILITATOR if learned.refused else "", facilitator=facilitator, reason=reason)
        await self._store.decide(decided)
        return decided

    async def _settle_by_chain(self, collection: Collection) -> Collection:
        """A settle sweeps all that is claimed for its receiver and token: done when
        nothing claimed is left unswept (whoever swept it), else lapsed (the next
        run sweeps it); in doubt while the chain cannot be read."""
        totals = await self._chain.receiver_totals(collection.network, collection.receiver, collection.token)
        if totals is None:
            decided = collection.decided(IN_DOUBT, "", reason=Reason.PAYMENT_IN_DOUBT)
        elif totals[0] <= totals[1]:
            decided = collection.decided(DONE, BY_CHAIN, reason="")
        else:
            decided = collection.decided(LAPSED, BY_CHAIN, reason="settle_not_on_chain")
        await self._store.decide(decided)
        return decided

    # -- facilitators ----------------------------------------------------------

    async def _sender(self, group: _Group) -> _Sender | None:
        signer = self._signer
        if signer is not None and to_checksum_address(signer.address) == group.authorizer:
            return _Sender(tuple(self._facilitators.candidates(())), signer)
        for facilitator in self._facilitators.in_order(()):
            answer = await facilitator.supported()
            if answer.ok and answer.data and advertised_authorizer(answer.data, group.network) == group.authorizer:
                return _Sender((facilitator,), None)
        return None

    async def _send(self, facilitators: tuple[Facilitator, ...], body: dict[str, Any]) -> tuple[Learned, str]:
        """To the first facilitator that can be reached, the same payload again on an
        ambiguous answer; the next one only when nothing reached the one before."""
        learned = Learned()
        for facilitator in facilitators:
            learned = await ask_facilitator(facilitator, body, self.policy.retries)
            if learned.settled or learned.refused or learned.ambiguous:
                return learned, facilitator.url
        return learned, ""

    def _event(self, collection: Collection) -> None:
        name = f"channel_{collection.kind}_{'done' if collection.state == DONE else 'failed' if collection.state == FAILED else collection.state}"
        self._telemetry.event(
            name,
            collection_id=str(collection.id),
            network=collection.network,
            receiver=collection.receiver,
            channels=str(len(collection.rows)),
            amount=str(collection.amount),
            transaction=collection.transaction,
            facilitator=collection.facilitator,
            reason=collection.reason,
        )
