"""503 answers do not promise what we don't know. A sidecar process is SIGKILLed
while its settle is at the facilitator, which has already moved the money: the
gateway process cannot know what happened, so it answers that the payment is
being checked (retry the same header) — never "nothing was charged". After the
restart, recovery finds the transfer on chain, and the same header, retried
through the same gateway, is served once without a second charge."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from tests.support.net import closed_port
from tests.support.payments import sign_for

from .observe import eventually, fetch, nonce_of, transfers_by_nonce

# The first sidecar waits on the settle long enough to be killed mid-settle; the
# restart resolves the interrupted settle at once.
FIRST_RUN = dict(settle_timeout_s=60, settle_retries=0, reconcile_window_s=0, recovery_interval_s=3600)
RESTART = dict(settle_timeout_s=0.2, settle_retries=0, reconcile_window_s=0, recovery_interval_s=0.1)


async def _get(session: aiohttp.ClientSession, url: str, header: str) -> tuple[int, dict[str, str], str]:
    async with session.get(url, headers={"PAYMENT-SIGNATURE": header}) as response:
        return response.status, dict(response.headers), await response.text()


async def test_sidecar_killed_mid_settle_is_answered_in_doubt_and_the_same_header_redeems_once(
    spawn_sidecar, spawn_gateway, facilitator, chain, database_url
):
    port = closed_port()
    pinned = {"PAYSIDECAR_PORT": str(port)}  # the restart listens where the gateway calls
    sidecar = await spawn_sidecar(env=pinned, **FIRST_RUN)
    gateway = await spawn_gateway(sidecar.target)
    url = gateway.url + "/v1/records?_limit=1"
    header = await sign_for(url)
    facilitator.arm(stage="settle", mode="hang", after_transfer=True, times=1)  # charged, no answer

    async with aiohttp.ClientSession() as session:
        paying = asyncio.ensure_future(_get(session, url, header))
        await eventually(lambda: chain.transfers_applied == 1, "the facilitator to move the money")
        await sidecar.kill()
        status, headers, text = await paying
        assert status == 503, text
        assert int(headers["Retry-After"]) >= 1
        assert json.loads(text)["error"]["code"] == "payment_in_doubt"
        assert "nothing was charged" not in text and '"data"' not in text

        await spawn_sidecar(env=pinned, **RESTART)

        async def unserved() -> bool:
            rows = await fetch(database_url, "SELECT state FROM payment_ledger")
            return [row["state"] for row in rows] == ["settled_unserved"]

        await eventually(unserved, "recovery to find the transfer")

        async def redeemed() -> tuple[int, str] | None:
            status, _, text = await _get(session, url, header)
            if status == 503 and json.loads(text)["error"]["code"] == "payment_service_unavailable":
                return None  # the gateway has not reconnected yet: Authorize never arrived
            return status, text

        status, text = await eventually(redeemed, "the same header to be answered")
        assert status == 200 and '"data"' in text
        again, _, _ = await _get(session, url, header)
        assert again == 402

    assert transfers_by_nonce(chain)[nonce_of(header)] == 1
    assert facilitator.stats.settle_calls == 1
