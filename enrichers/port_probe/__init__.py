"""The port_probe enricher: ports, banners, service/version/OS fingerprints (see README.md)."""

from .stage import Config, HostReport, PortProbe, Prober, build

__all__ = ["Config", "HostReport", "PortProbe", "Prober", "build"]
