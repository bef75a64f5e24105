"""The paid records routes: the query is checked before the paywall (so a bad query
is a free 400, never a payment), then run and rendered once the payment verified."""

from __future__ import annotations

import asyncio

from aiohttp import hdrs, web

from paysidecar.aiohttp_middleware import price_per_row, set_charge

from .constants import PAID_ROUTES
from .datasets import Dataset
from .errors import ApiError
from .http_helpers import Handler
from .keys import DATASETS, DEFAULT_DATASET, RECORDS_QUERY, SETTINGS, RecordsQuery
from .query import QueryError, next_offset, parse_query, run_query
from .render import CONTENT_TYPES, render
from .tracing import tag_records


def row_charge(price_per_row: int, rows: int) -> int:
    """What an answer priced per row costs: each row it carries, and at least one:
    an empty answer also answers the question (nothing matches, or the offset is
    past the end), which would otherwise be free to ask any number of times.
    (The route's maximum caps it at Settle.)"""
    return price_per_row * max(rows, 1)


def dataset_named(request: web.Request, name: str) -> Dataset:
    datasets = request.app[DATASETS]
    dataset = datasets.get(name)
    if dataset is None:
        raise ApiError(404, "dataset_not_found", f"No dataset {name!r}; datasets: {', '.join(datasets)}.")
    return dataset


def _records_query(request: web.Request) -> RecordsQuery:
    limit = request.app[SETTINGS].max_query_length
    length = len(request.rel_url.raw_query_string)  # as sent, percent-encoded
    if length > limit:
        raise ApiError(413, "query_too_long", f"The query string is {length} bytes; at most {limit} allowed.")
    dataset = dataset_named(request, request.match_info.get("name") or request.app[DEFAULT_DATASET])
    try:
        plan = parse_query(request.query.items(), dataset.types, accept=request.headers.get(hdrs.ACCEPT))
    except QueryError as exc:
        raise ApiError(400, exc.code, exc.message) from None
    return RecordsQuery(dataset, plan)


@web.middleware
async def records_query_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.route.name in PAID_ROUTES:
        request[RECORDS_QUERY] = query = _records_query(request)
        tag_records(dataset=query.dataset.name)
    return await handler(request)


async def records_response(request: web.Request) -> web.Response:
    query = request[RECORDS_QUERY]
    plan = query.plan
    if request.method == hdrs.METH_HEAD:
        # A HEAD is never settled: it runs no query, so that neither a header
        # (count, link, length) nor the time it takes says anything about the data.
        return web.Response(headers={hdrs.CONTENT_TYPE: CONTENT_TYPES[plan.format]})
    # The sidecar's route config says whether the dataset is priced per row, and at what.
    per_row = price_per_row(request)
    # polars works outside the GIL; a thread keeps the event loop free meanwhile.
    # Priced per row, an answer tells only what it carries: a count of the rows
    # matching would be an answer about all of them for the price of a few.
    result = await asyncio.to_thread(run_query, query.dataset.frame, plan, count=per_row is None)
    if per_row is not None:
        set_charge(request, row_charge(per_row, result.page.height))
    tag_records(rows=result.page.height)
    following = next_offset(plan, result)
    next_url = None if following is None else str(request.url.update_query(_offset=str(following)))
    rendered = render(result, plan, next_url)
    headers = {hdrs.CONTENT_TYPE: rendered.content_type}
    if result.total is not None:
        headers["X-Total-Count"] = str(result.total)
    if next_url is not None:
        headers[hdrs.LINK] = f'<{next_url}>; rel="next"'
    return web.Response(body=rendered.body, headers=headers)
