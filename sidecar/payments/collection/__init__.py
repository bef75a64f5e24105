"""The collector of batch-settlement channels (DESIGN §12): claims what we charged
with the vouchers we hold, sweeps the claims to payTo, and keeps watch for
withdrawals. Pure rules and orchestration; it talks through payments/ports.py."""
