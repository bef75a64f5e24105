"""The devnet facilitator over HTTP: the SDK's verify/settle rules on the simulated chain."""

from __future__ import annotations

import pytest
from x402.schemas import PaymentRequiredV1, PaymentRequirementsV1, SettleResponse, VerifyResponse

from devnet.chain import USDC_ADDRESS, V1_NETWORK
from devnet.facilitator import STATS_KEY
from devnet.faults import Fault
from devnet.wallets import INITIAL_PAYER_BALANCE, MERCHANT_ADDRESS, payer_account

PAYER = payer_account(0).address


async def test_payment_verifies_settles_and_moves_the_balance(devnet, requirements, sign):
    payload = await sign(requirements)

    status, verified = await devnet.verify(payload, requirements)
    assert (status, verified) == (200, {"isValid": True, "payer": PAYER})

    status, settled = await devnet.settle(payload, requirements)
    assert status == 200
    assert settled["success"] is True
    assert settled["network"] == "eip155:84532"
    assert settled["payer"] == PAYER
    assert devnet.chain.balance_of(PAYER) == INITIAL_PAYER_BALANCE - 1000
    assert devnet.chain.balance_of(MERCHANT_ADDRESS) == 1000
    [transfer] = devnet.chain.transactions()
    assert transfer.tx_hash == settled["transaction"]
    assert (transfer.from_address, transfer.to, transfer.value) == (PAYER, MERCHANT_ADDRESS, 1000)


async def test_a_payment_settles_at_most_once(devnet, requirements, sign):
    payload = await sign(requirements)
    _, first = await devnet.settle(payload, requirements)
    _, second = await devnet.settle(payload, requirements)

    assert first["success"] is True
    assert second["success"] is False
    assert second["errorReason"] == "invalid_exact_evm_nonce_already_used"
    assert devnet.chain.transfers_applied == 1
    assert devnet.chain.balance_of(PAYER) == INITIAL_PAYER_BALANCE - 1000


async def test_verify_refuses_a_used_nonce(devnet, requirements, sign):
    payload = await sign(requirements)
    await devnet.settle(payload, requirements)

    _, verified = await devnet.verify(payload, requirements)

    assert verified["isValid"] is False
    assert verified["invalidReason"] == "invalid_exact_evm_nonce_already_used"


async def test_a_tampered_signature_is_refused_and_nothing_moves(devnet, requirements, sign):
    payload = await sign(requirements)
    signature = payload.payload["signature"]
    flipped = signature[:10] + ("0" if signature[10] != "0" else "1") + signature[11:]
    tampered = payload.model_copy(update={"payload": {**payload.payload, "signature": flipped}})

    _, verified = await devnet.verify(tampered, requirements)
    _, settled = await devnet.settle(tampered, requirements)

    assert verified["isValid"] is False
    assert verified["invalidReason"] == "invalid_exact_evm_payload_signature"
    assert settled["success"] is False
    assert devnet.chain.transfers_applied == 0


async def test_a_raised_amount_breaks_the_signature(devnet, requirements, sign):
    payload = await sign(requirements)
    authorization = {**payload.payload["authorization"], "value": "2000"}
    dearer = requirements.model_copy(update={"amount": "2000"})
    tampered = payload.model_copy(
        update={"payload": {**payload.payload, "authorization": authorization}, "accepted": dearer}
    )

    _, verified = await devnet.verify(tampered, dearer)

    assert verified["invalidReason"] == "invalid_exact_evm_payload_signature"


async def test_an_expired_authorization_is_refused(devnet, requirements, sign):
    # The SDK client sets validBefore = now + maxTimeoutSeconds.
    payload = await sign(requirements.model_copy(update={"max_timeout_seconds": -60}))

    _, verified = await devnet.verify(payload, requirements)
    _, settled = await devnet.settle(payload, requirements)

    assert verified["invalidReason"] == "invalid_exact_evm_payload_authorization_valid_before"
    assert settled["success"] is False
    assert devnet.chain.transfers_applied == 0


async def test_more_than_the_balance_is_refused(devnet, requirements, client, sign):
    client.set_spend_controls(False)  # the SDK client caps a payment at $1 by default
    dear = requirements.model_copy(update={"amount": str(INITIAL_PAYER_BALANCE + 1)})
    payload = await sign(dear)

    _, verified = await devnet.verify(payload, dear)

    assert verified["invalidReason"] == "invalid_exact_evm_insufficient_balance"


async def test_v1_payment_verifies_and_settles(devnet, client):
    requirements = PaymentRequirementsV1(
        scheme="exact",
        network=V1_NETWORK,
        max_amount_required="1000",
        resource="http://127.0.0.1/v1/records",
        pay_to=MERCHANT_ADDRESS,
        max_timeout_seconds=60,
        asset=USDC_ADDRESS,
        extra={"name": "USDC", "version": "2"},
    )
    payload = await client.create_payment_payload(PaymentRequiredV1(accepts=[requirements]))
    assert payload.x402_version == 1

    _, verified = await devnet.verify(payload, requirements)
    _, settled = await devnet.settle(payload, requirements)

    assert verified == {"isValid": True, "payer": PAYER}
    assert settled["success"] is True
    assert settled["network"] == V1_NETWORK
    assert devnet.chain.balance_of(MERCHANT_ADDRESS) == 1000


async def test_answers_parse_as_the_sdk_response_models(devnet, requirements, sign):
    payload = await sign(requirements)
    _, verified = await devnet.verify(payload, requirements)
    _, settled = await devnet.settle(payload, requirements)

    assert VerifyResponse.model_validate(verified).is_valid is True
    assert SettleResponse.model_validate(settled).transaction == devnet.chain.transactions()[0].tx_hash


async def test_supported_lists_exact_v2_and_v1_and_batch_settlement_kinds(devnet):
    async with devnet.http.get(devnet.url + "/supported") as response:
        body = await response.json()

    kinds = {(kind["x402Version"], kind["scheme"], kind["network"]) for kind in body["kinds"]}
    assert kinds == {
        (2, "exact", "eip155:84532"),
        (1, "exact", "base-sepolia"),
        (2, "batch-settlement", "eip155:84532"),
    }
    assert body["signers"]["eip155:*"] == ["0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"]


async def test_an_unregistered_network_is_answered_not_failed(devnet, requirements, client, sign):
    client.set_spend_controls(False)  # the devnet USDC is no default asset on Base mainnet
    mainnet = requirements.model_copy(update={"network": "eip155:8453"})
    payload = await sign(mainnet)

    status, verified = await devnet.verify(payload, mainnet)
    status_settle, settled = await devnet.settle(payload, mainnet)

    assert (status, verified["isValid"], verified["invalidReason"]) == (200, False, "unsupported_scheme")
    assert (status_settle, settled["success"], settled["errorReason"]) == (200, False, "unsupported_scheme")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "invalid_request"),
        (b'{"paymentPayload": {}, "paymentRequirements": {}}', "invalid_request"),
        (b'{"x402Version": 3, "paymentPayload": {}, "paymentRequirements": {}}', "invalid_request"),
        (b'{"x402Version": 2, "paymentPayload": {"payload": 5}, "paymentRequirements": {}}', "invalid_request"),
        (b"\xff\xfe", "invalid_json"),
    ],
)
async def test_bad_request_bodies_get_a_400_json_answer(devnet, body, code):
    for path in ("/verify", "/settle"):
        async with devnet.http.post(devnet.url + path, data=body) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == code


async def test_a_payload_the_scheme_cannot_read_gets_a_400(devnet, requirements, sign):
    payload = await sign(requirements)
    authorization = {**payload.payload["authorization"], "value": "a lot"}
    broken = payload.model_copy(update={"payload": {**payload.payload, "authorization": authorization}})

    status, answer = await devnet.verify(broken, requirements)

    assert status == 400
    assert answer["error"]["code"] == "invalid_payload"


async def test_balance_endpoint(devnet):
    async with devnet.http.get(f"{devnet.url}/_devnet/balance/{PAYER.lower()}") as response:
        assert await response.json() == {"address": PAYER, "balance": str(INITIAL_PAYER_BALANCE)}
    async with devnet.http.get(f"{devnet.url}/_devnet/balance/0x1234") as response:
        assert response.status == 400


async def test_stats_and_transactions_endpoints(devnet, requirements, sign):
    payload = await sign(requirements)
    await devnet.verify(payload, requirements)
    _, settled = await devnet.settle(payload, requirements)

    async with devnet.http.get(devnet.url + "/_devnet/stats") as response:
        stats = await response.json()
    async with devnet.http.get(devnet.url + "/_devnet/transactions") as response:
        transactions = await response.json()

    assert stats["verify_calls"] == stats["settle_calls"] == stats["transfers_applied"] == 1
    assert stats["name"] == "test"
    assert devnet.app[STATS_KEY].settle_calls == 1
    assert transactions == [
        {
            "hash": settled["transaction"],
            "from": PAYER,
            "to": MERCHANT_ADDRESS,
            "value": "1000",
            "nonce": payload.payload["authorization"]["nonce"],
            "block_number": transactions[0]["block_number"],
        }
    ]


async def test_a_payload_with_a_non_string_payer_gets_an_answer_not_a_500(devnet, requirements, sign):
    payload = await sign(requirements)
    authorization = {**payload.payload["authorization"], "from": 12345}
    odd = payload.model_copy(update={"payload": {**payload.payload, "authorization": authorization}})
    devnet.faults.arm(Fault(stage="verify", mode="invalid", times=1))

    faulted, _ = await devnet.verify(odd, requirements)
    status, answer = await devnet.verify(odd, requirements)

    assert faulted == 200
    assert (status, answer["error"]["code"]) == (400, "invalid_payload")
