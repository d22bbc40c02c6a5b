"""The runtime: binds stages to NATS subjects, consumers, acks, retries and the DLQ.

The only package that imports nats.
"""
