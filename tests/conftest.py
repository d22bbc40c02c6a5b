"""Shared pytest setup: the lab plugin (network namespaces), the nats-server and Mosquitto fixtures."""

pytest_plugins = ["tests.lab.fixtures", "tests.natsd", "tests.mqtt"]
