"""Local x402 devnet: simulated USDC ledger, facilitator, JSON-RPC, test wallets."""
