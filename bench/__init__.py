"""Peer-vs-lanscope benchmarks on the lab (not timed tests)."""
