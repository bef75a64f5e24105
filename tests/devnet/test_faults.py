"""Fault injection: each mode answers as documented, and money moves only when it should."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from devnet.chain import Chain
from devnet.facilitator import STATS_KEY, create_app
from devnet.faults import Fault, Faults
from devnet.wallets import MERCHANT_ADDRESS
from tests.devnet.support import eventually, serving, wire


@dataclass
class Outcome:
    status: int | None = None
    content_type: str | None = None
    body: bytes = b""
    error: Exception | None = None

    def json(self) -> Any:
        return json.loads(self.body)

    def is_json(self) -> bool:
        try:
            self.json()
        except ValueError:
            return False
        return True


async def exchange(http, method: str, url: str, body: Any = None, timeout: float = 5.0) -> Outcome:
    try:
        async with http.request(
            method, url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            return Outcome(response.status, response.content_type, await response.read())
    except (aiohttp.ClientError, TimeoutError) as error:
        return Outcome(error=error)


def _pending(o: Outcome) -> bool:
    answer = o.json()
    return (
        o.status == 200
        and answer["success"] is False
        and answer["errorReason"] == "settlement_pending"
        and answer["transaction"].startswith("0x")
    )


SETTLE_CASES: list[tuple[dict[str, Any], bool, Callable[[Outcome], bool]]] = [
    ({"mode": "delay", "delay_ms": 50}, True, lambda o: o.status == 200 and o.json()["success"] is True),
    (
        {"mode": "status", "status": 503},
        False,
        lambda o: o.status == 503 and o.json()["error"]["code"] == "devnet_fault",
    ),
    (
        {"mode": "status", "status": 502, "body": "upstream down"},
        False,
        lambda o: (o.status, o.content_type, o.body) == (502, "text/plain", b"upstream down"),
    ),
    (
        {"mode": "html"},
        False,
        lambda o: o.status == 200 and o.content_type == "text/html" and o.body.startswith(b"<!DOCTYPE html>"),
    ),
    (
        {"mode": "garbage"},
        False,
        lambda o: o.status == 200 and o.content_type == "application/json" and not o.is_json(),
    ),
    (
        {"mode": "truncated"},
        True,
        lambda o: o.status == 200 and not o.is_json() and o.body.startswith(b'{"success": true'),
    ),
    ({"mode": "settlement_pending"}, False, _pending),
    (
        {"mode": "no_success"},
        True,
        lambda o: o.status == 200 and "success" not in o.json() and o.json()["transaction"].startswith("0x"),
    ),
    (
        {"mode": "success_status", "status": 503},
        True,
        lambda o: o.status == 503 and o.json()["success"] is True,
    ),
    (
        {"mode": "invalid"},
        False,
        lambda o: o.json()["success"] is False
        and o.json()["errorReason"] == "invalid_exact_evm_payload_signature",
    ),
    ({"mode": "drop"}, False, lambda o: isinstance(o.error, aiohttp.ServerDisconnectedError)),
    ({"mode": "hang"}, False, lambda o: isinstance(o.error, TimeoutError)),
    # after_transfer: charged, and the answer is lost or wrong.
    ({"mode": "status", "status": 500, "after_transfer": True}, True, lambda o: o.status == 500),
    ({"mode": "html", "after_transfer": True}, True, lambda o: o.content_type == "text/html"),
    (
        {"mode": "drop", "after_transfer": True},
        True,
        lambda o: isinstance(o.error, aiohttp.ServerDisconnectedError),
    ),
    ({"mode": "settlement_pending", "after_transfer": True}, True, _pending),
]


@pytest.mark.parametrize(
    ("fault", "moves_money", "answers_as_documented"),
    SETTLE_CASES,
    ids=[
        f"{fault['mode']}{'-after_transfer' if fault.get('after_transfer') else ''}-{index}"
        for index, (fault, _, _) in enumerate(SETTLE_CASES)
    ],
)
async def test_settle_fault(devnet, requirements, sign, fault, moves_money, answers_as_documented):
    devnet.faults.arm(Fault(stage="settle", **fault))
    payload = await sign(requirements)

    outcome = await exchange(devnet.http, "POST", devnet.url + "/settle", wire(payload, requirements), timeout=1.0)

    assert answers_as_documented(outcome), outcome
    assert devnet.chain.transfers_applied == (1 if moves_money else 0)
    assert devnet.app[STATS_KEY].settle_calls == 1


VERIFY_CASES: list[tuple[dict[str, Any], Callable[[Outcome], bool]]] = [
    (
        {"mode": "invalid"},
        lambda o: o.json()["isValid"] is False
        and o.json()["invalidReason"] == "invalid_exact_evm_payload_signature",
    ),
    ({"mode": "no_success"}, lambda o: o.status == 200 and set(o.json()) == {"payer"}),
    ({"mode": "success_status", "status": 500}, lambda o: o.status == 500 and o.json()["isValid"] is True),
    ({"mode": "truncated"}, lambda o: o.status == 200 and not o.is_json()),
    ({"mode": "garbage"}, lambda o: o.status == 200 and not o.is_json()),
    ({"mode": "status", "status": 429}, lambda o: o.status == 429),
    ({"mode": "drop"}, lambda o: isinstance(o.error, aiohttp.ServerDisconnectedError)),
]


@pytest.mark.parametrize(("fault", "answers_as_documented"), VERIFY_CASES, ids=[f["mode"] for f, _ in VERIFY_CASES])
async def test_verify_fault(devnet, requirements, sign, fault, answers_as_documented):
    devnet.faults.arm(Fault(stage="verify", **fault))
    payload = await sign(requirements)

    outcome = await exchange(devnet.http, "POST", devnet.url + "/verify", wire(payload, requirements))

    assert answers_as_documented(outcome), outcome
    assert devnet.chain.transfers_applied == 0


SUPPORTED_CASES: list[tuple[dict[str, Any], Callable[[Outcome], bool]]] = [
    ({"mode": "status", "status": 500}, lambda o: o.status == 500),
    ({"mode": "html"}, lambda o: o.content_type == "text/html"),
    ({"mode": "truncated"}, lambda o: o.status == 200 and not o.is_json()),
    ({"mode": "delay", "delay_ms": 20}, lambda o: o.json()["kinds"]),
]


@pytest.mark.parametrize(
    ("fault", "answers_as_documented"), SUPPORTED_CASES, ids=[f["mode"] for f, _ in SUPPORTED_CASES]
)
async def test_supported_fault(devnet, fault, answers_as_documented):
    devnet.faults.arm(Fault(stage="supported", **fault))

    outcome = await exchange(devnet.http, "GET", devnet.url + "/supported")

    assert answers_as_documented(outcome), outcome


async def test_settlement_pending_after_transfer_reports_the_mined_transaction(devnet, requirements, sign):
    devnet.faults.arm(Fault(stage="settle", mode="settlement_pending", after_transfer=True))
    payload = await sign(requirements)

    _, answer = await devnet.settle(payload, requirements)

    assert answer["transaction"] == devnet.chain.transactions()[0].tx_hash


async def test_settlement_pending_with_mine_after_is_mined_later(devnet, requirements, sign):
    devnet.faults.arm(Fault(stage="settle", mode="settlement_pending", mine_after_ms=200))
    payload = await sign(requirements)

    _, answer = await devnet.settle(payload, requirements)

    assert devnet.chain.is_pending(answer["transaction"])
    await eventually(lambda: devnet.chain.transfers_applied == 1)
    assert devnet.chain.receipt(answer["transaction"]).status == 1
    assert devnet.chain.balance_of(MERCHANT_ADDRESS) == 1000


async def test_a_retried_settle_reconciles_the_pending_transaction(devnet, requirements, sign):
    devnet.faults.arm(Fault(stage="settle", mode="settlement_pending", times=1))
    payload = await sign(requirements)
    _, pending = await devnet.settle(payload, requirements)
    devnet.chain.mine(pending["transaction"])

    _, retried = await devnet.settle(payload, requirements)

    assert retried["success"] is True
    assert retried["transaction"] == pending["transaction"]
    assert devnet.chain.transfers_applied == 1


async def test_times_disarms_a_fault_after_that_many_uses(devnet, requirements, sign):
    devnet.faults.arm(Fault(stage="verify", mode="status", status=503, times=2))
    payload = await sign(requirements)

    statuses = [(await devnet.verify(payload, requirements))[0] for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert devnet.faults.active() == []


async def test_faults_are_armed_listed_and_cleared_over_http(devnet):
    url = devnet.url + "/_devnet/faults"
    armed = await exchange(
        devnet.http,
        "POST",
        url,
        [{"stage": "settle", "mode": "drop", "times": 3}, {"stage": "verify", "mode": "html"}],
    )
    listed = await exchange(devnet.http, "GET", url)
    cleared_settle = await exchange(devnet.http, "DELETE", url + "?stage=settle")
    cleared = await exchange(devnet.http, "DELETE", url)

    assert armed.status == 200
    assert {(f["stage"], f["mode"], f["remaining"]) for f in listed.json()["faults"]} == {
        ("settle", "drop", 3),
        ("verify", "html", None),
    }
    assert [f["stage"] for f in cleared_settle.json()["faults"]] == ["verify"]
    assert cleared.json() == {"faults": []}
    assert devnet.faults.active() == []


@pytest.mark.parametrize(
    "fault",
    [
        {"stage": "verify", "mode": "settlement_pending"},
        {"stage": "supported", "mode": "invalid"},
        {"stage": "verify", "mode": "drop", "after_transfer": True},
        {"stage": "settle", "mode": "drop", "mine_after_ms": 10},
        {"stage": "settle", "mode": "explode"},
        {"stage": "settle", "mode": "status", "status": 99},
        {"stage": "settle", "mode": "drop", "times": 0},
        {"stage": "settle", "mode": "drop", "surprise": 1},
        {"mode": "drop"},
        "drop",
    ],
)
async def test_a_bad_fault_definition_gets_a_400(devnet, fault):
    outcome = await exchange(devnet.http, "POST", devnet.url + "/_devnet/faults", fault)

    assert outcome.status == 400
    assert outcome.json()["error"]["code"] == "invalid_fault"
    assert devnet.faults.active() == []


async def test_shutdown_releases_a_hanging_request(http, requirements, sign):
    app = create_app(Chain(), Faults(Fault(stage="settle", mode="hang")))
    payload = await sign(requirements)
    async with serving(app) as url:
        request = asyncio.create_task(exchange(http, "POST", url + "/settle", wire(payload, requirements)))
        await eventually(lambda: app[STATS_KEY].settle_calls == 1)
        started = time.monotonic()
    outcome = await request

    assert time.monotonic() - started < 5
    assert isinstance(outcome.error, aiohttp.ServerDisconnectedError)
