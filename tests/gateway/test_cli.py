"""`paysidecar-cli` sidecar commands against the real sidecar, and its errors."""

from __future__ import annotations

import asyncio
import json

from devnet.wallets import payer_account
from gateway.cli import build_parser, main

from tests.support.net import closed_port

from .conftest import running_gateway


async def cli(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    return await args.run(args)


async def test_call_prints_request_id_status_payer_transaction_and_rows(paid_stack, capsys):
    url = paid_stack.gateway.url + "/v1/datasets/stations/records?country=JP"
    assert await cli("call", url, "--payer-index", "2") == 0
    out = capsys.readouterr().out
    fields = dict(line.split(None, 1) for line in out.splitlines()[:5])
    assert set(fields) == {"request_id", "status", "payer", "transaction", "network"}
    assert fields["status"] == "200"
    assert fields["payer"] == payer_account(2).address
    assert paid_stack.chain.receipt(fields["transaction"]) is not None
    assert "ST-014" in out and "Tokyo" in out
    assert "1 rows in this page, 1 matching" in out


async def test_records_stats_status_and_telemetry_read_the_sidecar(paid_stack, capsys):
    assert await cli("call", paid_stack.gateway.url + "/v1/records?city=Oslo&_limit=1", "--json") == 0
    capsys.readouterr()
    target = paid_stack.sidecar.target

    async with asyncio.timeout(10):
        while True:  # tracking is written off the request path
            assert await cli("records", "--sidecar", target, "--settled", "yes", "--json") == 0
            listed = json.loads(capsys.readouterr().out)
            if listed.get("records"):
                break
            await asyncio.sleep(0.05)
    (record,) = listed["records"]
    assert record["path"] == "/v1/records"
    assert record["settlement"]["success"] is True
    assert await cli("records", "--sidecar", target, "--json") == 0
    assert int(json.loads(capsys.readouterr().out)["total"]) == 2  # the 402, then the paid retry

    assert await cli("records", "--sidecar", f"grpc://{target}", "--settled", "yes", "--since", "1h") == 0
    table = capsys.readouterr().out
    assert "/v1/records" in table and "1 of 1 records" in table

    assert await cli("stats", "--sidecar", target, "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert int(stats["successful_settlements"]) == 1

    assert await cli("status", "--sidecar", target) == 0
    status = capsys.readouterr().out
    assert paid_stack.facilitator.url in status and "database" in status

    assert await cli("telemetry", "--sidecar", target, "--limit", "5") == 0
    assert "payment_settled" in capsys.readouterr().out


def test_unreachable_sidecar_is_one_line_and_exit_1(capsys):
    assert main(["status", "--sidecar", f"127.0.0.1:{closed_port()}", "--timeout", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("paysidecar-cli: sidecar at 127.0.0.1:") and "UNAVAILABLE" in err[-1]


def test_call_to_an_unreachable_gateway_is_one_line_and_exit_1(capsys):
    assert main(["call", f"http://127.0.0.1:{closed_port()}/v1/records"]) == 1
    assert capsys.readouterr().err.startswith("paysidecar-cli: cannot reach http://127.0.0.1:")


async def test_call_to_a_gateway_without_its_sidecar_shows_the_503(capsys):
    async with running_gateway() as gateway:
        assert await cli("call", gateway.url + "/v1/records") == 1
    out = capsys.readouterr().out
    assert "status       503" in out
    assert "error: payment_service_unavailable:" in out
