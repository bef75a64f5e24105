"""Reliability and security: process faults, database outage, hostile input, gRPC security, secrets, shutdown."""
