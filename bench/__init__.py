"""Benchmarks: the cost of getting paid (load generator, peers, runners). Not shipped."""
