"""The collector under load: how many channels a second it claims (and how many per
claim transaction), and the money at risk over a soak with withdrawals injected.

Each figure runs the real services as processes of their own: the devnet
facilitator (its chain and JSON-RPC), a sidecar on PostgreSQL ($DATABASE_URL, a
scratch database next to it when allowed, else an embedded pgserver). Channels
are opened and paid through the sidecar's own Authorize/Settle with payments the
SDK client pre-signed (bench/signing.py), so their charges, vouchers and mirrors
are exactly what the request path leaves.

1. **Claims per second**: for each batch size, N channels each charged 3 prices,
   then one `Collect`: channels claimed / the run's wall time (its claims, the
   settle, and their database writes), claim transactions sent.
2. **Soak**: C clients pay vouchers on their own channels for S seconds with the
   collector on (thresholds per channel and in total, the withdrawal watch); every
   few seconds one payer starts a withdrawal, the chain's clock then moves past the
   point where vouchers are still taken, and the payer completes its withdrawal.
   GetStatus's money at risk is sampled every 100 ms. At the end: the peak and the
   time above the configured total threshold, and what completed withdrawals took
   back from what we had charged (must be 0).

    python -m bench.collector                      # both, defaults
    python -m bench.collector --channels 200 --batch-sizes 1,20,100 --soak-seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, BatchSettlementEvmSchemeOptions  # noqa: E402
from x402.mechanisms.evm.batch_settlement.constants import MIN_WITHDRAW_DELAY, SCHEME_BATCH_SETTLEMENT  # noqa: E402
from x402.mechanisms.evm.signers import EthAccountSigner  # noqa: E402
from x402.schemas import PaymentRequired  # noqa: E402

from bench import services, stack  # noqa: E402
from bench.channels import open_lanes  # noqa: E402
from bench.loadgen import run_lanes  # noqa: E402
from bench.signing import Channel, Signer  # noqa: E402
from bench.targets import SidecarTarget  # noqa: E402
from bench.tracking_write import database  # noqa: E402
from devnet.wallets import payer_account  # noqa: E402
from gateway.constants import BASE_SEPOLIA, DEFAULT_PRICE, DEVNET_PAY_TO  # noqa: E402
from paysidecar.aiohttp_middleware import RouteSpec  # noqa: E402
from paysidecar.v1 import channels_pb2, channels_pb2_grpc, status_pb2, status_pb2_grpc  # noqa: E402

ROUTE = RouteSpec(key="GET /v1/records", price=DEFAULT_PRICE, pay_to=DEVNET_PAY_TO, network=BASE_SEPOLIA)
URL = "http://127.0.0.1:8402/v1/records"
CLAIM_MARGIN_S = 300  # vouchers stop this long before a withdrawal can complete


def _sidecar_env(**settings: object) -> dict[str, str]:
    values = {
        "schemes": SCHEME_BATCH_SETTLEMENT,
        "withdraw_delay_s": MIN_WITHDRAW_DELAY,
        "channel_claim_margin_s": CLAIM_MARGIN_S,
        "tracking_enabled": "true",
        **settings,
    }
    return {f"PAYSIDECAR_{name.upper()}": str(value) for name, value in values.items()}


async def _batch_only(target: SidecarTarget) -> PaymentRequired:
    required = await target.challenge()
    return required.model_copy(update={"accepts": [o for o in required.accepts if o.scheme == SCHEME_BATCH_SETTLEMENT]})


async def _open(target: SidecarTarget, signer: Signer, clients: int, vouchers: int, prefix: str, concurrency: int):
    """`clients` channels opened, their vouchers ready (lanes) — nothing measured."""
    required = await _batch_only(target)
    async with target.connect(concurrency) as send:
        gate = asyncio.Semaphore(concurrency)

        async def bounded(item):
            async with gate:
                return await send(item)

        lanes = await open_lanes(target, bounded, signer, required, clients, vouchers, prefix)
    return required, lanes


async def _pay_all(target: SidecarTarget, lanes, concurrency: int) -> None:
    """Every voucher of every lane, in order within a lane, `concurrency` lanes at a time."""
    async with target.connect(concurrency) as send:
        gate = asyncio.Semaphore(concurrency)

        async def lane(items) -> None:
            async with gate:
                for item in items:
                    error = await send(item)
                    if error is not None:
                        raise RuntimeError(f"a voucher was refused while charging the channels: {error}")

        await asyncio.gather(*(lane(items) for items in lanes.lanes))


async def _collect(port: int) -> channels_pb2.CollectResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channels_pb2_grpc.ChannelServiceStub(channel)
        return await stub.Collect(channels_pb2.CollectRequest(wait_seconds=60), timeout=600)


async def claims_per_second(db_url: str, facilitator: services.Service, run_dir: Path, signer: Signer,
                            channels: int, batch_sizes: list[int]) -> list[str]:  # fmt: skip
    rows = [
        "| channels per claim transaction | channels | claim transactions | run (s) | channels claimed / s | settled (USDC) |",
        "|---|---|---|---|---|---|",
    ]
    for size in batch_sizes:
        sidecar = await stack.start_sidecar(
            f"sidecar-b{size}", db_url, facilitator.url, run_dir,
            **_sidecar_env(collector_enabled="false", collect_batch_size=size, collect_max_channels=100_000),
        )  # fmt: skip
        try:
            target = SidecarTarget("sidecar", f"127.0.0.1:{sidecar.port}", URL, ROUTE)
            _, lanes = await _open(target, signer, channels, 2, f"claims-b{size}.", 16)
            await _pay_all(target, lanes, 16)
            started = time.perf_counter()
            report = await _collect(sidecar.port)
            elapsed = time.perf_counter() - started
        finally:
            await services.stop(sidecar)
        claims = [claim for claim in report.claims if claim.state == "done"]
        rows.append(
            f"| {size} | {report.claimed_channels} | {len(claims)} | {elapsed:.2f}"
            f" | {report.claimed_channels / elapsed:.0f} | {int(report.settled_amount or 0) / 10**6:.3f} |"
        )
        print(rows[-1], flush=True)
    return rows


def _config(channel: Channel, required: PaymentRequired) -> dict:
    requirements = required.accepts[0]
    options = BatchSettlementEvmSchemeOptions(salt=channel.salt)
    scheme = BatchSettlementEvmScheme(EthAccountSigner(payer_account(channel.payer)), options)
    return scheme.build_channel_config(requirements).to_dict()


async def _devnet(session: aiohttp.ClientSession, facilitator: services.Service, path: str, body: dict) -> dict:
    async with session.post(f"{facilitator.url}/_devnet/{path}", json=body) as response:
        answer = await response.json()
    if response.status != 200:
        raise RuntimeError(f"devnet {path} refused: {answer}")
    return answer


async def soak(db_url: str, facilitator: services.Service, run_dir: Path, signer: Signer, clients: int,
               seconds: float, channel_threshold: int, total_threshold: int, watch_s: float,
               withdraw_every_s: float) -> list[str]:  # fmt: skip
    sidecar = await stack.start_sidecar(
        "sidecar-soak", db_url, facilitator.url, run_dir,
        **_sidecar_env(
            collector_enabled="true",
            collect_interval_s=60,
            collect_channel_threshold=channel_threshold,
            collect_total_threshold=total_threshold,
            channel_watch_interval_s=watch_s,
        ),
    )  # fmt: skip
    samples: list[int] = []
    rounds: list[tuple[int, float]] = []  # (channels, seconds) of the watch's rounds, as sampled
    withdrawals = 0
    try:
        target = SidecarTarget("sidecar", f"127.0.0.1:{sidecar.port}", URL, ROUTE)
        vouchers = int(seconds * 400 / clients) + 50  # more than a lane can send in the time
        required, lanes = await _open(target, signer, clients, vouchers, "soak.", 16)
        configs = [_config(channel, required) for channel in lanes.channels]
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{sidecar.port}") as channel,
            aiohttp.ClientSession() as session,
            target.connect(clients) as send,
        ):
            status = status_pb2_grpc.StatusServiceStub(channel)
            done = asyncio.Event()

            async def sample() -> None:
                while not done.is_set():
                    answer = await status.GetStatus(status_pb2.GetStatusRequest())
                    samples.append(int(answer.money_at_risk or 0))
                    rounds.append((answer.collector.watched_channels, answer.collector.watch_round_seconds))
                    await asyncio.sleep(0.1)

            async def withdraw() -> None:
                nonlocal withdrawals
                order = random.Random(18).sample(range(len(configs)), len(configs))
                while not done.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(done.wait(), withdraw_every_s)
                    if done.is_set() or not order:
                        return
                    config = configs[order.pop()]
                    withdrawals += 1
                    # The payer asks for everything not claimed; the chain's clock then
                    # moves past the claim margin, and later past the delay.
                    await _devnet(session, facilitator, "channels/initiate-withdraw", {"channelConfig": config, "amount": "1"})
                    await asyncio.sleep(watch_s * 3)
                    await _devnet(session, facilitator, "clock", {"advance_s": MIN_WITHDRAW_DELAY - CLAIM_MARGIN_S + 1})
                    await asyncio.sleep(watch_s * 3)
                    await _devnet(session, facilitator, "clock", {"advance_s": CLAIM_MARGIN_S})
                    await _devnet(session, facilitator, "channels/finalize-withdraw", {"channelConfig": config})

            background = [asyncio.create_task(sample()), asyncio.create_task(withdraw())]
            result = await run_lanes(send, lanes.lanes, seconds)
            done.set()
            await asyncio.gather(*background)
        # Let the last charges be claimed, then compare what was charged with the chain.
        final = await _collect(sidecar.port)
        lost = await _lost(session_url=facilitator.url, port=sidecar.port)
    finally:
        await services.stop(sidecar)
    above = sum(1 for value in samples if value > total_threshold)
    usdc = 10**6
    return [
        f"Soak: {clients} channels paying vouchers for {seconds:.0f} s ({result.ok} paid, {result.throughput:.0f}/s;"
        f" refused: {dict(result.errors) or 'none'}), {withdrawals} withdrawals started and completed by their payers.",
        "",
        "| configured | value |",
        "|---|---|",
        f"| per-channel threshold | {channel_threshold / usdc:.3f} USDC |",
        f"| total threshold | {total_threshold / usdc:.3f} USDC |",
        f"| withdrawal watch interval | {watch_s:g} s |",
        "",
        "| measured (GetStatus every 100 ms) | value |",
        "|---|---|",
        f"| samples | {len(samples)} |",
        f"| money at risk, median | {statistics.median(samples) / usdc:.3f} USDC |" if samples else "| money at risk | no samples |",
        f"| money at risk, peak | {max(samples, default=0) / usdc:.3f} USDC |",
        f"| samples above the total threshold | {above} ({100 * above / max(1, len(samples)):.1f} %) |",
        f"| withdrawal watch round, longest sampled | {max((r[1] for r in rounds), default=0):.2f} s over"
        f" {max((r[0] for r in rounds), default=0)} channels |",
        f"| charged on withdrawn channels and not claimed (lost) | {lost / usdc:.6f} USDC |",
        f"| last run after the soak | claimed {int(final.claimed_amount or 0) / usdc:.3f} USDC on {final.claimed_channels} channels |",
    ]


async def _lost(session_url: str, port: int) -> int:
    """Charged (our rows) minus claimed on chain, over channels whose payer completed
    a withdrawal: what they took back of what we had charged."""
    lost = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel, aiohttp.ClientSession() as session:
        stub = channels_pb2_grpc.ChannelServiceStub(channel)
        cursor = ""
        while True:
            page = await stub.ListChannels(channels_pb2.ListChannelsRequest(limit=100, cursor=cursor))
            for row in page.channels:
                async with session.get(f"{session_url}/_devnet/channels/{row.channel_id}") as response:
                    onchain = await response.json()
                if row.withdraw_requested_at or int(onchain["balance"]) < int(row.charged):
                    lost += max(0, int(row.charged) - int(onchain["totalClaimed"]))
            if not page.has_more:
                return lost
            cursor = page.next_cursor


async def run(args: argparse.Namespace) -> list[str]:
    run_dir = Path(tempfile.mkdtemp(prefix="bench-collector-"))
    lines = [f"Collector figures, {os.cpu_count()} cores; logs in the run directory."]
    async with database(os.environ.get("DATABASE_URL")) as db_url, Signer() as signer:
        facilitator = await stack.start_facilitator(run_dir)
        try:
            if args.channels:
                lines += ["", *await claims_per_second(db_url, facilitator, run_dir, signer, args.channels, args.batch_sizes)]
            if args.soak_seconds:
                lines += ["", *await soak(db_url, facilitator, run_dir, signer, args.clients, args.soak_seconds,
                                          args.channel_threshold, args.total_threshold, args.watch_s,
                                          args.withdraw_every_s)]  # fmt: skip
        finally:
            await services.stop(facilitator)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.collector", description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=300, help="channels per claims/s run (0: skip)")
    parser.add_argument("--batch-sizes", type=lambda text: [int(x) for x in text.split(",")], default=[1, 20, 100])
    parser.add_argument("--soak-seconds", type=float, default=30, help="0: skip the soak")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--channel-threshold", type=int, default=20_000, help="atomic units")
    parser.add_argument("--total-threshold", type=int, default=100_000, help="atomic units")
    parser.add_argument("--watch-s", type=float, default=1.0)
    parser.add_argument("--withdraw-every-s", type=float, default=5.0)
    args = parser.parse_args()
    for line in asyncio.run(run(args)):
        print(line)


if __name__ == "__main__":
    main()
