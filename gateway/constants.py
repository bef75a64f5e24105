"""Defaults and names shared across the gateway."""

from pathlib import Path

# The devnet merchant wallet (devnet/wallets.py, dev key 1); production sets its own.
DEVNET_PAY_TO = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
BASE_SEPOLIA = "eip155:84532"
DEFAULT_PRICE = "$0.001"

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
