"""HTTP routes (DESIGN §7). HEAD is answered for every GET route."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

import grpc
from aiohttp import hdrs, web

from .constants import DATASET_RECORDS_ROUTE, DEFAULT_RECORDS_ROUTE, HEALTH_ROUTE
from .datasets import Dataset
from .errors import ApiError
from .http_helpers import request_id
from .keys import DATASETS, DEFAULT_DATASET, EVENTS, OPENAPI, SETTINGS, SIDECAR
from .payments import dataset_terms
from .records import dataset_named, records_response
from .telemetry import from_sidecar, newest_first

routes = web.RouteTableDef()

HEALTH_TIMEOUT_S = 1.0
TELEMETRY_DEFAULT_LIMIT = 100
TELEMETRY_MAX_LIMIT = 1000


async def describe(request: web.Request, datasets: Iterable[Dataset]) -> list[dict[str, Any]]:
    """Each dataset with its schema and what its records cost (the sidecar's terms)."""
    settings = request.app[SETTINGS]
    datasets = list(datasets)
    terms = await dataset_terms(request.app, (d.name for d in datasets), request_id(request))
    return [
        {
            "name": dataset.name,
            "rows": dataset.rows,
            "columns": [{"name": column.name, "type": str(column.type)} for column in dataset.columns],
            **terms[dataset.name],
            "description": settings.description_of(dataset.name),
            "records_url": f"/v1/datasets/{dataset.name}/records",
        }
        for dataset in datasets
    ]


@routes.get("/healthz", name=HEALTH_ROUTE)
async def healthz(request: web.Request) -> web.Response:
    """Always 200 while the gateway runs; says whether the sidecar answers."""
    try:
        sidecar = (await request.app[SIDECAR].health(timeout_s=HEALTH_TIMEOUT_S)).lower()
    except grpc.aio.AioRpcError as exc:
        sidecar = exc.code().name.lower()
    return web.json_response(
        {
            "status": "ok" if sidecar == "serving" else "degraded",
            "sidecar": sidecar,
            "datasets": len(request.app[DATASETS]),
        }
    )


@routes.get("/v1/datasets", name="datasets")
async def list_datasets(request: web.Request) -> web.Response:
    datasets = await describe(request, request.app[DATASETS].values())
    return web.json_response({"datasets": datasets, "default": request.app[DEFAULT_DATASET]})


@routes.get("/v1/datasets/{name}", name="dataset")
async def get_dataset(request: web.Request) -> web.Response:
    [described] = await describe(request, [dataset_named(request, request.match_info["name"])])
    return web.json_response(described)


@routes.get("/v1/datasets/{name}/records", name=DATASET_RECORDS_ROUTE)
async def dataset_records(request: web.Request) -> web.Response:
    return await records_response(request)


@routes.get("/v1/records", name=DEFAULT_RECORDS_ROUTE)
async def default_records(request: web.Request) -> web.Response:
    return await records_response(request)


def _require_admin(request: web.Request) -> None:
    expected = request.app[SETTINGS].admin_token
    scheme, _, offered = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    challenge = {hdrs.WWW_AUTHENTICATE: 'Bearer realm="telemetry"'}
    if not expected:
        raise ApiError(401, "unauthorized", "Telemetry is closed: no admin token is configured.", challenge)
    if scheme.lower() != "bearer" or not hmac.compare_digest(offered.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "Telemetry needs 'Authorization: Bearer <admin token>'.", challenge)


def _telemetry_limit(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return TELEMETRY_DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= TELEMETRY_MAX_LIMIT:
        raise ApiError(400, "invalid_limit", f"limit must be an integer from 1 to {TELEMETRY_MAX_LIMIT}, got {text!r}.")
    return int(text)


@routes.get("/v1/telemetry", name="telemetry")
async def telemetry(request: web.Request) -> web.Response:
    """Recent events, newest first: the gateway's own merged with the sidecar's."""
    _require_admin(request)
    limit = _telemetry_limit(request)
    try:
        answer = await request.app[SIDECAR].get_telemetry(limit, request_id=request_id(request))
    except grpc.aio.AioRpcError as exc:
        sidecar, theirs = exc.code().name.lower(), []
    else:
        sidecar, theirs = "ok", [from_sidecar(event) for event in answer.events]
    events = newest_first(limit, gateway=request.app[EVENTS].recent(limit), sidecar=theirs)
    return web.json_response({"events": events, "sidecar": sidecar})


@routes.get("/openapi.json", name="openapi")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
