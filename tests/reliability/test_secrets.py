"""Secrets never leak: the facilitator API key, the sidecar's bearer token and
the gateway's admin token appear in no log line, no span, no tracking or ledger
row and no answer or error message — while the key really is sent to the
facilitator and the tokens really are checked.

The sidecar and the gateway run as child processes with the console span
exporter, so their stdout and stderr hold every log line and every span."""

from __future__ import annotations

import json
import logging

import aiohttp
import grpc
import pytest
from aiohttp import web
from google.protobuf import json_format
from pydantic import ValidationError

from paysidecar.v1 import status_pb2, tracking_pb2
from sidecar.config import Settings
from tests.support.payments import sign_for

from .observe import fetch

API_KEY = "fkey-5b1e0c9a77d4"
SIDECAR_TOKEN = "stok-e2a94f0b13c8"
ADMIN_TOKEN = "atok-7f3d28c6e9a1"
SECRETS = (API_KEY, SIDECAR_TOKEN, ADMIN_TOKEN)
SPANS = dict(OTEL_TRACES_EXPORTER="console", OTEL_METRICS_EXPORTER="none", OTEL_SDK_DISABLED="false")


class RecordingProxy:
    """Forwards to the devnet facilitator and keeps the Authorization header of
    each call; `echo_key_once` answers one verify with a 401 that repeats it."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""  # once it listens
        self.authorization: list[tuple[str, str]] = []
        self.echo_key_once = False

    async def handle(self, request: web.Request) -> web.Response:
        self.authorization.append((request.path, request.headers.get("Authorization", "")))
        if self.echo_key_once and request.path == "/verify":
            self.echo_key_once = False
            body = {"error": f"invalid api key {request.headers.get('Authorization', '')}"}
            return web.json_response(body, status=401)
        async with aiohttp.ClientSession() as session, session.request(
            request.method, self.upstream + request.path_qs, data=await request.read(), headers={"Content-Type": "application/json"}
        ) as answer:
            return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")


@pytest.fixture
async def proxy(facilitator):
    recorder = RecordingProxy(facilitator.url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield recorder
    await runner.cleanup()


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


async def test_secrets_appear_in_no_log_span_row_or_answer(
    spawn_sidecar, spawn_gateway, proxy, facilitator, database_url, caplog
):
    caplog.set_level(logging.DEBUG)
    sidecar = await spawn_sidecar(
        env={"FACILITATOR_URLS": proxy.url, **SPANS},
        facilitator_api_keys=f"{proxy.url}={API_KEY}",
        auth_token=SIDECAR_TOKEN,
    )
    gateway = await spawn_gateway(sidecar.target, env=SPANS, sidecar_token=SIDECAR_TOKEN, admin_token=ADMIN_TOKEN)
    seen: list[str] = []  # every answer a client got
    url = gateway.url + "/v1/records?_limit=2"
    client_secrets = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Cookie": f"session={SIDECAR_TOKEN}"}

    async with aiohttp.ClientSession() as http:

        async def get(target: str, headers: dict[str, str]) -> int:
            async with http.get(target, headers=headers) as answer:
                seen.append(json.dumps(dict(answer.headers)) + (await answer.read()).decode(errors="replace"))
                return answer.status

        assert await get(url, client_secrets) == 402
        assert await get(url, {**client_secrets, "PAYMENT-SIGNATURE": await sign_for(url)}) == 200
        proxy.echo_key_once = True
        assert await get(url, {**client_secrets, "PAYMENT-SIGNATURE": await sign_for(url)}) == 503
        assert await get(gateway.url + "/v1/telemetry", {"Authorization": "Bearer wrong"}) == 401
        assert await get(gateway.url + "/v1/telemetry?limit=1000", {"Authorization": f"Bearer {ADMIN_TOKEN}"}) == 200

    for metadata in ((), (("authorization", f"Bearer {ADMIN_TOKEN}"),)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await sidecar.status.GetStatus(status_pb2.GetStatusRequest(), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        seen.append(refused.value.details() or "")
    token = (("authorization", f"Bearer {SIDECAR_TOKEN}"),)
    for answer in (
        await sidecar.status.GetStatus(status_pb2.GetStatusRequest(), metadata=token),
        await sidecar.status.GetTelemetry(status_pb2.GetTelemetryRequest(limit=1000), metadata=token),
        await sidecar.tracking.ListRecords(tracking_pb2.ListRecordsRequest(limit=100), metadata=token),
    ):
        seen.append(json_format.MessageToJson(answer))

    # The key did travel, to the facilitator only, on every call.
    assert proxy.authorization and {auth for _, auth in proxy.authorization} == {f"Bearer {API_KEY}"}
    assert {path for path, _ in proxy.authorization} >= {"/verify", "/settle"}

    assert await gateway.terminate() == 0
    assert await sidecar.terminate() == 0  # exports the buffered spans on the way out
    logs = {"sidecar": sidecar.log(), "gateway": gateway.log()}
    for name, text in logs.items():
        assert '"span_id"' in text, f"no spans exported by the {name}"  # spans are in the checked text
        assert _leaks(text) == [], f"{name} output leaks {_leaks(text)}"
    rows = await fetch(
        database_url,
        "SELECT (SELECT coalesce(json_agg(r), '[]')::text FROM resource_call_records r)"
        " || (SELECT coalesce(json_agg(l), '[]')::text FROM payment_ledger l) AS dump",
    )
    assert _leaks(rows[0]["dump"]) == []
    assert [_leaks(answer) for answer in seen if _leaks(answer)] == []
    assert _leaks("\n".join(record.getMessage() for record in caplog.records)) == []


def test_bad_api_key_config_is_refused_without_echoing_the_key():
    """A malformed PAYSIDECAR_FACILITATOR_API_KEYS ("url:key" instead of "url=key")
    stops the start with a message that names the setting, not the value."""
    with pytest.raises(ValidationError) as caught:
        Settings(facilitator_api_keys=f"https://facilitator.example:{API_KEY}")
    (error,) = caught.value.errors()
    assert error["loc"] == ("facilitator_api_keys",)
    assert API_KEY not in error["msg"]
