"""`paysidecar-cli` (or `python -m gateway.cli`): pay for a gateway URL, list what a
facilitator's Bazaar offers, and read the sidecar's tracking records, stats, status
and telemetry.

`call` pays with the private key in $PAYSIDECAR_PAYER_KEY. Without it, only a
gateway on this machine (the devnet `make run` starts) is paid, from a devnet test
wallet (`--payer-index`); the devnet code is loaded for that case alone. With
`--scheme batch-settlement` it pays through a channel (the SDK's client): a
deposit first, then a voucher per call; the channel's state is kept in a local
directory (`--channel-dir`), so the next call goes on from it.

    paysidecar-cli call http://127.0.0.1:8402/v1/records?_limit=3
    paysidecar-cli call URL --payer-index 1 --x402-version 1 --json
    paysidecar-cli call URL --payment-id pay_0123456789abcdef   # the same again: not paid twice
    paysidecar-cli call URL --scheme batch-settlement      # through a payment channel
    paysidecar-cli channels
    paysidecar-cli claim                                   # collect channel charges now
    paysidecar-cli discover http://127.0.0.1:4021
    paysidecar-cli records --settled yes --since 1h
    paysidecar-cli stats --since 24h
    paysidecar-cli status
    paysidecar-cli telemetry --limit 20

Human tables by default; `--json` prints one JSON document for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import re
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from x402 import x402Client
from x402.extensions.payment_identifier import PAYMENT_IDENTIFIER, append_payment_identifier_to_extensions
from x402.http.constants import PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, X_PAYMENT_RESPONSE_HEADER
from x402.http.utils import decode_payment_required_header, decode_payment_response_header
from x402.http.x402_http_client import x402HTTPClient
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS
from x402.schemas import PaymentRequired
from x402.schemas.v1 import PaymentRequiredV1, PaymentRequirementsV1

from paysidecar.client import SidecarClient
from paysidecar_common.request_ids import REQUEST_ID_HEADER

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

# Wide enough for a transaction hash (0x + 64 hex digits).
MAX_CELL = 66
_RELATIVE = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
# The devnet facilitator `make run` starts (devnet/up.py gives it this port when free).
DEVNET_FACILITATOR_URL = "http://127.0.0.1:4021"
# The x402 Discovery API's largest page.
DISCOVERY_PAGE = 100
# An amount in atomic units: at most a uint256's 78 digits.
_ATOMIC = re.compile(r"[0-9]{1,78}")
# The private key (hex) `call` pays with. Never an option: a command line is seen by
# every user of the machine.
PAYER_KEY_VARIABLE = "PAYSIDECAR_PAYER_KEY"
BATCH_SETTLEMENT = "batch-settlement"
# Where `call --scheme batch-settlement` keeps its channels' state (the SDK's file storage).
DEFAULT_CHANNEL_DIR = ".paysidecar/channels"


class CliError(Exception):
    """A failure explained in one line; exit status 1."""


# -- output ------------------------------------------------------------------


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    if not rows:
        print("(none)")
        return
    columns = list(columns or rows[0].keys())
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)))
    for line in cells:
        print("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)))


def print_fields(fields: Mapping[str, Any]) -> None:
    width = max(len(name) for name in fields)
    for name, value in fields.items():
        print(f"{name.ljust(width)}  {'' if value is None else value}")


def print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, default=str))


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


# -- call --------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    request_id: str
    status: int
    headers: Mapping[str, str]
    body: bytes


async def _get(session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]) -> Reply:
    sent_id = str(uuid.uuid4())
    try:
        async with session.get(url, headers={REQUEST_ID_HEADER: sent_id, **headers}) as response:
            body = await response.read()
            return Reply(response.headers.get(REQUEST_ID_HEADER, sent_id), response.status, response.headers, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"cannot reach {url}: {exc or type(exc).__name__}") from None


def _payment_required(reply: Reply) -> PaymentRequired | PaymentRequiredV1:
    try:
        header = reply.headers.get(PAYMENT_REQUIRED_HEADER)
        if header:
            return decode_payment_required_header(header)
        document = json.loads(reply.body)
        if isinstance(document, dict) and document.get("x402Version") == 1:
            return PaymentRequiredV1.model_validate(document)
    except ValueError as exc:
        raise CliError(f"the 402 answer could not be decoded: {exc}") from None
    raise CliError("the 402 answer carries no x402 payment requirements")


def _as_v1(required: PaymentRequired, url: str) -> PaymentRequiredV1:
    """The v2 requirements restated for an x402 v1 client (network names, maxAmountRequired)."""
    v1_names = {f"eip155:{chain_id}": name for name, chain_id in V1_NETWORK_CHAIN_IDS.items()}
    resource = required.resource
    accepts = [
        PaymentRequirementsV1(
            scheme=accepted.scheme,
            network=v1_names[accepted.network],
            max_amount_required=accepted.amount,
            resource=resource.url if resource else url,
            description=resource.description if resource else None,
            mime_type=resource.mime_type if resource else None,
            pay_to=accepted.pay_to,
            max_timeout_seconds=accepted.max_timeout_seconds,
            asset=accepted.asset,
            extra=accepted.extra,
        )
        for accepted in required.accepts
        if accepted.network in v1_names
    ]
    if not accepts:
        raise CliError("none of the offered networks has an x402 v1 name")
    return PaymentRequiredV1(error=required.error, accepts=accepts)


def _on_this_machine(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def payer(url: str, payer_index: int | None) -> LocalAccount:
    """The account that pays for `url`: $PAYSIDECAR_PAYER_KEY's, else, for a gateway
    on this machine only, a devnet test wallet."""
    key = os.environ.get(PAYER_KEY_VARIABLE, "").strip()
    if key:
        if payer_index is not None:
            raise CliError(f"--payer-index picks a devnet wallet; it cannot be used with {PAYER_KEY_VARIABLE}")
        from eth_account import Account  # imported here: it slows every command's start

        try:
            return Account.from_key(key)
        except ValueError:
            raise CliError(f"{PAYER_KEY_VARIABLE} is not a hex private key") from None  # the key is not echoed
    if not _on_this_machine(url):
        raise CliError(
            f"set {PAYER_KEY_VARIABLE} to the private key to pay with; "
            "the devnet test wallets pay only a gateway on this machine"
        )
    return _devnet_payer(payer_index or 0)


def _devnet_payer(index: int) -> LocalAccount:
    """A devnet test wallet: its key is public, so it is for the local devnet alone."""
    from devnet.wallets import PAYER_KEYS, payer_account

    if not 0 <= index < len(PAYER_KEYS):
        raise CliError(f"--payer-index must be 0..{len(PAYER_KEYS) - 1}")
    return payer_account(index)


def _with_payment_id(required: PaymentRequired | PaymentRequiredV1, payment_id: str) -> dict[str, Any]:
    """The 402's extensions with `payment_id` in the payment-identifier extension
    it declares, as the SDK's client appends it."""
    declared = required.extensions if isinstance(required, PaymentRequired) else None
    if not declared or PAYMENT_IDENTIFIER not in declared:
        raise CliError("--payment-id: the server's 402 does not declare the payment-identifier extension (x402 v2)")
    extensions = dict(declared)
    try:
        append_payment_identifier_to_extensions(extensions, payment_id)
    except ValueError as exc:
        raise CliError(f"--payment-id: {exc}") from None
    return extensions


async def _payment_headers(
    required: PaymentRequired | PaymentRequiredV1, account: LocalAccount, payment_id: str | None = None
) -> dict[str, str]:
    """The PAYMENT-SIGNATURE or X-PAYMENT header, signed by the SDK (with a
    payment-identifier id when given)."""
    # Imported here: web3 behind the EVM signer adds ~0.6 s to every command's start.
    from x402.mechanisms.evm.exact.register import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(account))
    extensions = _with_payment_id(required, payment_id) if payment_id else None
    try:
        payload = await client.create_payment_payload(required, extensions=extensions)
    except Exception as exc:  # the SDK's selection and signing errors, reported as one line
        raise CliError(f"cannot pay: {type(exc).__name__}: {exc}") from None
    return x402HTTPClient(client).encode_payment_signature_header(payload)


def _offering(required: PaymentRequired | PaymentRequiredV1, scheme: str | None) -> PaymentRequired | PaymentRequiredV1:
    """The requirements narrowed to `scheme` (None: as offered)."""
    if scheme is None:
        return required
    accepts = [accepted for accepted in required.accepts if accepted.scheme == scheme]
    if not accepts:
        offered = ", ".join(sorted({accepted.scheme for accepted in required.accepts})) or "nothing"
        raise CliError(f"the server does not offer {scheme} (it offers {offered})")
    return required.model_copy(update={"accepts": accepts})


def _channel_client(account: LocalAccount, directory: str, rpc_url: str | None) -> Any:
    """The SDK's batch-settlement client, its channels kept in `directory`. With a
    JSON-RPC URL it can read a channel on chain (to recover state it lost)."""
    from x402 import x402ClientSync
    from x402.http.x402_http_client import x402HTTPClientSync
    from x402.mechanisms.evm.batch_settlement.client import (
        BatchSettlementEvmScheme,
        BatchSettlementEvmSchemeOptions,
        FileChannelStorageOptions,
        FileClientChannelStorage,
    )
    from x402.mechanisms.evm.signers import EthAccountSigner, EthAccountSignerWithRPC

    signer = EthAccountSignerWithRPC(account, rpc_url) if rpc_url else EthAccountSigner(account)
    storage = FileClientChannelStorage(FileChannelStorageOptions(directory=directory))
    scheme = BatchSettlementEvmScheme(signer, BatchSettlementEvmSchemeOptions(storage=storage))
    client = x402ClientSync()
    client.register("eip155:*", scheme)
    return x402HTTPClientSync(client)


async def _pay_channel(session: aiohttp.ClientSession, url: str, required: PaymentRequired, http: Any) -> Reply:
    """Pay through the channel; after a corrective 402 (our channel state was behind
    the server's) the client resynchronises and pays once more. The SDK's client
    blocks (file storage, chain reads), so it runs in a thread."""
    for _ in range(2):
        try:
            payload = await asyncio.to_thread(http.create_payment_payload, required)
        except Exception as exc:  # the SDK's selection and signing errors, reported as one line
            raise CliError(f"cannot pay: {type(exc).__name__}: {exc}") from None
        reply = await _get(session, url, http.encode_payment_signature_header(payload))
        try:
            result = await asyncio.to_thread(http.process_payment_result, payload, reply.headers.get, reply.status)
        except Exception as exc:  # e.g. the chain unreachable while resynchronising, as one line
            raise CliError(f"cannot resynchronise the channel: {type(exc).__name__}: {exc}") from None
        if not result.recovered:
            break
    return reply


def _rpc_url(args: argparse.Namespace) -> str | None:
    """Where a channel payer reads the chain: --rpc-url, else the devnet facilitator's
    JSON-RPC for a gateway on this machine."""
    if args.rpc_url:
        return args.rpc_url
    return DEVNET_FACILITATOR_URL + "/rpc" if _on_this_machine(args.url) else None


def _settlement(reply: Reply) -> dict[str, Any] | None:
    header = reply.headers.get(PAYMENT_RESPONSE_HEADER) or reply.headers.get(X_PAYMENT_RESPONSE_HEADER)
    if not header:
        return None
    try:
        return decode_payment_response_header(header).model_dump(by_alias=True, exclude_none=True)
    except ValueError as exc:
        return {"undecodable": str(exc)}


def _body(reply: Reply) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError:
        return reply.body.decode("utf-8", "replace")


async def run_call(args: argparse.Namespace) -> int:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        reply = await _get(session, args.url, {})
        payer_address = None
        if reply.status == 402:
            required = _offering(_payment_required(reply), args.scheme)
            channel = args.scheme == BATCH_SETTLEMENT
            if channel and (args.x402_version == 1 or required.x402_version != 2):
                raise CliError(f"{BATCH_SETTLEMENT} is paid with x402 v2 only")
            if channel and args.payment_id:
                raise CliError(f"--payment-id is for exact payments; a {BATCH_SETTLEMENT} voucher is charged once")
            if args.x402_version == 1 and required.x402_version != 1:
                required = _as_v1(required, args.url)
            elif args.x402_version == 2 and required.x402_version != 2:
                raise CliError("the server answered with x402 v1 requirements only")
            account = payer(args.url, args.payer_index)
            if channel:
                http = _channel_client(account, args.channel_dir, _rpc_url(args))
                reply = await _pay_channel(session, args.url, required, http)
            else:
                reply = await _get(session, args.url, await _payment_headers(required, account, args.payment_id))
            payer_address = account.address
    settlement = _settlement(reply)
    body = _body(reply)
    summary = {
        "request_id": reply.request_id,
        "status": reply.status,
        "payer": (settlement or {}).get("payer") or payer_address,
        "transaction": (settlement or {}).get("transaction"),
        "network": (settlement or {}).get("network"),
    }
    charged = ((settlement or {}).get("extra") or {}).get("chargedAmount")
    if charged is not None:  # a channel payment: what this call cost, and the channel's total
        state = settlement["extra"].get("channelState") or {}
        summary |= {"charged": charged, "channel": state.get("channelId"), "cumulative": state.get("chargedCumulativeAmount")}
    if args.json:
        print_json({**summary, "settlement": settlement, "body": body})
    else:
        print_fields(summary)
        _print_body(body, reply, args.rows)
    return 0 if 200 <= reply.status < 300 else 1


def _print_body(body: Any, reply: Reply, rows: int) -> None:
    print()
    if isinstance(body, dict) and isinstance(body.get("data"), list):
        print_table(body["data"][:rows])
        print(f"\n{len(body['data'])} rows in this page, {body.get('meta', {}).get('total')} matching")
    elif isinstance(body, dict) and "error" in body:
        error = body["error"]
        print(f"error: {error.get('code')}: {error.get('message')}" if isinstance(error, dict) else f"error: {error}")
    elif isinstance(body, str):
        print("\n".join(body.splitlines()[: rows + 1]))
    else:
        print_json(body)


# -- discover ----------------------------------------------------------------


def _facilitator_url(text: str) -> str:
    url = text.strip().rstrip("/")
    refusal = CliError(f"{text!r} is not a facilitator base URL (http or https, no query)")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises on a port that is no number in range
    except ValueError:
        raise refusal from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise refusal
    return url


def _printable(value: Any, limit: int = 200) -> str:
    """Text from the facilitator, which relays what payers sent: no terminal control
    sequences, one bounded line."""
    text = "".join(ch if ch.isprintable() else "?" for ch in str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _discovery_page(
    session: aiohttp.ClientSession, base: str, params: Mapping[str, str]
) -> tuple[list[dict[str, Any]], int]:
    """One page of GET /discovery/resources: (items, total)."""
    url = base + "/discovery/resources"
    try:
        async with session.get(url, params=params) as response:
            status, body = response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CliError(f"cannot reach {base}: {exc or type(exc).__name__}") from None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if status != 200:
        error = document.get("error") if isinstance(document, dict) else None
        detail = ""
        if isinstance(error, dict):
            detail = f": {_printable(error.get('code'))}: {_printable(error.get('message'))}"
        raise CliError(f"{url} answered HTTP {status}{detail}")
    items = document.get("items") if isinstance(document, dict) else None
    pagination = document.get("pagination") if isinstance(document, dict) else None
    total = pagination.get("total") if isinstance(pagination, dict) else None
    if (
        not isinstance(items, list)
        or not all(isinstance(item, dict) and isinstance(item.get("resource"), str) for item in items)
        or not isinstance(total, int)
        or isinstance(total, bool)
    ):
        raise CliError(f"{url} did not answer with an x402 discovery list")
    return items, total


def _offer(accepted: dict[str, Any]) -> dict[str, Any]:
    """One accepted payment: scheme, network, payTo, the amount in atomic units and as
    a price in the asset's units when the asset is a known stablecoin (USDC)."""
    from x402.mechanisms.evm.default_assets import find_default_asset  # imports web3: only here

    amount = accepted.get("amount", accepted.get("maxAmountRequired"))
    network, asset = str(accepted.get("network", "")), str(accepted.get("asset", ""))
    known = find_default_asset(asset, network)
    price = None
    if isinstance(amount, str) and _ATOMIC.fullmatch(amount) and known is not None:
        units = Decimal(int(amount)).scaleb(-known["decimals"]).normalize()
        price = f"{units:f} {known['symbol']}"
    return {
        "scheme": accepted.get("scheme"),
        "network": accepted.get("network"),
        "amount": amount,
        "price": price,
        "asset": accepted.get("asset"),
        "payTo": accepted.get("payTo"),
    }


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _discovered(item: dict[str, Any]) -> dict[str, Any]:
    """A listed resource as this command shows it; how to call it is in its declaration."""
    bazaar = _object(_object(item.get("extensions")).get("bazaar"))
    call = _object(_object(bazaar.get("info")).get("input"))
    accepts = item.get("accepts")
    return {
        "resource": item["resource"],
        "type": item.get("type"),
        "method": call.get("method"),
        "tool": call.get("toolName") or call.get("tool"),
        "description": item.get("description"),
        "x402Version": item.get("x402Version"),
        "lastUpdated": item.get("lastUpdated"),
        "accepts": [_offer(_object(accepted)) for accepted in accepts] if isinstance(accepts, list) else [],
        "bazaar": bazaar or None,
    }


async def run_discover(args: argparse.Namespace) -> int:
    base = _facilitator_url(args.facilitator)
    filters = {"type": args.type, "scheme": args.scheme, "network": args.network, "payTo": args.pay_to}
    params = {name: value for name, value in filters.items() if value}
    items: list[dict[str, Any]] = []
    total = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=args.timeout)) as session:
        while len(items) < args.max:
            paging = {"limit": str(DISCOVERY_PAGE), "offset": str(len(items))}
            page, total = await _discovery_page(session, base, {**params, **paging})
            items += page
            if not page or len(items) >= total:
                break
    resources = [_discovered(item) for item in items[: args.max]]
    if args.json:
        print_json({"facilitator": base, "total": total, "resources": resources})
        return 0
    for resource in resources:
        _print_resource(resource)
    shown = f"{len(resources)} of {total}" if len(resources) < total else str(len(resources))
    print(f"{shown} {'resource' if total == 1 else 'resources'} listed at {base}")
    return 0


def _print_resource(resource: dict[str, Any]) -> None:
    call = resource["method"] or (f"MCP tool {resource['tool']}" if resource["tool"] else "?")
    print(f"{_printable(call)} {_printable(resource['resource'], 2000)}  (x402 v{_printable(resource['x402Version'])})")
    if resource["description"]:
        print(f"    {_printable(resource['description'])}")
    rows = [
        [
            _printable(offer["scheme"]),
            _printable(offer["network"]),
            _printable(offer["price"] or f"? of {offer['asset']}"),
            f"{_printable(offer['amount'], 80)} atomic",
            f"payTo {_printable(offer['payTo'])}",
        ]
        for offer in resource["accepts"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(5)] if rows else []
    for row in rows:
        print("    " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print()


# -- sidecar commands --------------------------------------------------------


def _moment(text: str) -> datetime:
    """"15m", "2h", "7d" ago, or an ISO 8601 date-time (UTC unless it says otherwise)."""
    relative = _RELATIVE.fullmatch(text)
    if relative:
        amount, unit = relative.groups()
        return datetime.now(UTC) - timedelta(**{_UNITS[unit]: int(amount)})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 15m / 2h / 7d or an ISO date-time, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(text: str) -> int:
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _default_facilitator() -> str:
    configured = [url.strip() for url in os.environ.get("FACILITATOR_URLS", "").split(",") if url.strip()]
    return configured[0] if configured else DEVNET_FACILITATOR_URL


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "true", "1"):
        return True
    if text.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def _record_row(record: dict[str, Any]) -> dict[str, Any]:
    payment = record.get("payment") or {}
    settlement = record.get("settlement") or {}
    return {
        "time": record.get("timestamp"),
        "request_id": record.get("request_id"),
        "method": record.get("method"),
        "path": record.get("path"),
        "status": record.get("response_status", 0),
        "verified": record.get("payment_verified", False),
        "settled": settlement.get("success"),
        "payer": payment.get("payer"),
        "amount": payment.get("amount"),
        "transaction": settlement.get("transaction"),
        "ms": record.get("response_time_ms", 0),
    }


async def run_records(args: argparse.Namespace, client: SidecarClient) -> None:
    answer = await client.list_records(
        path=args.path or "",
        network=args.network or "",
        scheme=args.scheme or "",
        payer=args.payer or "",
        verified=args.verified,
        settled=args.settled,
        start=args.since,
        end=args.until,
        sort_by=args.sort,
        ascending=args.ascending,
        limit=args.limit,
        cursor=args.cursor or "",
    )
    if args.json:
        print_json(as_dict(answer))
        return
    print_table([_record_row(as_dict(record)) for record in answer.records])
    print(f"\n{len(answer.records)} of {answer.total} records")
    if answer.has_more:
        print(f"more: --cursor {answer.next_cursor}")


async def run_stats(args: argparse.Namespace, client: SidecarClient) -> None:
    stats = await client.get_stats(start=args.since, end=args.until)
    if args.json:
        print_json(as_dict(stats))
        return
    print_fields(
        {
            "total requests": stats.total_requests,
            "payment required": stats.payment_required_requests,
            "verified payments": stats.verified_payments,
            "settled": stats.successful_settlements,
            "settlement failed": stats.failed_settlements,
            "avg response ms": f"{stats.avg_response_time_ms:.1f}",
            "p95 response ms": f"{stats.p95_response_time_ms:.1f}",
        }
    )
    breakdowns = {
        "path": stats.by_path,
        "network": stats.by_network,
        "scheme": stats.by_scheme,
        "volume by network": stats.volume_by_network,
        "volume by network:asset": stats.volume_by_network_asset,
    }
    for title, counts in breakdowns.items():
        if counts:
            print(f"\nby {title}")
            print_table([{"key": key, "value": value} for key, value in sorted(counts.items())])


async def run_status(args: argparse.Namespace, client: SidecarClient) -> None:
    status = await client.get_status()
    if args.json:
        print_json(as_dict(status))
        return
    print_fields(
        {
            "version": status.version,
            "env": status.env,
            "database": status.database,
            "tracking queue": status.tracking_queue_depth,
            "spool records": status.spool_records,
            "spool bytes": status.spool_bytes,
            "in-flight payments": status.in_flight_payments,
            "tracking rows missing": status.tracking_missing_rows,
            "tracking rows refused": status.tracking_rejected_rows,
            "journal write failures": status.tracking_journal_failures,
        }
    )
    if status.HasField("collector"):
        collector = status.collector
        print("\ncollector")
        print_fields(
            {
                "money at risk": f"{collector.money_at_risk} on {collector.channels_at_risk} channels"
                f" ({collector.withdrawals_pending} being withdrawn)",
                "enabled here": collector.enabled,
                "last run here": (
                    f"{collector.last_run_at.ToDatetime(tzinfo=UTC).isoformat(timespec='seconds')} ({collector.last_trigger}):"
                    f" claimed {collector.last_claimed_amount} on {collector.last_claimed_channels} channels,"
                    f" settled {collector.last_settled_amount}, left out {collector.last_left_out}"
                    if collector.runs
                    else "none yet"
                ),
                "failures here": f"{collector.failures}" + (f" (last: {collector.last_failure})" if collector.last_failure else ""),
                "failures in 24 h (all replicas)": collector.failures_24h,
                "undecided intents": collector.open_intents,
            }
        )
    print("\nfacilitators")
    print_table(
        [
            {
                "name": f.name,
                "url": f.url,
                "breaker": f.breaker_state,
                "ewma ms": f"{f.ewma_latency_ms:.1f}",
                "success": f"{f.success_rate:.2f}",
                "failures in a row": f.consecutive_failures,
                "attempts": f.attempts,
            }
            for f in status.facilitators
        ]
    )


def _channel_row(channel: dict[str, Any]) -> dict[str, Any]:
    withdrawal = int(channel.get("withdraw_requested_at", 0))
    return {
        "channel": channel.get("channel_id"),
        "payer": channel.get("payer"),
        "charged": channel.get("charged"),
        "signed": channel.get("signed"),
        "balance": channel.get("balance"),
        "claimed": channel.get("claimed"),
        "withdrawal": datetime.fromtimestamp(withdrawal, UTC).isoformat(timespec="seconds") if withdrawal else "",
        "busy": channel.get("busy", False),
        "last request": channel.get("last_request_at"),
    }


async def run_channels(args: argparse.Namespace, client: SidecarClient) -> None:
    answer = await client.list_channels(payer=args.payer or "", limit=args.limit, cursor=args.cursor or "")
    if args.json:
        print_json(as_dict(answer))
        return
    print_table([_channel_row(as_dict(channel)) for channel in answer.channels])
    pending = sum(1 for channel in answer.channels if channel.withdraw_requested_at)
    print(f"\n{len(answer.channels)} channels" + (f", {pending} with a withdrawal pending: claim before it completes" if pending else ""))
    if answer.has_more:
        print(f"more: --cursor {answer.next_cursor}")


def _collection_row(collection: Any) -> dict[str, Any]:
    return {
        "kind": collection.kind,
        "state": collection.state,
        "channels": len(collection.channel_ids),
        "amount": collection.amount,
        "transaction": collection.transaction,
        "facilitator": collection.facilitator,
        "reason": collection.reason,
    }


async def run_claim(args: argparse.Namespace, client: SidecarClient) -> None:
    answer = await client.collect(wait_s=args.wait)
    if args.json:
        print_json(as_dict(answer))
        return
    if not answer.ran:
        raise CliError(f"nothing collected: {answer.message}")
    transactions = [*answer.resolved, *answer.claims, *answer.settles]
    if transactions:
        print_table([_collection_row(collection) for collection in transactions])
    if answer.left_out:
        print("\nleft out (tried again later)")
        print_table(
            [
                {"channel": left.channel_id, "payer": left.payer, "unclaimed": left.unclaimed, "reason": left.reason}
                for left in answer.left_out
            ]
        )
    print(
        f"\nclaimed {answer.claimed_amount} on {answer.claimed_channels} channels, settled {answer.settled_amount},"
        f" left out {len(answer.left_out)}"
    )


async def run_telemetry(args: argparse.Namespace, client: SidecarClient) -> None:
    answer = await client.get_telemetry(args.limit)
    if args.json:
        print_json(as_dict(answer))
        return
    print_table(
        [
            {
                "time": event.timestamp.ToDatetime(tzinfo=UTC).isoformat(timespec="milliseconds"),
                "event": event.name,
                "request_id": event.request_id,
                "route": event.route,
                "attributes": " ".join(f"{k}={v}" for k, v in sorted(event.attributes.items())),
            }
            for event in answer.events
        ]
    )


def _with_sidecar(
    command: Callable[[argparse.Namespace, SidecarClient], Awaitable[None]],
) -> Callable[[argparse.Namespace], Awaitable[int]]:
    async def run(args: argparse.Namespace) -> int:
        try:
            client = SidecarClient(args.sidecar, token=args.token, timeout_s=args.timeout)
        except ValueError as exc:  # a target gRPC cannot balance over
            raise CliError(str(exc)) from None
        async with client:
            try:
                await command(args, client)
            except grpc.aio.AioRpcError as exc:
                raise CliError(f"sidecar at {args.sidecar}: {exc.code().name}: {exc.details()}") from None
        return 0

    return run


# -- arguments ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paysidecar-cli", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    common.add_argument("--json", action="store_true", help="one JSON document instead of tables")

    call = commands.add_parser(
        "call", parents=[common], help=f"GET a gateway URL, paying on 402 with ${PAYER_KEY_VARIABLE}'s key"
    )
    call.add_argument("url")
    call.add_argument(
        "--payer-index",
        type=int,
        help="without a key, the devnet payer wallet, for a gateway on this machine (default 0)",
    )
    call.add_argument("--x402-version", type=int, choices=(1, 2), help="protocol to pay with (default: the server's)")
    call.add_argument(
        "--scheme",
        choices=("exact", BATCH_SETTLEMENT),
        help="pay with this scheme (default: exact, whatever else the server offers)",
    )
    call.add_argument(
        "--channel-dir",
        default=DEFAULT_CHANNEL_DIR,
        help=f"{BATCH_SETTLEMENT}: where the channels' state is kept (default {DEFAULT_CHANNEL_DIR})",
    )
    call.add_argument(
        "--rpc-url",
        help=f"{BATCH_SETTLEMENT}: the chain's JSON-RPC, to recover a channel's lost state "
        "(default: the devnet facilitator's, for a gateway on this machine)",
    )
    call.add_argument("--rows", type=int, default=5, help="rows of data to show (default 5)")
    call.add_argument(
        "--payment-id",
        help="x402 payment-identifier id (16-128 of A-Z a-z 0-9 _ -): a call repeated with the same id"
        " (after a lost answer) is served again without a second charge (exact payments only)",
    )
    call.set_defaults(run=run_call)

    discover = commands.add_parser(
        "discover", parents=[common], help="what a facilitator's Bazaar lists for sale, with prices"
    )
    discover.add_argument(
        "facilitator",
        nargs="?",
        metavar="FACILITATOR_URL",
        default=_default_facilitator(),
        help=f"default: the first of $FACILITATOR_URLS, else the devnet facilitator ({DEVNET_FACILITATOR_URL})",
    )
    discover.add_argument("--type", help="http or mcp")
    discover.add_argument("--scheme", help="only resources accepting this scheme, e.g. exact")
    discover.add_argument("--network", help="only resources paid on this network, e.g. eip155:84532")
    discover.add_argument("--pay-to", help="only resources paying this address")
    discover.add_argument("--max", type=_positive, default=1000, help="list at most this many (default 1000)")
    discover.set_defaults(run=run_discover)

    sidecar = argparse.ArgumentParser(add_help=False, parents=[common])
    sidecar.add_argument(
        "--sidecar", default="127.0.0.1:50051", help="gRPC target, or several comma-separated (default 127.0.0.1:50051)"
    )
    sidecar.add_argument("--token", default=os.environ.get("PAYSIDECAR_AUTH_TOKEN"), help="sidecar bearer token")

    records = commands.add_parser("records", parents=[sidecar], help="tracking records, newest first")
    records.add_argument("--path")
    records.add_argument("--network")
    records.add_argument("--scheme")
    records.add_argument("--payer")
    records.add_argument("--verified", type=_yes_no, help="yes or no")
    records.add_argument("--settled", type=_yes_no, help="yes or no")
    records.add_argument("--since", type=_moment, help="15m, 2h, 7d or an ISO date-time")
    records.add_argument("--until", type=_moment)
    records.add_argument("--sort", choices=("timestamp", "response_time"), default="timestamp")
    records.add_argument("--ascending", action="store_true")
    records.add_argument("--limit", type=int, default=20, help="1..100 (default 20)")
    records.add_argument("--cursor")
    records.set_defaults(run=_with_sidecar(run_records))

    stats = commands.add_parser("stats", parents=[sidecar], help="totals and breakdowns for a time range")
    stats.add_argument("--since", type=_moment, help="15m, 2h, 7d or an ISO date-time")
    stats.add_argument("--until", type=_moment)
    stats.set_defaults(run=_with_sidecar(run_stats))

    status = commands.add_parser("status", parents=[sidecar], help="facilitator health, queues, database")
    status.set_defaults(run=_with_sidecar(run_status))

    channels = commands.add_parser(
        "channels", parents=[sidecar], help="batch-settlement channels: charged, signed, balance, claimed, withdrawals"
    )
    channels.add_argument("--payer", help="only this payer's channels")
    channels.add_argument("--limit", type=int, default=20, help="1..100 (default 20)")
    channels.add_argument("--cursor")
    channels.set_defaults(run=_with_sidecar(run_channels))

    claim = commands.add_parser(
        "claim", parents=[sidecar], help="collect channel charges now: what was claimed, settled and left out, and why"
    )
    claim.add_argument("--wait", type=int, default=10, help="seconds to wait for another replica's run, 0..60 (default 10)")
    claim.set_defaults(run=_with_sidecar(run_claim))

    telemetry = commands.add_parser("telemetry", parents=[sidecar], help="recent sidecar events, newest first")
    telemetry.add_argument("--limit", type=int, default=50, help="1..1000 (default 50)")
    telemetry.set_defaults(run=_with_sidecar(run_telemetry))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Libraries' warnings stay quiet: a CLI reports only the outcome.
    logging.basicConfig(level=logging.ERROR)
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(args.run(args))
    except CliError as exc:
        print(f"paysidecar-cli: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # Piped into `head` and the reader left: nothing more to say. Point stdout
        # at devnull so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
