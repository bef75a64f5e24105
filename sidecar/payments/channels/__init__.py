"""The batch-settlement scheme's rules (DESIGN §12): channel terms, voucher checks,
cumulative accounting, corrective answers, receipts, refunds, and the flows that
run them (authorize, settle, release). Pure domain, like the rest of payments/:
the channel rows are reached through the ChannelStore port (ports.py)."""
