"""A Starlette service charging for GET /weather through X402Middleware, the
Python twin of examples/node-express, plus routes for the middleware's other rules."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from paysidecar.asgi_middleware import CHARGE_SCOPE_KEY, PRICE_PER_ROW_SCOPE_KEY, REQUEST_ID_SCOPE_KEY, X402Middleware
from paysidecar.client import SidecarClient

WEATHER = {
    "oslo": {"temperature_c": 4, "conditions": "rain"},
    "lima": {"temperature_c": 19, "conditions": "overcast"},
    "tokyo": {"temperature_c": 22, "conditions": "clear"},
}
SECRET = "paid-content-51c9"
# The sidecar's route "weather" (tests/integration/conftest.py) holds the terms.
PRICED: Mapping[str, Any] = {"name": "weather"}
# The sidecar's route "weather-rows" prices by rows.
PER_ROW: Mapping[str, Any] = {"name": "weather-rows"}


async def weather(request: Request) -> Response:
    city = request.query_params.get("city", "oslo").lower()
    if city not in WEATHER:
        return JSONResponse({"error": {"code": "unknown_city", "message": f"no weather for {city}"}}, status_code=404)
    return JSONResponse({"city": city, **WEATHER[city]})


async def created(request: Request) -> Response:
    return JSONResponse({"secret": SECRET, "request_id": request.scope[REQUEST_ID_SCOPE_KEY]}, status_code=201)


async def broken(request: Request) -> Response:
    return Response(f"broken {SECRET}", status_code=500)


async def redirect(request: Request) -> Response:
    return RedirectResponse(f"/weather?secret={SECRET}", status_code=302)


async def crash(request: Request) -> Response:
    raise RuntimeError("handler crashed")


async def streamed(request: Request) -> Response:
    async def parts() -> AsyncIterator[bytes]:
        for part in ("stream:", SECRET, ":end"):
            yield part.encode()

    return StreamingResponse(parts(), media_type="text/plain")


async def item(request: Request) -> Response:
    return JSONResponse({"item": request.path_params["item_id"], "secret": SECRET})


async def charged(request: Request) -> Response:
    """An answer priced by what it carries: the charge comes in the query."""
    request.scope[CHARGE_SCOPE_KEY] = int(request.query_params["charge"])
    return JSONResponse({"secret": SECRET})


async def rows(request: Request) -> Response:
    """An answer priced per row: the route's price per row is the sidecar's."""
    per_row = request.scope[PRICE_PER_ROW_SCOPE_KEY]
    request.scope[CHARGE_SCOPE_KEY] = per_row * 2
    return JSONResponse({"price_per_row": per_row, "rows": [SECRET, SECRET]})


async def free(request: Request) -> Response:
    return JSONResponse({"free": True})


PAID_PATHS = {
    "/weather": weather,
    "/created": created,
    "/broken": broken,
    "/redirect": redirect,
    "/crash": crash,
    "/streamed": streamed,
    "/items/{item_id}": item,
    "/charged": charged,
}


def weather_app(sidecar_target: str, events: list[tuple[str, str, str, dict[str, str]]] | None = None) -> Starlette:
    """The Starlette app; its SidecarClient is made in the server's loop on first use."""
    routes = [Route(path, endpoint) for path, endpoint in PAID_PATHS.items()] + [Route("/free", free), Route("/rows", rows)]
    app = Starlette(routes=routes)
    app.add_middleware(
        X402Middleware,
        client=lambda: SidecarClient(sidecar_target, timeout_s=5.0, settle_timeout_s=20.0),
        routes={**{("GET", path): PRICED for path in PAID_PATHS}, ("GET", "/rows"): PER_ROW},
        on_event=None
        if events is None
        else lambda name, *, request_id, route, **attributes: events.append((name, request_id, route, attributes)),
    )
    return app

