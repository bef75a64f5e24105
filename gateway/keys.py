"""Typed application and request state keys."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from paysidecar.client import SidecarClient
from paysidecar_common.events import EventRing

from .config import Settings
from .datasets import Dataset
from .http_helpers import Middleware
from .query import QueryPlan


@dataclass(frozen=True)
class RecordsQuery:
    """A paid records request, validated before any payment is asked for."""

    dataset: Dataset
    plan: QueryPlan


SETTINGS = web.AppKey("settings", Settings)
DATASETS = web.AppKey("datasets", Mapping[str, Dataset])
DEFAULT_DATASET = web.AppKey("default_dataset", str)
EVENTS = web.AppKey("events", EventRing)
OPENAPI = web.AppKey("openapi", dict[str, Any])
# Each dataset's Bazaar discovery declaration (JSON text), by name (bazaar.py).
DISCOVERY = web.AppKey("discovery", Mapping[str, str])
SIDECAR = web.AppKey("sidecar", SidecarClient)
PAYWALL = web.AppKey("paywall", Middleware)

RECORDS_QUERY = web.RequestKey("records_query", RecordsQuery)
