"""Defaults and names shared across the gateway."""

from pathlib import Path

SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "sample_data"

# Query limits (DESIGN §7).
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# Telemetry events the gateway records itself, being what the sidecar cannot see
# (with the client package's sidecar_call_failed); the payment events are the sidecar's.
REQUEST_RECEIVED = "request_received"
ROUTE_NOT_FOUND = "route_not_found"

# Names of the paid routes in the route table.
DATASET_RECORDS_ROUTE = "dataset_records"
DEFAULT_RECORDS_ROUTE = "default_records"
PAID_ROUTES = frozenset({DATASET_RECORDS_ROUTE, DEFAULT_RECORDS_ROUTE})
HEALTH_ROUTE = "healthz"
