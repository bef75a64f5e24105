"""`paysidecar-cli` sidecar commands against the real sidecar, `discover` against the
devnet facilitator's catalogue, and their errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from devnet.chain import Chain
from devnet.facilitator import CATALOGUE_KEY
from devnet.facilitator import create_app as create_facilitator
from devnet.wallets import MERCHANT_ADDRESS, PAYER_KEYS, payer_account
from gateway.cli import PAYER_KEY_VARIABLE, CliError, build_parser, main, payer

from tests.devnet.bazaar import STATIONS, pay, payment_required
from tests.devnet.channels import ChannelPayer, batch_requirements
from tests.devnet.support import serving, wire
from tests.support.payments import requirements as exact_requirements
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


async def test_call_pays_with_the_key_in_the_environment(paid_stack, capsys, monkeypatch):
    monkeypatch.setenv(PAYER_KEY_VARIABLE, PAYER_KEYS[3])
    assert await cli("call", paid_stack.gateway.url + "/v1/records?_limit=1") == 0
    fields = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines()[:5])
    assert fields["status"] == "200"
    assert fields["payer"] == payer_account(3).address


def test_without_a_key_only_a_gateway_on_this_machine_is_paid_and_only_then_devnet_loads():
    """The devnet's test keys are public: production code paths never load them."""
    script = "\n".join(
        [
            "import sys",
            "from gateway.cli import CliError, payer",
            "loaded = lambda: sorted(m for m in sys.modules if m.split('.')[0] == 'devnet')",
            "try:",
            "    payer('https://data.example.com/v1/records', None)",
            "except CliError as exc:",
            "    print('refused:', exc)",
            "print('devnet loaded:', loaded())",
            "print('local payer:', payer('http://127.0.0.1:8402/v1/records', 1).address)",
        ]
    )
    env = {name: value for name, value in os.environ.items() if name != PAYER_KEY_VARIABLE}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"refused: set {PAYER_KEY_VARIABLE} to the private key to pay with; "
        "the devnet test wallets pay only a gateway on this machine",
        "devnet loaded: []",
        f"local payer: {payer_account(1).address}",
    ]


def test_a_bad_payer_key_is_refused_without_echoing_it(monkeypatch):
    monkeypatch.setenv(PAYER_KEY_VARIABLE, "0xdeadbeef-not-a-key")
    with pytest.raises(CliError) as refused:
        payer("http://127.0.0.1:8402/v1/records", None)
    assert PAYER_KEY_VARIABLE in str(refused.value) and "deadbeef" not in str(refused.value)
    monkeypatch.setenv(PAYER_KEY_VARIABLE, PAYER_KEYS[0])
    with pytest.raises(CliError, match="--payer-index"):
        payer("http://127.0.0.1:8402/v1/records", 2)


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


# -- discover ------------------------------------------------------------------

OTHER = "http://127.0.0.1:8402/v1/datasets/rainfall/records"


@contextlib.asynccontextmanager
async def devnet_facilitator() -> AsyncIterator[tuple[str, aiohttp.ClientSession, web.Application]]:
    app = create_facilitator(Chain(), name="discovery")
    async with serving(app) as url, aiohttp.ClientSession() as http:
        yield url, http, app


async def settle(http: aiohttp.ClientSession, url: str, payload, requirements) -> None:
    async with http.post(url + "/settle", json=wire(payload, requirements)) as response:
        answer = await response.json()
    assert answer["success"] is True, answer


async def test_discover_lists_each_resource_with_its_method_description_and_prices(capsys):
    async with devnet_facilitator() as (url, http, _app):
        exact = exact_requirements()
        await settle(http, url, await pay(payment_required(exact, STATIONS + "?country=JP")), exact)
        deposit = await ChannelPayer(1).client.create_payment_payload(payment_required(batch_requirements()))
        await settle(http, url, deposit, batch_requirements())
        dearer = exact_requirements(amount=2500, pay_to=payer_account(3).address)
        await settle(http, url, await pay(payment_required(dearer, OTHER, description="Rainfall"), 2), dearer)

        assert await cli("discover", url) == 0
        out = capsys.readouterr().out
        assert await cli("discover", url, "--json") == 0
        listed = json.loads(capsys.readouterr().out)

    blocks = out.strip().split("\n\n")
    assert blocks[0].splitlines() == [
        f"GET {OTHER}  (x402 v2)",
        "    Rainfall",
        f"    exact  eip155:84532  0.0025 USDC  2500 atomic  payTo {payer_account(3).address}",
    ]
    assert blocks[1].splitlines() == [
        f"GET {STATIONS}  (x402 v2)",
        "    Weather stations: id, city, elevation",
        f"    batch-settlement  eip155:84532  0.001 USDC  1000 atomic  payTo {MERCHANT_ADDRESS}",
        f"    exact             eip155:84532  0.001 USDC  1000 atomic  payTo {MERCHANT_ADDRESS}",
    ]
    assert blocks[2] == f"2 resources listed at {url}"
    assert (listed["facilitator"], listed["total"]) == (url, 2)
    stations = listed["resources"][1]
    assert (stations["resource"], stations["method"], stations["type"]) == (STATIONS, "GET", "http")
    assert [(o["scheme"], o["price"], o["amount"]) for o in stations["accepts"]] == [
        ("batch-settlement", "0.001 USDC", "1000"),
        ("exact", "0.001 USDC", "1000"),
    ]
    assert stations["bazaar"]["info"]["input"]["queryParams"] == {"country": "JP", "_limit": "10"}


async def test_discover_pages_through_the_whole_catalogue(capsys):
    requirements = exact_requirements()
    signed = await pay(payment_required(requirements))
    async with devnet_facilitator() as (url, _http, app):
        urls = [f"http://127.0.0.1:8402/v1/datasets/set{n:03}/records" for n in range(205)]
        for resource in urls:
            paid = signed.model_copy(update={"resource": signed.resource.model_copy(update={"url": resource})})
            app[CATALOGUE_KEY].record(paid, requirements)

        assert await cli("discover", url, "--json") == 0
        everything = json.loads(capsys.readouterr().out)
        assert await cli("discover", url, "--max", "3") == 0
        first = capsys.readouterr().out

    assert [resource["resource"] for resource in everything["resources"]] == urls
    assert first.strip().splitlines()[-1] == f"3 of 205 resources listed at {url}"


async def test_discover_never_prints_a_payers_control_characters(capsys):
    async with devnet_facilitator() as (url, http, _app):
        exact = exact_requirements()
        hostile = payment_required(exact, description="\x1b[2J\x1b]0;owned\x07 cheap data")
        await settle(http, url, await pay(hostile), exact)

        assert await cli("discover", url) == 0

    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "?[2J?]0;owned? cheap data" in out


@pytest.mark.parametrize(
    ("facilitator", "message"),
    [
        ("127.0.0.1:4021", "is not a facilitator base URL"),
        ("ftp://127.0.0.1/", "is not a facilitator base URL"),
        ("http://127.0.0.1:99999", "is not a facilitator base URL"),
        ("http://[::1", "is not a facilitator base URL"),
        ("http://127.0.0.1:4021/?x=1", "is not a facilitator base URL"),
        (None, "cannot reach http://127.0.0.1:"),
    ],
)
def test_discover_with_a_bad_or_unreachable_facilitator_is_one_line_and_exit_1(facilitator, message, capsys):
    facilitator = facilitator or f"http://127.0.0.1:{closed_port()}"

    assert main(["discover", facilitator, "--timeout", "2"]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("paysidecar-cli: ") and message in line


async def test_discover_at_a_server_without_a_catalogue_says_what_it_answered():
    async with running_gateway() as gateway:
        with pytest.raises(CliError, match=r"/discovery/resources answered HTTP 404: not_found: "):
            await cli("discover", gateway.url)


async def test_call_pays_through_a_channel_kept_in_a_local_file(channel_stack, capsys, tmp_path):
    url = channel_stack.gateway.url + "/v1/records?_limit=1"
    rpc = channel_stack.facilitator.url + "/rpc"
    channel_dir = tmp_path / "channels"
    common = ("--scheme", "batch-settlement", "--channel-dir", str(channel_dir), "--rpc-url", rpc, "--payer-index", "5")
    assert await cli("call", url, *common, "--json") == 0
    first = json.loads(capsys.readouterr().out)
    assert await cli("call", url, *common) == 0
    assert "charged" in capsys.readouterr().out  # the table says what the call cost
    assert await cli("call", url, *common, "--json") == 0
    second = json.loads(capsys.readouterr().out)
    assert first["status"] == second["status"] == 200
    assert first["transaction"].startswith("0x")  # the deposit
    assert second["transaction"] == ""  # a voucher: nothing on chain
    assert (first["charged"], second["charged"], second["cumulative"]) == ("1000", "1000", "3000")
    assert list((channel_dir / "client").glob("0x*.json"))  # the channel's state, for the next call

    assert await cli("channels", "--sidecar", channel_stack.sidecar.target, "--json") == 0
    listed = json.loads(capsys.readouterr().out)["channels"]
    assert [(c["channel_id"], c["charged"], c["signed"], c["payer"]) for c in listed] == [
        (second["channel"], "3000", "3000", payer_account(5).address)
    ]
    assert await cli("channels", "--sidecar", channel_stack.sidecar.target) == 0
    table = capsys.readouterr().out
    assert second["channel"][:20] in table and "1 channels" in table


async def test_call_with_a_scheme_the_server_does_not_offer_says_so(paid_stack, capsys):
    with pytest.raises(CliError) as refused:
        await cli("call", paid_stack.gateway.url + "/v1/records", "--scheme", "batch-settlement")
    assert str(refused.value) == "the server does not offer batch-settlement (it offers exact)"
