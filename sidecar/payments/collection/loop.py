"""When the collector runs, and the watch over withdrawals.

Runs: every `interval_s`; at once when a charge takes one channel's unclaimed
charges to the per-channel threshold, or (as this replica counts them since the
last run) the total to the total threshold; after every watch round that finds a
channel being withdrawn with charges unclaimed (vouchers on it are taken until the
claim margin before the withdrawal can complete, so the last of them is claimed
within one watch interval of it, well inside the margin). A trigger that finds another replica's run under
way is tried again after `busy_retry_s`.

The watch keeps current, every `interval_s`, our copy of the contract's fields of
every channel whose copy the request path trusts (in use within the mirror TTL),
or that has unclaimed charges or a withdrawal pending: a withdrawal started on any
of them is seen within that bound (while a round takes less). It reads the
contract's events since its last round (one query) and re-reads only the channels
they name. One replica at a time reads the channels
(an advisory lock); every replica reads the chain's clock, which the rule on
vouchers during a withdrawal (channels/withdrawals.py) runs on."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from ..channels.state import Channel
from ..channels.withdrawals import ChainClock
from ..ports import ChainReader, CollectionStore
from .collector import CHANNEL_THRESHOLD, PERIODIC, TOTAL_THRESHOLD, WITHDRAWAL, Collector
from .records import CollectReport
from .screen import unclaimed

log = logging.getLogger(__name__)

WATCH_LOCK = "watch"


class CollectorLoop:
    def __init__(self, collector: Collector, store: CollectionStore) -> None:
        self.collector = collector
        self._store = store
        self._wake = asyncio.Event()
        self._trigger = ""
        self._since_run = 0  # charged here since the last run's count of what is at risk
        self._at_risk = 0

    def note_charge(self, channel: Channel, charge: int) -> None:
        """A charge was committed here (ChannelRoom.on_charge): a run now if it
        crossed a threshold. (A charge on a channel being withdrawn is claimed by the
        run the watch sets off each round while its charges are unclaimed: well within
        the claim margin, without a run per request.)"""
        policy = self.collector.policy
        self._since_run += charge
        if policy.channel_threshold and unclaimed(channel) >= policy.channel_threshold:
            self.wake(CHANNEL_THRESHOLD)
        elif policy.total_threshold and self._at_risk + self._since_run >= policy.total_threshold:
            self.wake(TOTAL_THRESHOLD)

    def wake(self, trigger: str) -> None:
        self._trigger = self._trigger or trigger
        self._wake.set()

    async def run_once(self, trigger: str, wait_s: float = 0.0) -> CollectReport:
        self._since_run = 0
        report = await self.collector.collect(trigger, wait_s)
        if report.ran:
            with contextlib.suppress(Exception):  # the next run counts again
                self._at_risk = (await self._store.at_risk(0)).total
        return report

    async def run(self, stop: asyncio.Event) -> None:
        policy = self.collector.policy
        while not stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), policy.interval_s)
            if stop.is_set():
                return
            trigger, self._trigger = self._trigger or PERIODIC, ""
            self._wake.clear()
            try:
                report = await self.run_once(trigger)
            except Exception:  # the database went away: the next trigger tries again
                log.exception("collector run (%s) failed", trigger)
                continue
            if not report.ran and trigger != PERIODIC:
                # Another replica's run may have started before this charge: once more.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), policy.busy_retry_s)
                self.wake(trigger)


@dataclass(frozen=True)
class WatchPolicy:
    interval_s: float
    active_s: float  # the mirror TTL: channels in use within it are watched
    limit: int  # channels per round
    concurrency: int = 8  # chain reads at once
    full_every: int = 30  # every this many rounds, every watched channel is read again


class WithdrawalWatch:
    """A round reads the contract's events since the last round (one query a
    network), then the fields of the watched channels they name; the others did not
    change, and their copies are marked current. The first round, every
    `full_every`-th, and one after a failed read read every watched channel."""

    def __init__(
        self,
        store: CollectionStore,
        chain: ChainReader,
        clock: ChainClock,
        networks: tuple[str, ...],
        policy: WatchPolicy,
        loop: CollectorLoop | None = None,
    ) -> None:
        self._store = store
        self._chain = chain
        self._clock = clock
        self._networks = networks
        self._loop = loop
        self._cursor: dict[str, int] = {}  # per network: the last block whose events were read
        self.policy = policy
        self.rounds = 0
        self.last_round_channels = 0  # channels watched in the last round
        self.last_round_reads = 0  # of which read on chain
        self.last_round_s = 0.0

    async def round(self) -> int:
        """One round: the chain's clock, then (if no other replica is at it) the
        watched channels; how many channels were watched."""
        for network in self._networks:
            block_time = await self._chain.chain_time(network)
            if block_time is not None:
                self._clock.learn(network, block_time)
        async with self._store.lock(WATCH_LOCK) as held:
            if not held:
                return 0
            started = time.monotonic()
            channels = await self._store.watched(self.policy.active_s, self.policy.limit)
            full = self.rounds % self.policy.full_every == 0
            by_network: dict[str, list[Channel]] = {}
            for channel in channels:
                by_network.setdefault(channel.network, []).append(channel)
            to_read: list[Channel] = []
            unchanged: list[str] = []
            for network, members in by_network.items():
                events = await self._chain.channel_events(network, None if full else self._cursor.get(network))
                if events is None:
                    self._cursor.pop(network, None)
                    continue  # unreadable: the copies age, and the request path stops trusting them
                latest, changed = events
                if full or network not in self._cursor:
                    to_read += members
                else:
                    to_read += [c for c in members if c.channel_id.lower() in changed]
                    unchanged += [c.channel_id for c in members if c.channel_id.lower() not in changed]
                self._cursor[network] = latest
            gate = asyncio.Semaphore(self.policy.concurrency)
            await asyncio.gather(*(self._read(channel, gate) for channel in to_read))
            await self._store.touch(unchanged)
        if self._loop is not None and any(c.mirror.withdraw_requested_at and unclaimed(c) for c in channels):
            # Charges taken on a channel being withdrawn since the last claim: claim them.
            self._loop.wake(WITHDRAWAL)
        self.rounds += 1
        self.last_round_channels = len(channels)
        self.last_round_reads = len(to_read)
        self.last_round_s = time.monotonic() - started
        if self.last_round_s > self.policy.interval_s:
            log.warning(
                "withdrawal watch: a round over %d channels (%d read) took %.1f s, more than the %.1f s interval",
                len(channels), len(to_read), self.last_round_s, self.policy.interval_s,
            )
        return len(channels)

    async def _read(self, channel: Channel, gate: asyncio.Semaphore) -> None:
        async with gate:
            onchain = await self._chain.channel(channel.network, channel.channel_id)
        if onchain is None:
            self._cursor.pop(channel.network, None)  # read every channel next round
            return
        observed = await self._store.observe(channel.channel_id, onchain)
        if onchain.withdraw_requested_at and not channel.mirror.withdraw_requested_at:
            log.warning("channel %s: the payer started a withdrawal", channel.channel_id)
        if observed is not None and onchain.withdraw_requested_at and unclaimed(observed) and self._loop is not None:
            self._loop.wake(WITHDRAWAL)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.round()
            except Exception:  # database or chain away: the next round tries again
                log.exception("withdrawal watch round failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.policy.interval_s)
