"""Header names, reason codes and defaults shared across the sidecar."""

from x402.http.constants import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    X_PAYMENT_HEADER,
    X_PAYMENT_RESPONSE_HEADER,
)

__all__ = [
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "X_PAYMENT_HEADER",
    "X_PAYMENT_RESPONSE_HEADER",
]

BASE_SEPOLIA = "eip155:84532"
BASE_MAINNET = "eip155:8453"
TESTNET_NETWORKS = frozenset({BASE_SEPOLIA, "base-sepolia", "eip155:11155111", "sepolia"})
PUBLIC_TEST_FACILITATOR = "https://x402.org/facilitator"

# x402 v1 network names <-> CAIP-2.
V1_TO_CAIP2 = {"base-sepolia": BASE_SEPOLIA, "base": BASE_MAINNET}
CAIP2_TO_V1 = {v: k for k, v in V1_TO_CAIP2.items()}

# A payment header larger than this is refused before decoding.
MAX_PAYMENT_HEADER_BYTES = 16 * 1024
# Deeper JSON in a payment header is refused (a real one nests four levels).
MAX_PAYMENT_NESTING = 32

# Headers never copied into tracking records.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "cookie",
        "set-cookie",
        "proxy-authorization",
        "x-api-key",
        "payment-signature",
        "x-payment",
    }
)


class Reason:
    """Machine reason codes we answer with (never a facilitator's raw text)."""

    INVALID_HEADER = "invalid_payment_header"
    HEADER_TOO_LARGE = "payment_header_too_large"
    UNSUPPORTED_VERSION = "unsupported_x402_version"
    SCHEME_MISMATCH = "scheme_mismatch"
    NETWORK_MISMATCH = "network_mismatch"
    ASSET_MISMATCH = "asset_mismatch"
    PAY_TO_MISMATCH = "pay_to_mismatch"
    AMOUNT_TOO_LOW = "amount_too_low"
    RESOURCE_MISMATCH = "resource_mismatch"
    INVALID_PAYMENT = "invalid_payment"
    ALREADY_USED = "payment_already_used"
    VERIFY_UNAVAILABLE = "facilitator_unavailable"
    SETTLEMENT_FAILED = "settlement_failed"
    SETTLEMENT_UNKNOWN = "settlement_unknown"
    UNKNOWN_PAYMENT = "unknown_payment"
    UNKNOWN_ROUTE = "unknown_route"
    INVALID_ROUTE = "invalid_route"
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    INVALID_PRUNE_CUTOFF = "invalid_prune_cutoff"
