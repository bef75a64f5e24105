"""The sidecar process: opens its resources, serves gRPC, runs the background
jobs, and shuts down in order (STYLE.md example 6)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from pathlib import Path

import aiohttp
import asyncpg
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner

from paysidecar_common.events import EventRing

from .api.channel_servicer import ChannelServicer
from .api.payment_servicer import PaymentServicer
from .api.status_servicer import StatusServicer
from .api.tracking_servicer import TrackingServicer
from .chain.reader import Web3ChainReader
from .config import Settings
from .constants import RELEASE_AT_SHUTDOWN
from .facilitators.pool import Pool
from .payments.channels.authorizer import ReceiverAuthorizers
from .payments.channels.room import ChannelPolicy, ChannelRoom
from .payments.idempotency import IdempotencyPolicy
from .payments.channels.withdrawals import ChainClock
from .payments.collection.collector import Collector, CollectorPolicy
from .payments.collection.loop import CollectorLoop, WatchPolicy, WithdrawalWatch
from .payments.recovery import recover_once
from .payments.service import PaymentService
from .payments.settlement import ReconcilePolicy
from .server import build_server
from .status import CollectionStatus, FacilitatorStatus, SidecarStatus, TrackingStatus
from .store.db import create_pool
from .store.partitions import keep_ahead
from .store.tracking import TrackingWriter
from .store.tracking_queries import PgTrackingRecords
from .store.retention import run_retention
from .store.channels import PgChannels
from .store.identifiers import PgIdentifiers
from .store.collections import PgCollections
from .store.db import UNAVAILABLE_ERRORS
from .store.ledger import PgLedger
from .telemetry.collection import CollectorTelemetry
from .telemetry.payments import PaymentTelemetry
from .telemetry.tracing import SidecarTracing

log = logging.getLogger(__name__)


class Sidecar:
    def __init__(self, settings: Settings, interceptors: tuple = (), tracing: SidecarTracing | None = None) -> None:
        self.settings = settings
        self._interceptors = interceptors
        self._tracing = tracing
        self.port = 0
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()

    async def start(self) -> int:
        s = self.settings
        if not s.database_url:
            raise RuntimeError("DATABASE_URL is not set")
        self.db_pool: asyncpg.Pool = await create_pool(
            s.database_url, min_size=s.db_pool_min, max_size=s.db_pool_max
        )
        await self.keep_partitions()
        self.writer = TrackingWriter(
            self.db_pool,
            batch_size=s.tracking_batch_size,
            flush_interval_s=s.tracking_flush_interval_s,
            hold_s=s.tracking_hold_s,
            row_wait_s=s.tracking_row_wait_s,
            spool_dir=Path(s.spool_dir),
        )
        await self.writer.start()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        self.facilitators = Pool(s, self.session)
        self.chain = Web3ChainReader(s.chain_rpc_urls, s.chain_timeout_s)
        self.events = EventRing(s.telemetry_capacity, {"env": s.env})
        self.ledger = PgLedger(self.db_pool)
        ledger_store = self._tracing.ledger(self.ledger) if self._tracing else self.ledger
        tracker = self.writer if s.tracking_enabled else _NoTracking()
        self.channels = PgChannels(self.db_pool)
        self._collection(CollectorTelemetry(self.events))
        self.service = PaymentService(
            facilitators=self.facilitators,
            ledger_store=ledger_store,
            chain=self.chain,
            tracker=tracker,
            telemetry=PaymentTelemetry(self.events),
            policy=ReconcilePolicy(
                s.settle_retries,
                s.reconcile_window_s,
                s.reconcile_poll_s,
                # A payment in doubt is asked about again by the recovery job.
                retry_after_s=math.ceil(s.recovery_interval_s),
            ),
            identifiers=PgIdentifiers(self.db_pool),
            # A replay whose caller vanished gives its id back like a claim does.
            idempotency=IdempotencyPolicy(s.idempotency_window_s, replay_timeout_s=s.claim_timeout_s),
            channels=self._channel_room(),
        )
        if self._tracing:
            self._tracing.observe(self)
        self.server, self.port, self.health = await build_server(
            s,
            PaymentServicer(self.service, s, tracker),
            TrackingServicer(PgTrackingRecords(self.db_pool), s),
            StatusServicer(s, self, self.events, self),
            (*self._tracing.server_interceptors(), *self._interceptors) if self._tracing else self._interceptors,
            channels=ChannelServicer(self.channels, self.collector),
        )
        await self.server.start()
        await self.recover()
        self._tasks = [
            asyncio.create_task(self._every(s.recovery_interval_s, self.recover)),
            asyncio.create_task(
                run_retention(
                    self.db_pool,
                    s.retention_days,
                    s.prune_interval_s,
                    self._stop,
                    min_retention_days=s.min_retention_days,
                )
            ),
            asyncio.create_task(self._every(s.tracking_partition_interval_s, self.keep_partitions)),
            asyncio.create_task(self.watch.run(self._stop)),
        ]
        if s.collector_enabled:
            self._tasks.append(asyncio.create_task(self.collector.run(self._stop)))
        return self.port

    def _collection(self, telemetry: CollectorTelemetry) -> None:
        """The collector, its triggers, and the withdrawal watch (payments/collection/)."""
        s = self.settings
        key = s.receiver_authorizer_key
        self.authorizer_signer = LocalAuthorizerSigner(key.get_secret_value()) if key is not None else None
        self.collections = PgCollections(self.db_pool)
        self.chain_clock = ChainClock()
        collector = Collector(
            self.collections,
            self.chain,
            self.facilitators,
            telemetry,
            CollectorPolicy(
                interval_s=s.collect_interval_s,
                channel_threshold=s.collect_channel_threshold,
                total_threshold=s.collect_total_threshold,
                batch_size=s.collect_batch_size,
                max_channels=s.collect_max_channels,
                retry_s=s.collect_retry_s,
                busy_retry_s=s.collect_busy_retry_s,
                retries=s.settle_retries,
            ),
            signer=self.authorizer_signer,
        )
        self.collector = CollectorLoop(collector, self.collections)
        self.watch = WithdrawalWatch(
            self.collections,
            self.chain,
            self.chain_clock,
            tuple(s.chain_rpc_urls),
            WatchPolicy(s.channel_watch_interval_s, s.channel_mirror_ttl_s, s.channel_watch_limit),
            self.collector if s.collector_enabled else None,
        )

    async def collection_status(self) -> CollectionStatus:
        """The CollectionSource of GetStatus: what is at risk comes from the database
        (every replica's charges), the runs from this replica's collector."""
        try:
            at_risk = await self.collections.at_risk(top=10)
        except UNAVAILABLE_ERRORS:
            at_risk = None
        return CollectionStatus(
            at_risk=at_risk,
            enabled=self.settings.collector_enabled,
            state=self.collector.collector.state,
            watch_rounds=self.watch.rounds,
            watched_channels=self.watch.last_round_channels,
            watch_round_s=self.watch.last_round_s,
        )

    def _channel_room(self) -> ChannelRoom:
        s = self.settings
        return ChannelRoom(
            store=self._tracing.channels(self.channels) if self._tracing else self.channels,
            authorizers=ReceiverAuthorizers(
                self.facilitators,
                s.withdraw_delay_s,
                signer=self.authorizer_signer,
                deposit_requests=s.min_deposit_requests,
            ),
            policy=ChannelPolicy(
                busy_wait_s=s.channel_busy_wait_s,
                hold_s=s.channel_hold_s,
                mirror_ttl_s=s.channel_mirror_ttl_s,
                retries=s.settle_retries,
                claim_margin_s=s.channel_claim_margin_s,
                chain_now=self.chain_clock.now,
            ),
            # Every replica's charges set off runs; a run goes to whichever replica holds the lock.
            on_charge=self.collector.note_charge,
        )

    async def keep_partitions(self) -> None:
        s = self.settings
        await keep_ahead(self.db_pool, s.tracking_partition_period, s.tracking_partition_ahead_days)

    def status(self) -> SidecarStatus:
        """The StatusSource of GetStatus."""
        writer = self.writer
        return SidecarStatus(
            facilitators=tuple(
                FacilitatorStatus(
                    name=f.name,
                    url=f.url,
                    breaker_state=f.health.current_state(),
                    ewma_latency_ms=f.health.ewma_latency_ms,
                    success_rate=f.health.success_rate,
                    consecutive_failures=f.health.consecutive_failures,
                    attempts=f.health.attempts,
                )
                for f in self.facilitators.all()
            ),
            tracking=TrackingStatus(
                queue_depth=writer.queue_depth,
                spool_records=writer.spool_records,
                spool_bytes=writer.spool_bytes,
                database_up=writer.database_up,
                missing_rows=writer.missing_rows,
                rejected_rows=writer.rejected_rows,
                journal_failures=writer.journal_failures,
            ),
            in_flight_payments=len(self.service.in_flight) + self.service.channels_in_flight,
        )

    async def recover(self) -> None:
        s = self.settings
        try:
            report = await recover_once(
                self.ledger,
                self.chain,
                self.writer,
                unresolved_after_s=s.settle_timeout_s * (s.settle_retries + 1) + s.reconcile_window_s,
                verified_after_s=s.claim_timeout_s,
                in_flight=self.service.in_flight,
            )
            if report.settled_unserved or report.failed or report.released:
                log.info("ledger recovery: %s", report)
            await self.service.forget_closed()
        except Exception:
            log.exception("ledger recovery failed; will retry")

    async def _every(self, interval_s: float, job) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval_s)
            if not self._stop.is_set():
                await job()

    async def stop(self, grace_s: float | None = None) -> None:
        """Health NOT_SERVING -> stop accepting and drain -> release leftovers ->
        flush tracking -> close HTTP session -> close the pool."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self._stop.set()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for task in self._tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            released = await self.service.release_all(RELEASE_AT_SHUTDOWN)
            if released:
                log.info("released %d unsettled claims at shutdown", released)
        await self.writer.close()
        await self.session.close()
        await self.chain.close()
        await self.db_pool.close()


class _NoTracking:
    """Tracking switched off (benchmarks): steps are dropped."""

    def record(self, record_id, step, fields) -> None:
        return None

    async def durable(self) -> None:
        return None

    def durable_soon(self) -> None:
        return None


