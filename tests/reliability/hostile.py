"""Hypothesis strategies for hostile input: payment header values (random bytes,
base64 of random JSON, mutations of a real signed payload), random strings in
every field of the gRPC requests, and HTTP query strings and request ids."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from paysidecar.v1 import payment_pb2, tracking_pb2

# Protobuf strings are UTF-8: no lone surrogates.
UTF8 = st.characters(codec="utf-8")
TEXT = st.text(alphabet=UTF8, max_size=24)
# Values an HTTP header can carry (visible latin-1, no CR/LF).
HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"))

ODD_NUMBERS = st.sampled_from([0, -1, 2**63, 2**256, 10**80, -(10**80), 1e308, -0.0, 0.5])
ODD_STRINGS = st.sampled_from(
    ["", " ", "0x", "0x" + "f" * 40, "0x" + "0" * 64, "9" * 100, "-1", "1e9", "NaN", "💸" * 64, "\u202e", "\x00"]
)
SCALARS = st.none() | st.booleans() | st.integers() | ODD_NUMBERS | TEXT | ODD_STRINGS
# One level of nesting: deep trees cost generation time and find nothing new here.
JSON_VALUES = SCALARS | st.lists(SCALARS, max_size=3) | st.dictionaries(TEXT, SCALARS, max_size=3)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def b64_json(value: Any) -> str:
    return b64(json.dumps(value).encode())


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path into a JSON value (the root excluded)."""
    found = []
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return found
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _mutate(wire: dict, path: tuple, action: str, value: Any) -> dict:
    copy = json.loads(json.dumps(wire))
    *parents, last = path
    target = copy
    for key in parents:
        target = target[key]
    if action == "replace":
        target[last] = value
    elif action == "delete":
        del target[last]
    elif isinstance(target[last], dict):  # "extra": an unexpected field
        target[last]["extra_" + str(value)[:8]] = value
    else:
        target[last] = [target[last], value]
    return copy


def mutated(wire: dict) -> st.SearchStrategy[str]:
    """A real payload with one part replaced by a wrong type, a huge number, odd
    text, an extra field, or removed; then encoded as a header value."""
    paths = _paths(wire)
    top = st.builds(
        lambda key, value: {**wire, key: value},
        st.sampled_from(["x402Version", "extensions", "unexpected", "accepted", "payload", "resource"]),
        JSON_VALUES,
    )
    deep = st.builds(
        lambda path, action, value: _mutate(wire, path, action, value),
        st.sampled_from(paths),
        st.sampled_from(["replace", "delete", "extra"]),
        JSON_VALUES,
    )
    return st.one_of(top, deep).map(b64_json)


def header_values(valid: list[str]) -> st.SearchStrategy[str]:
    """Hostile payment header values, the given real ones mutated among them."""
    wires = [json.loads(base64.b64decode(value)) for value in valid]
    return st.one_of(
        st.text(alphabet=UTF8),
        st.binary(max_size=256).map(b64),
        JSON_VALUES.map(b64_json),
        st.builds(lambda v, rest: b64_json({"x402Version": v, **rest}), st.sampled_from([1, 2]), st.dictionaries(TEXT, JSON_VALUES, max_size=5)),
        *(mutated(wire) for wire in wires),
        st.sampled_from(valid).map(lambda v: v[: len(v) // 2]),  # truncated
        st.integers(16 * 1024 - 4, 20 * 1024).map(lambda n: "A" * n),  # around the size limit
        JSON_VALUES.map(json.dumps),  # JSON, not base64
        st.integers(1, 6000).map(lambda depth: b64(("[" * depth + "]" * depth).encode())),  # deep nesting
        st.integers(1, 500).map(lambda depth: b64_json({"x402Version": 2, "payload": nested(depth)})),
    )


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def routes(base: payment_pb2.Route) -> st.SearchStrategy[payment_pb2.Route]:
    """The real route with any of its fields replaced by random text."""

    def build(overrides: dict[str, Any]) -> payment_pb2.Route:
        route = payment_pb2.Route()
        route.CopyFrom(base)
        for name, value in overrides.items():
            if name == "facilitators":
                route.ClearField("facilitators")
                route.facilitators.extend(value)
            else:
                setattr(route, name, value)
        return route

    fields = {
        name: TEXT | ODD_STRINGS
        for name in ("key", "name", "price", "pay_to", "network", "asset", "description", "mime_type", "amount")
    }
    fields["facilitators"] = st.lists(TEXT, max_size=2)
    fields["max_timeout_seconds"] = st.integers(-(2**31), 2**31 - 1)
    return st.fixed_dictionaries({}, optional=fields).map(build)


def authorize_requests(base: payment_pb2.Route, valid: list[str]) -> st.SearchStrategy[payment_pb2.AuthorizeRequest]:
    header = st.one_of(st.just(""), header_values(valid), st.sampled_from(valid))
    # Mostly the real route, so the payment headers get past route resolution.
    route = st.one_of(st.just(base), st.just(base), routes(base))
    return st.builds(
        payment_pb2.AuthorizeRequest,
        request_id=TEXT,
        method=TEXT | st.sampled_from(["GET", "HEAD", "POST"]),
        url=TEXT | st.just("http://127.0.0.1:8402/v1/records"),
        route=route,
        payment_signature=header,
        x_payment=header,
        client_ip=TEXT,
        user_agent=TEXT,
        headers=st.dictionaries(TEXT, TEXT, max_size=4),
        query=TEXT,
    )


def settle_requests(known_ids: list[str]) -> st.SearchStrategy[payment_pb2.SettleRequest]:
    return st.builds(
        payment_pb2.SettleRequest,
        payment_id=TEXT | st.sampled_from(known_ids),
        claim_token=TEXT | st.uuids().map(str),
        tracking_id=TEXT,
        response_status=st.integers(-(2**31), 2**31 - 1),
        response_time_ms=st.integers(-(2**63), 2**63 - 1),
        request_id=TEXT,
        payment_signature=TEXT,
        x_payment=TEXT,
    )


def release_requests(known_ids: list[str]) -> st.SearchStrategy[payment_pb2.ReleaseRequest]:
    return st.builds(
        payment_pb2.ReleaseRequest,
        payment_id=TEXT | st.sampled_from(known_ids),
        claim_token=TEXT | st.uuids().map(str),
        tracking_id=TEXT,
        reason=TEXT,
        response_status=st.integers(-(2**31), 2**31 - 1),
        response_time_ms=st.integers(-(2**63), 2**63 - 1),
        request_id=TEXT,
    )


TIMESTAMPS = st.builds(
    Timestamp,
    seconds=st.integers(-(2**63), 2**63 - 1) | st.integers(-(10**10), 10**10),
    nanos=st.integers(-(2**31), 2**31 - 1) | st.integers(0, 999_999_999),
)


def list_records_requests() -> st.SearchStrategy[tracking_pb2.ListRecordsRequest]:
    return st.builds(
        tracking_pb2.ListRecordsRequest,
        path=TEXT,
        network=TEXT,
        scheme=TEXT,
        payer=TEXT,
        verified=st.none() | st.booleans(),
        settled=st.none() | st.booleans(),
        start=st.none() | TIMESTAMPS,
        end=st.none() | TIMESTAMPS,
        sort_by=st.integers(0, 2),
        ascending=st.booleans(),
        limit=st.integers(-(2**31), 2**31 - 1),
        cursor=TEXT | ODD_STRINGS | JSON_VALUES.map(b64_json),
    )


QUERY_KEYS = st.sampled_from(
    ["_limit", "_offset", "_sort", "_fields", "_format", "city", "country__in", "temp_c__gt", "date__lte", "rain", "x__zz", ""]
)
QUERY_VALUES = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30) | ODD_STRINGS
QUERIES = st.lists(st.tuples(QUERY_KEYS | TEXT, QUERY_VALUES), max_size=5)
REQUEST_IDS = HEADER_TEXT | st.text(alphabet="abcXYZ019._-", min_size=1, max_size=140)
