"""The peer: the gateway's records handler behind the official x402 SDK's own
FastAPI middleware (`x402.http.middleware.fastapi`), in a process of its own.

    python -m bench.peer --facilitator http://127.0.0.1:<port> [--scheme exact] [--port 0]

prints `peer http://127.0.0.1:<port>` once it accepts requests. It serves
`GET /v1/datasets/{name}/records` and `GET /v1/records` with the gateway's query
engine and renderer (the same CSV data, the same answer bytes), priced like the
gateway (`$0.001` USDC on eip155:84532 to the devnet merchant), verified and
settled by the SDK against the given facilitator. Run as the SDK ships it:
uvicorn with its standard extras (uvloop, httptools when installed), one worker,
access log on like the gateway's.

`--scheme` picks what its 402 offers:
- `exact` (default): the SDK's exact EVM server scheme; every request is verified
  and settled at the facilitator.
- `batch-settlement`: the SDK's server `BatchSettlementEvmScheme` with its default
  in-memory channel storage, receiver = the devnet merchant, receiver authorizer
  = the one the facilitator lists in `/supported` (the SDK fills it in). A deposit
  goes to the facilitator; a voucher on a channel whose on-chain state it read
  recently is verified and charged in-process, with no facilitator call. Nothing
  is claimed: the SDK claims only when a channel manager is run next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from x402 import x402ResourceServer
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.middleware.fastapi import PaymentMiddlewareASGI
from x402.mechanisms.evm.batch_settlement.constants import SCHEME_BATCH_SETTLEMENT
from x402.mechanisms.evm.batch_settlement.server import BatchSettlementEvmScheme
from x402.mechanisms.evm.exact.register import register_exact_evm_server

from devnet.chain import NETWORK
from devnet.up import DEVNET_PRICE
from devnet.wallets import MERCHANT_ADDRESS
from gateway.constants import SAMPLE_DATA_DIR
from gateway.datasets import Dataset, load_datasets
from gateway.query import QueryError, parse_query, run_query
from gateway.render import render

READY_LINE = "peer http://{host}:{port}"
EXACT = "exact"
SCHEMES = (EXACT, SCHEME_BATCH_SETTLEMENT)


def _paid(description: str, scheme: str) -> dict:
    return {
        "accepts": {"scheme": scheme, "payTo": MERCHANT_ADDRESS, "price": DEVNET_PRICE, "network": NETWORK},
        "description": description,
        "mimeType": "application/json",
    }


def _resource_server(facilitator_url: str, scheme: str) -> x402ResourceServer:
    server = x402ResourceServer(HTTPFacilitatorClient(FacilitatorConfig(url=facilitator_url)))
    if scheme == SCHEME_BATCH_SETTLEMENT:
        return server.register(NETWORK, BatchSettlementEvmScheme(MERCHANT_ADDRESS))
    return register_exact_evm_server(server, NETWORK)


def create_app(facilitator_url: str, scheme: str = EXACT) -> FastAPI:
    datasets = load_datasets(SAMPLE_DATA_DIR)
    default = next(iter(datasets))
    server = _resource_server(facilitator_url, scheme)
    routes = {
        "GET /v1/datasets/*/records": _paid("Records of a dataset", scheme),
        "GET /v1/records": _paid("Records of the default dataset", scheme),
    }
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.add_middleware(PaymentMiddlewareASGI, routes=routes, server=server)

    async def answer(request: Request, dataset: Dataset | None) -> Response:
        # The gateway's records_response, in FastAPI's terms.
        if dataset is None:
            return JSONResponse({"error": {"code": "dataset_not_found"}}, status_code=404)
        try:
            plan = parse_query(request.query_params.multi_items(), dataset.types, accept=request.headers.get("accept"))
        except QueryError as exc:
            return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=400)
        result = await asyncio.to_thread(run_query, dataset.frame, plan)
        next_offset = plan.offset + result.page.height
        next_url = None
        if result.page.height and next_offset < result.total:
            next_url = str(request.url.include_query_params(_offset=str(next_offset)))
        rendered = render(result, plan, next_url)
        headers = {"X-Total-Count": str(result.total)}
        if next_url is not None:
            headers["Link"] = f'<{next_url}>; rel="next"'
        return Response(rendered.body, media_type=rendered.content_type, headers=headers)

    @app.get("/v1/datasets/{name}/records")
    async def dataset_records(name: str, request: Request) -> Response:
        return await answer(request, datasets.get(name))

    @app.get("/v1/records")
    async def default_records(request: Request) -> Response:
        return await answer(request, datasets[default])

    return app


class _Server(uvicorn.Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit and sockets:
            host, port = sockets[0].getsockname()[:2]
            print(READY_LINE.format(host=host, port=port), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peer", description=__doc__.splitlines()[0])
    parser.add_argument("--facilitator", required=True, help="facilitator base URL")
    parser.add_argument("--scheme", choices=SCHEMES, default=EXACT, help="what the 402 offers (default exact)")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Bound here, so port 0 can be reported once uvicorn listens on it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    config = uvicorn.Config(create_app(args.facilitator, args.scheme), log_config=None, access_log=True, lifespan="off")
    _Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
