"""Shared pytest setup: the lab plugin (network namespaces) and the nats-server fixture."""

pytest_plugins = ["tests.lab.fixtures", "tests.natsd"]
