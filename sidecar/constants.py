"""Header names, reason codes and defaults shared across the sidecar."""

from eth_utils import keccak
from x402.http.constants import (
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    X_PAYMENT_HEADER,
    X_PAYMENT_RESPONSE_HEADER,
)
from x402.mechanisms.evm.exact.eip3009_utils import ERC20_TRANSFER_EVENT_TOPIC

__all__ = [
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "X_PAYMENT_HEADER",
    "X_PAYMENT_RESPONSE_HEADER",
]

BASE_SEPOLIA = "eip155:84532"
BASE_MAINNET = "eip155:8453"
PUBLIC_TEST_FACILITATOR = "https://x402.org/facilitator"

# Money rule 7 (payments/production.py). Production pays only on these networks:
# mainnets where the SDK knows USDC. Every other network, testnet or unknown, is refused.
MAINNET_NETWORKS = frozenset(
    {
        BASE_MAINNET,
        "eip155:1",  # Ethereum
        "eip155:137",  # Polygon
        "eip155:42161",  # Arbitrum One
        "eip155:43114",  # Avalanche C-Chain
    }
)
# The public test facilitator's host: any URL on it (or a subdomain) is refused in production.
TEST_FACILITATOR_HOSTS = frozenset({"x402.org"})
# The well-known development accounts (Hardhat/Anvil mnemonic "test test ... junk"):
# their keys are public, so they are never a production payTo. The devnet's wallets
# are these; the merchant (default payTo) is the second.
DEVELOPMENT_ADDRESSES = frozenset(
    address.lower()
    for address in (
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
        "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
        "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
        "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
        "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
        "0x976EA74026E726554dB657fA54763abd0C3a0aa9",
        "0x14dC79964da2C08b23698B3D3cc7Ca32193d9955",
        "0x23618e81E3f5cdF7f54C3d65f7FBc0aBf5B21E8f",
        "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720",
    )
)

# x402 v1 network names <-> CAIP-2.
V1_TO_CAIP2 = {"base-sepolia": BASE_SEPOLIA, "base": BASE_MAINNET}
CAIP2_TO_V1 = {v: k for k, v in V1_TO_CAIP2.items()}

# The Release reason by which the claim's holder reports that a settled answer
# never reached the client: the only Release a settled claim accepts.
RELEASE_NOT_DELIVERED = "response_not_delivered"
# Release reasons of the sidecar's own: a caller that gave none, claims given
# back at shutdown, and a claim whose request vanished between Authorize and Settle.
RELEASE_UNSPECIFIED = "released"
RELEASE_AT_SHUTDOWN = "shutdown"
RELEASE_STALE_CLAIM = "stale_claim"

# A payment header larger than this is refused before decoding.
MAX_PAYMENT_HEADER_BYTES = 16 * 1024
# Deeper JSON in a payment header is refused (a real one nests four levels).
MAX_PAYMENT_NESTING = 32

# Event topics of the EIP-3009 token (FiatToken) that say what used a nonce.
TRANSFER_TOPIC = ERC20_TRANSFER_EVENT_TOPIC
AUTHORIZATION_USED_TOPIC = "0x" + keccak(text="AuthorizationUsed(address,bytes32)").hex()
# cancelAuthorization: the payer used the nonce up without a transfer.
AUTHORIZATION_CANCELED_TOPIC = "0x" + keccak(text="AuthorizationCanceled(address,bytes32)").hex()

# The x402BatchSettlement events that change a channel's fields (topic0; channelId
# is topic1 of each): the withdrawal watch reads them instead of every channel.
CHANNEL_EVENT_TOPICS = tuple(
    "0x" + keccak(text=signature).hex()
    for signature in (
        "Deposited(bytes32,address,uint128,uint128)",
        "Claimed(bytes32,address,uint128,uint128)",
        "Refunded(bytes32,address,uint128)",
        "WithdrawInitiated(bytes32,uint128,uint40)",
        "WithdrawFinalized(bytes32,address,uint128)",
    )
)

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
    # A field of the accepted requirements (maxTimeoutSeconds, extra) other than the route's.
    REQUIREMENTS_MISMATCH = "requirements_mismatch"
    INVALID_PAYMENT = "invalid_payment"
    ALREADY_USED = "payment_already_used"
    VERIFY_UNAVAILABLE = "facilitator_unavailable"
    SETTLEMENT_FAILED = "settlement_failed"
    # A settle may have moved the money and the chain does not tell yet: nothing is
    # served, the payer retries later with the same payment header.
    PAYMENT_IN_DOUBT = "payment_in_doubt"
    # The chain's verdicts on a nonce our settle did not use (nothing was paid to us).
    NONCE_USED_ELSEWHERE = "nonce_used_elsewhere"
    AUTHORIZATION_CANCELED = "authorization_canceled"
    EXPIRED_UNSETTLED = "expired_unsettled"
    UNKNOWN_PAYMENT = "unknown_payment"
    # The x402 payment-identifier extension (payments/idempotency.py): an id the
    # extension refuses (400), a missing one a route requires (400), an id paid
    # with for another request or past the window (409), one whose payment is
    # under way (409, retry later), one on a batch-settlement payment (400: ids
    # are kept for exact payments only).
    INVALID_PAYMENT_IDENTIFIER = "invalid_payment_identifier"
    PAYMENT_IDENTIFIER_REQUIRED = "payment_identifier_required"
    PAYMENT_IDENTIFIER_UNSUPPORTED = "payment_identifier_unsupported"
    PAYMENT_IDENTIFIER_CONFLICT = "payment_identifier_conflict"
    PAYMENT_IDENTIFIER_EXPIRED = "payment_identifier_expired"
    PAYMENT_IDENTIFIER_IN_FLIGHT = "payment_identifier_in_flight"
    # Settle for a handler answer that is not 2xx (the claim is released instead).
    INVALID_SETTLE = "invalid_settle"
    # Settle/Release without the claim token Authorize returned.
    NOT_CLAIM_HOLDER = "not_claim_holder"
    # Settle/Release of a claim already released, settled or being settled.
    CLAIM_CLOSED = "claim_closed"
    # A route name the sidecar's config does not know (FAILED_PRECONDITION).
    UNKNOWN_ROUTE = "unknown_route"
    # Money terms a caller sent to a production sidecar: they come from its config only.
    ROUTE_TERMS_REFUSED = "route_terms_refused"
    INVALID_ROUTE = "invalid_route"
    # A request field the sidecar cannot take as sent (payments.errors.InvalidRequest).
    INVALID_ARGUMENT = "invalid_argument"
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    INVALID_PRUNE_CUTOFF = "invalid_prune_cutoff"
    # Settle's charge is not a whole number from 0 to the route's amount.
    INVALID_CHARGE = "invalid_charge"
    # A voucher on a channel whose payer's withdrawal completes too soon to claim it.
    CHANNEL_WITHDRAWING = "channel_withdrawal_pending"
