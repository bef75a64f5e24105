"""What a used nonce says about a payment (DESIGN §4 rules 1 and 4).

`authorizationState` is true once the nonce is used up: by the transfer of this
payment, or by the payer's own `cancelAuthorization`, which moves no money. A
payer could cancel while a settle is in doubt; reading "used" as "paid" would
then serve content nobody paid for. So a used nonce counts as paid only when
the chain shows its transfer (AuthorizationUsed), or shows no cancel.
"""

from __future__ import annotations

from .ports import ChainReader


async def paid_by_transfer(
    chain: ChainReader, network: str, asset: str, payer: str, nonce: str
) -> tuple[bool | None, str]:
    """For a nonce the chain reports used: (True, transaction or "") when it paid,
    (False, "") when the payer canceled it, (None, "") when the chain cannot tell."""
    transaction = await chain.authorization_transaction(network, asset, payer, nonce)
    if transaction:
        return True, transaction
    canceled = await chain.authorization_canceled(network, asset, payer, nonce)
    if canceled is None:
        return None, ""
    return (False, "") if canceled else (True, "")
