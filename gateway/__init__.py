"""The paid CSV data gateway: an aiohttp app that asks the payment sidecar for every paid request."""
