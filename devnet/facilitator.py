"""The devnet x402 facilitator: the SDK's own x402Facilitator with the EVM exact schemes
(V2 on eip155:84532, V1 on base-sepolia) and the batch-settlement scheme (V2 on
eip155:84532, with a receiver authorizer of its own) over HTTP, settling on the
in-memory chain.

Routes: GET /supported, POST /verify, POST /settle (x402 facilitator wire format);
GET /discovery/resources (the Bazaar catalogue of what settled payments declared, see
discovery.py); POST /rpc (JSON-RPC, see rpc.py); control and inspection under /_devnet/
(faults, balance, stats, transactions; clock and channels, see chain_controls.py).

Run one: `python -m devnet.facilitator --host 127.0.0.1 --port 0` prints
`devnet facilitator http://127.0.0.1:<port>` when ready.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from eth_utils import is_address, to_checksum_address
from pydantic import BaseModel, ValidationError
from x402 import x402Facilitator
from x402.extensions.bazaar import BAZAAR
from x402.mechanisms.evm.batch_settlement.authorizer_signer import LocalAuthorizerSigner
from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.mechanisms.evm.batch_settlement.errors import ERR_INVALID_VOUCHER_SIGNATURE
from x402.mechanisms.evm.batch_settlement.facilitator import BatchSettlementEvmFacilitator
from x402.mechanisms.evm.constants import (
    ERR_INVALID_SIGNATURE,
    ERR_SETTLEMENT_PENDING,
    ERR_UNSUPPORTED_SCHEME,
)
from x402.mechanisms.evm.exact.facilitator import ExactEvmScheme
from x402.mechanisms.evm.exact.v1.facilitator import ExactEvmSchemeV1
from x402.schemas import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    PaymentRequirementsV1,
    SettleResponse,
    VerifyResponse,
)

from .chain import NETWORK, V1_NETWORK, Chain
from .chain_controls import ChainControls
from .discovery import Catalogue, InvalidQuery, ListQuery
from .faults import HANG_MAX_MS, REAL_ANSWER_MODES, Fault, Faults, parse_faults
from .rpc import ChainRpc
from .signer import ChainSigner
from .wallets import RECEIVER_AUTHORIZER_KEY, account

logger = logging.getLogger(__name__)

READY_LINE = "devnet facilitator http://{host}:{port}"

_HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)
_GARBAGE = b"\x00\xff{\"isValid\": tru\xfe\xfd not json <<<"


@dataclass
class FacilitatorStats:
    """Requests this facilitator received, faulted ones included."""

    name: str
    verify_calls: int = 0
    settle_calls: int = 0
    supported_calls: int = 0


CHAIN_KEY = web.AppKey("devnet_chain", Chain)
FAULTS_KEY = web.AppKey("devnet_faults", Faults)
STATS_KEY = web.AppKey("devnet_stats", FacilitatorStats)
CATALOGUE_KEY = web.AppKey("devnet_catalogue", Catalogue)
_SIGNER_KEY = web.AppKey("devnet_signer", ChainSigner)
_FACILITATOR_KEY = web.AppKey("devnet_facilitator", x402Facilitator)
# Set at shutdown: releases every fault that is holding a request open.
_CLOSING_KEY = web.AppKey("devnet_closing", asyncio.Event)

routes = web.RouteTableDef()


class _BadRequest(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class _Payment:
    """A parsed /verify or /settle request."""

    payload: PaymentPayload | PaymentPayloadV1
    requirements: PaymentRequirements | PaymentRequirementsV1

    @property
    def payer(self) -> str | None:
        # exact: the authorization's `from`; batch-settlement: the channel's payer.
        inner = self.payload.payload
        authorization, config = inner.get("authorization"), inner.get("channelConfig")
        if isinstance(authorization, dict):
            payer = authorization.get("from")
        else:
            payer = config.get("payer") if isinstance(config, dict) else None
        return payer if isinstance(payer, str) else None

    @property
    def signature_refusal(self) -> str:
        """The reason a refusal of this payment's signature carries, in its scheme's words."""
        if self.payload.get_scheme() == SCHEME_BATCH_SETTLEMENT:
            return ERR_INVALID_VOUCHER_SIGNATURE
        return ERR_INVALID_SIGNATURE

    @property
    def network(self) -> str:
        return self.payload.get_network()


@dataclass(frozen=True)
class _Exchange:
    """One stage's real answer and the shapes its faults need."""

    real: Callable[[], Awaitable[dict[str, Any]]]
    success_key: str | None = None
    refusal: dict[str, Any] | None = None


def build_facilitator(signer: ChainSigner, catalogue: Catalogue) -> x402Facilitator:
    facilitator = x402Facilitator()
    facilitator.register([NETWORK], ExactEvmScheme(signer))
    facilitator.register_v1([V1_NETWORK], ExactEvmSchemeV1(signer))
    # Listed in /supported with extra.receiverAuthorizer; it signs ClaimBatch and Refund
    # authorizations a claim/refund request leaves out. (A real facilitator must check
    # who asks before signing refunds; the devnet signs for anyone.)
    receiver_authorizer = LocalAuthorizerSigner(account(RECEIVER_AUTHORIZER_KEY))
    facilitator.register([NETWORK], BatchSettlementEvmFacilitator(signer, authorizer_signer=receiver_authorizer))
    # Bazaar: listed in /supported's extensions; every successful settle (any scheme,
    # v1 or v2) catalogues the resource its payment declared.
    facilitator.register_extension(BAZAAR)
    facilitator.on_after_settle(catalogue.on_settled)
    return facilitator


def create_app(chain: Chain, faults: Faults | None = None, name: str = "devnet") -> web.Application:
    """A facilitator settling on `chain`; several apps may share one chain."""
    app = web.Application(middlewares=[_json_errors])
    signer = ChainSigner(chain)
    app[CHAIN_KEY] = chain
    app[FAULTS_KEY] = faults if faults is not None else Faults()
    app[STATS_KEY] = FacilitatorStats(name=name)
    app[_SIGNER_KEY] = signer
    app[CATALOGUE_KEY] = Catalogue()
    app[_FACILITATOR_KEY] = build_facilitator(signer, app[CATALOGUE_KEY])
    app[_CLOSING_KEY] = asyncio.Event()
    app.on_shutdown.append(_release_held_requests)
    app.router.add_routes(routes)
    app.router.add_post("/rpc", ChainRpc(chain).handle)
    app.router.add_routes(ChainControls(chain).routes())
    return app


async def _release_held_requests(app: web.Application) -> None:
    app[_CLOSING_KEY].set()


@web.middleware
async def _json_errors(request: web.Request, handler: Callable) -> web.StreamResponse:
    try:
        return await handler(request)
    except _BadRequest as error:
        return _error_response(400, error.code, error.message)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return _error_response(error.status, "http_error", error.reason)
    except Exception:
        logger.exception("devnet facilitator failed on %s %s", request.method, request.path)
        return _error_response(500, "internal_error", "the devnet facilitator failed; see its log")


def _error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


# -- x402 facilitator API -------------------------------------------------------------


@routes.get("/supported")
async def supported(request: web.Request) -> web.StreamResponse:
    app = request.app
    app[STATS_KEY].supported_calls += 1

    async def real() -> dict[str, Any]:
        return _dump(app[_FACILITATOR_KEY].get_supported())

    return await _respond(request, app[FAULTS_KEY].take("supported"), _Exchange(real))


@routes.post("/verify")
async def verify(request: web.Request) -> web.StreamResponse:
    app = request.app
    app[STATS_KEY].verify_calls += 1
    payment = await _read_payment(request)
    refusal = {"isValid": False, "invalidReason": payment.signature_refusal, "payer": payment.payer}
    exchange = _Exchange(lambda: _verify(app, payment), "isValid", refusal)
    return await _respond(request, app[FAULTS_KEY].take("verify"), exchange)


@routes.post("/settle")
async def settle(request: web.Request) -> web.StreamResponse:
    app = request.app
    app[STATS_KEY].settle_calls += 1
    payment = await _read_payment(request)
    fault = app[FAULTS_KEY].take("settle")
    if fault is not None and fault.mode == "settlement_pending":
        await _hold(app, fault.delay_ms)
        return web.json_response(await _settle_pending(app, payment, fault))
    refusal = {
        "success": False,
        "errorReason": payment.signature_refusal,
        "transaction": "",
        "network": payment.network,
        "payer": payment.payer,
    }
    exchange = _Exchange(lambda: _settle(app, payment), "success", refusal)
    return await _respond(request, fault, exchange)


@routes.get("/discovery/resources")
async def discovery_resources(request: web.Request) -> web.Response:
    try:
        query = ListQuery.parse(request.query)
    except InvalidQuery as error:
        raise _BadRequest("invalid_query", str(error)) from None
    return web.json_response(request.app[CATALOGUE_KEY].page(query))


async def _read_payment(request: web.Request) -> _Payment:
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _BadRequest("invalid_json", "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("invalid_request", "request body must be a JSON object")
    version = body.get("x402Version")
    if version not in (1, 2) or isinstance(version, bool):
        raise _BadRequest("invalid_request", "x402Version must be 1 or 2")
    payload_model, requirements_model = (
        (PaymentPayloadV1, PaymentRequirementsV1) if version == 1 else (PaymentPayload, PaymentRequirements)
    )
    try:
        payload = payload_model.model_validate(body.get("paymentPayload"))
        requirements = requirements_model.model_validate(body.get("paymentRequirements"))
    except ValidationError as error:
        raise _BadRequest("invalid_request", _validation_summary(error)) from None
    if payload.x402_version != version:
        raise _BadRequest("invalid_request", "paymentPayload.x402Version differs from x402Version")
    return _Payment(payload, requirements)


def _validation_summary(error: ValidationError) -> str:
    # Field paths and messages only: the inputs may hold a signature.
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'body'}: {item['msg']}"
        for item in error.errors()[:5]
    ]
    return "; ".join(problems)


async def _verify(app: web.Application, payment: _Payment) -> dict[str, Any]:
    if not _supports(app, payment):
        return _dump(VerifyResponse(is_valid=False, invalid_reason=ERR_UNSUPPORTED_SCHEME, payer=payment.payer))
    try:
        result = await app[_FACILITATOR_KEY].verify(payment.payload, payment.requirements)
    except Exception as error:
        raise _unprocessable("verify", error) from error
    logger.info("verify payer=%s valid=%s reason=%s", result.payer, result.is_valid, result.invalid_reason)
    return _dump(result)


async def _settle(app: web.Application, payment: _Payment) -> dict[str, Any]:
    if not _supports(app, payment):
        refusal = SettleResponse(
            success=False,
            error_reason=ERR_UNSUPPORTED_SCHEME,
            transaction="",
            network=payment.network,
            payer=payment.payer,
        )
        return _dump(refusal)
    try:
        result = await app[_FACILITATOR_KEY].settle(payment.payload, payment.requirements)
    except Exception as error:
        raise _unprocessable("settle", error) from error
    logger.info(
        "settle payer=%s success=%s reason=%s transaction=%s",
        result.payer,
        result.success,
        result.error_reason,
        result.transaction,
    )
    return _dump(result)


def _supports(app: web.Application, payment: _Payment) -> bool:
    # The SDK matches a scheme registered for one eip155 network to every eip155
    # network; this facilitator only serves the kinds it lists, on its own chain.
    kind = (payment.payload.x402_version, payment.payload.get_scheme(), payment.network)
    return kind in {
        (k.x402_version, k.scheme, k.network) for k in app[_FACILITATOR_KEY].get_supported().kinds
    }


def _unprocessable(stage: str, error: Exception) -> _BadRequest:
    # A well-formed request whose payload the scheme cannot read (e.g. a non-numeric
    # value): the sender's fault, answered as such.
    logger.warning("%s refused a payload it could not process: %s", stage, type(error).__name__)
    return _BadRequest("invalid_payload", f"payment payload could not be processed ({type(error).__name__})")


async def _settle_pending(app: web.Application, payment: _Payment, fault: Fault) -> dict[str, Any]:
    """Settle with the transaction left pending, answering settlement_pending."""
    if fault.mine_after_ms:
        mine_after: float | None = fault.mine_after_ms / 1000
    elif fault.after_transfer:
        mine_after = 0.0
    else:
        mine_after = None
    with app[_SIGNER_KEY].broadcasts(mine_after) as sent:
        answer = await _settle(app, payment)
    if not sent.hashes:
        # Refused before anything was broadcast: that refusal is the answer.
        return answer
    return {
        "success": False,
        "errorReason": ERR_SETTLEMENT_PENDING,
        "transaction": sent.hashes[-1],
        "network": answer.get("network", payment.network),
        "payer": answer.get("payer", payment.payer),
    }


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


# -- fault injection ------------------------------------------------------------------


async def _respond(request: web.Request, fault: Fault | None, exchange: _Exchange) -> web.StreamResponse:
    if fault is None:
        return web.json_response(await exchange.real())
    logger.info("fault %s/%s injected", fault.stage, fault.mode)
    await _hold(request.app, fault.delay_ms)
    if fault.mode in REAL_ANSWER_MODES:
        return _distorted(fault, await exchange.real(), exchange.success_key)
    if fault.after_transfer:
        await exchange.real()
    if fault.mode == "status":
        return _status_answer(fault)
    if fault.mode == "html":
        return web.Response(text=_HTML_PAGE, content_type="text/html")
    if fault.mode == "garbage":
        return web.Response(body=_GARBAGE, content_type="application/json")
    if fault.mode == "invalid":
        return web.json_response(exchange.refusal)
    if fault.mode == "hang":
        await _hold(request.app, HANG_MAX_MS)
    return _drop(request)


def _distorted(fault: Fault, answer: dict[str, Any], success_key: str | None) -> web.Response:
    if fault.mode == "truncated":
        body = json.dumps(answer).encode()
        return web.Response(body=body[: len(body) // 2], content_type="application/json")
    if fault.mode == "no_success" and success_key is not None:
        answer.pop(success_key, None)
    status = fault.status if fault.mode == "success_status" else 200
    return web.json_response(answer, status=status)


def _status_answer(fault: Fault) -> web.Response:
    if not fault.body:
        message = f"devnet fault: status {fault.status}"
        return _error_response(fault.status, "devnet_fault", message)
    try:
        json.loads(fault.body)
    except json.JSONDecodeError:
        return web.Response(status=fault.status, text=fault.body, content_type="text/plain")
    return web.Response(status=fault.status, text=fault.body, content_type="application/json")


async def _hold(app: web.Application, milliseconds: int) -> None:
    """Wait `milliseconds`, or less if the server starts shutting down."""
    if milliseconds <= 0:
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[_CLOSING_KEY].wait(), milliseconds / 1000)


def _drop(request: web.Request) -> web.Response:
    """Close the connection; the response returned is never written."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=499)


# -- control and inspection -----------------------------------------------------------


@routes.get("/_devnet/faults")
async def list_faults(request: web.Request) -> web.Response:
    return web.json_response({"faults": request.app[FAULTS_KEY].active()})


@routes.post("/_devnet/faults")
async def arm_faults(request: web.Request) -> web.Response:
    try:
        faults = parse_faults(json.loads(await request.read()))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _BadRequest("invalid_json", "request body is not valid JSON") from None
    except ValidationError as error:
        raise _BadRequest("invalid_fault", _validation_summary(error)) from None
    request.app[FAULTS_KEY].arm(*faults)
    return web.json_response({"faults": request.app[FAULTS_KEY].active()})


@routes.delete("/_devnet/faults")
async def clear_faults(request: web.Request) -> web.Response:
    stage = request.query.get("stage")
    if stage not in (None, "verify", "settle", "supported"):
        raise _BadRequest("invalid_stage", "stage must be verify, settle or supported")
    request.app[FAULTS_KEY].clear(stage)  # type: ignore[arg-type]
    return web.json_response({"faults": request.app[FAULTS_KEY].active()})


@routes.get("/_devnet/balance/{address}")
async def balance(request: web.Request) -> web.Response:
    address = request.match_info["address"]
    if not is_address(address):
        raise _BadRequest("invalid_address", "expected a 20-byte hex address")
    value = request.app[CHAIN_KEY].balance_of(address)
    return web.json_response({"address": to_checksum_address(address), "balance": str(value)})


@routes.get("/_devnet/stats")
async def stats(request: web.Request) -> web.Response:
    counters = request.app[STATS_KEY]
    chain = request.app[CHAIN_KEY]
    return web.json_response(
        {
            "name": counters.name,
            "verify_calls": counters.verify_calls,
            "settle_calls": counters.settle_calls,
            "supported_calls": counters.supported_calls,
            "transfers_applied": chain.transfers_applied,
            "block_number": chain.block_number,
        }
    )


@routes.get("/_devnet/transactions")
async def transactions(request: web.Request) -> web.Response:
    return web.json_response(
        [
            {
                "hash": transfer.tx_hash,
                "from": transfer.from_address,
                "to": transfer.to,
                "value": str(transfer.value),
                "nonce": transfer.nonce,
                "block_number": transfer.block_number,
            }
            for transfer in request.app[CHAIN_KEY].transactions()
        ]
    )


# -- process entry point --------------------------------------------------------------


async def serve(host: str, port: int, name: str) -> None:
    """Run one facilitator with its own chain until SIGINT/SIGTERM."""
    runner = web.AppRunner(create_app(Chain(), name=name), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = runner.addresses[0][1]
    shown_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    print(READY_LINE.format(host=shown_host, port=bound_port), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    logger.info("devnet facilitator %s stopped", name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devnet.facilitator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--name", default="devnet", help="shown in /_devnet/stats and logs")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.host, args.port, args.name))


if __name__ == "__main__":
    main()
