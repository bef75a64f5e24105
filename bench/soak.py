"""The soak's moving parts: mixed client traffic against the gateway, a fault
schedule for the devnet facilitator, and memory sampling of the servers.

Traffic classes (each request picks one at random, by weight):
- paid       a fresh pre-signed payment: 200, or a refusal when a fault hits it
- unpaid     no payment: 402
- replayed   a payment already sent before: 402 payment_already_used, or 200 once
             when it was charged but not served (a redeem)
- malformed  a broken payment header or a bad query: 400/402
- free       the free dataset list: 200
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import random
import time
import uuid
from dataclasses import dataclass, field

import aiohttp

CLASSES = {"paid": 45, "unpaid": 15, "replayed": 15, "malformed": 15, "free": 10}
REQUEST_TIMEOUT_S = 30.0

# (label, fault) armed on the facilitator in turn; `times` bounds each to a few requests.
FAULTS: list[tuple[str, dict]] = [
    ("verify_503", {"stage": "verify", "mode": "status", "status": 503, "times": 5}),
    ("verify_drop", {"stage": "verify", "mode": "drop", "times": 3}),
    ("settle_503", {"stage": "settle", "mode": "status", "status": 503, "times": 3}),
    ("settle_drop", {"stage": "settle", "mode": "drop", "times": 3}),
    ("settle_drop_after_transfer", {"stage": "settle", "mode": "drop", "after_transfer": True, "times": 2}),
    ("settle_500_after_transfer", {"stage": "settle", "mode": "status", "status": 500, "after_transfer": True, "times": 2}),
    ("settle_hang_after_transfer", {"stage": "settle", "mode": "hang", "after_transfer": True, "times": 1}),
    ("settle_truncated", {"stage": "settle", "mode": "truncated", "times": 2}),
    ("settle_delay_1500ms", {"stage": "settle", "mode": "delay", "delay_ms": 1500, "times": 3}),
]


def nonce_of(header: str) -> str | None:
    """The EIP-3009 nonce a payment header carries (None when it is not one)."""
    try:
        return json.loads(base64.b64decode(header))["payload"]["authorization"]["nonce"].lower()
    except (ValueError, KeyError, TypeError):
        return None


def _forged(header: str) -> str:
    """A real payment with its signature broken: decodes and binds, fails verify."""
    wire = json.loads(base64.b64decode(header))
    signature = wire["payload"]["signature"]
    wire["payload"]["signature"] = signature[:-6] + ("000000" if signature[-6:] != "000000" else "111111")
    return base64.b64encode(json.dumps(wire).encode()).decode()


@dataclass(frozen=True)
class Request:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    nonce: str | None = None  # of the payment sent, when it is a real one
    tracked: bool = True  # reaches the paywall, so the sidecar keeps a record of it


@dataclass(frozen=True)
class Answer:
    kind: str
    status: int  # 0: no HTTP answer at all
    request_id: str
    nonce: str | None
    tracked: bool
    reason: str  # x402 error / JSON error code, when there is one
    ms: float


@dataclass
class Traffic:
    """Drives the gateway with the traffic classes until `stop` is set."""

    gateway_url: str
    payments: collections.deque[str]  # fresh pre-signed payments (refilled from outside)
    rng: random.Random
    answers: list[Answer] = field(default_factory=list)
    sent_payments: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def _pick(self) -> str:
        kind = self.rng.choices(list(CLASSES), weights=list(CLASSES.values()))[0]
        if kind == "paid" and not self.payments:
            return "unpaid"  # the signers fell behind: do not wait for them
        if kind == "replayed" and not self.sent_payments:
            return "unpaid"
        return kind

    def _request(self, kind: str) -> Request:
        records = f"{self.gateway_url}/v1/records?_limit=5"
        if kind == "free":
            return Request(f"{self.gateway_url}/v1/datasets", tracked=False)
        if kind == "unpaid":
            return Request(records)
        if kind in ("paid", "replayed"):
            header = self.payments.popleft() if kind == "paid" else self.rng.choice(self.sent_payments)
            if kind == "paid":
                self.sent_payments.append(header)
            return Request(records, {"PAYMENT-SIGNATURE": header}, nonce_of(header))
        broken = [
            Request(records, {"PAYMENT-SIGNATURE": "not base64 at all!"}),
            Request(records, {"PAYMENT-SIGNATURE": base64.b64encode(os.urandom(48)).decode()}),
            Request(records, {"X-PAYMENT": base64.b64encode(b'{"x402Version": 2}').decode()}),
            # A bad query is refused (400) before the paywall: no payment, no record.
            Request(f"{self.gateway_url}/v1/records?_limit=-5", tracked=False),
        ]
        if self.sent_payments:
            broken.append(Request(records, {"PAYMENT-SIGNATURE": _forged(self.rng.choice(self.sent_payments))}))
        return self.rng.choice(broken)

    async def worker(self, session: aiohttp.ClientSession) -> None:
        while not self.stop.is_set():
            kind = self._pick()
            request = self._request(kind)
            request_id = uuid.uuid4().hex
            started = time.perf_counter()
            try:
                headers = {**request.headers, "X-Request-ID": request_id}
                async with session.get(request.url, headers=headers) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                body, status = type(exc).__name__.encode(), 0  # no HTTP answer at all
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.answers.append(
                Answer(kind, status, request_id, request.nonce, request.tracked, _reason(body), elapsed_ms)
            )


def _reason(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    if isinstance(data.get("error"), dict):
        return str(data["error"].get("code", ""))
    return str(data.get("error") or "")


async def inject_faults(
    session: aiohttp.ClientSession, facilitator_url: str, every_s: float, stop: asyncio.Event, rng: random.Random
) -> collections.Counter[str]:
    """Arm a random fault every `every_s` seconds until `stop`; counts by label."""
    armed: collections.Counter[str] = collections.Counter()
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            label, fault = rng.choice(FAULTS)
            async with session.post(f"{facilitator_url}/_devnet/faults", json=fault) as response:
                response.raise_for_status()
            armed[label] += 1
    return armed


def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (Linux /proc), None when unknown."""
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def sample_rss(pids: dict[str, int], every_s: float, stop: asyncio.Event) -> dict[str, list[tuple[float, float]]]:
    """(seconds since start, MiB) per process, every `every_s` seconds until `stop`."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
    started = time.monotonic()
    while True:
        for name, pid in pids.items():
            value = rss_mib(pid)
            if value is not None:
                samples[name].append((time.monotonic() - started, value))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return samples
        except TimeoutError:
            continue
