"""Where a process's events live: its site, its streams, its stages, and what crosses to or from a hub.

- ``role: all`` (the default) and ``role: hub`` keep schemas.STREAMS, which
  capture every site's subjects. A hub's FACTS and DLQ streams also *source*
  each configured site's sensor streams from that sensor's JetStream domain
  (``$JS.lanscope-<site>.API``), over the sensor's leaf node connection: while
  the link is down the sensor keeps them, and the hub's stream resumes from the
  last message it has when the link is back (NATS tracks the position; nothing
  is copied twice, nothing is skipped).
- ``role: sensor`` keeps schemas.sensor_streams(site): its own site's
  sightings, sweeps, probe results and dead letters, and a requests stream that
  sources the hub's probe requests for its site. Its stages consume their
  site's subjects only.

Deliveries between the two travel on subjects of the site
(``lanscope.<site>.sourced.…`` to the hub, ``lanscope.<site>.requests.…`` to the
sensor), which is what the sensor's leaf node permissions allow
(lanscope.runtime.leafnodes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.js.api import ExternalStream, StreamSource

from lanscope.runtime.topology import Kind, StageSpec
from lanscope.sites import HUB_DOMAIN, site_domain
from schemas import STREAMS, StreamSpec, sensor_streams, site_of_subject, site_subject
from schemas import subjects as subj

if TYPE_CHECKING:
    from lanscope.config import Config


def sourced_prefix(site: str) -> str:
    """Where the hub's copies of a site's streams are delivered (the sensor publishes them)."""
    return site_subject(site, f"{subj.PREFIX}.sourced")


def requests_prefix(site: str) -> str:
    """Where a sensor's copy of the hub's probe requests is delivered (the hub publishes it)."""
    return site_subject(site, f"{subj.PREFIX}.requests")


# What a hub copies from each sensor: its stream -> the sensor's stream of that kind.
_FROM_SENSORS = (subj.FACTS, subj.DEAD_LETTERS)


@dataclass(frozen=True)
class Layout:
    site: str = ""                       # the site of the events this process produces
    role: str = "all"                    # all | sensor | hub
    hub_domain: str = HUB_DOMAIN         # a sensor: the hub's JetStream domain
    sites: tuple[str, ...] = ()          # a hub: the sites whose sensors' streams it copies

    @classmethod
    def of(cls, config: Config) -> Layout:
        return cls(site=config.site, role=config.role, hub_domain=config.sensor.hub_domain,
                   sites=tuple(sorted(config.hub.sites)) if config.role == "hub" else ())

    @property
    def sensor(self) -> bool:
        return self.role == "sensor"

    @property
    def streams(self) -> tuple[StreamSpec, ...]:
        return sensor_streams(self.site) if self.sensor else STREAMS

    def runs(self, spec: StageSpec) -> bool:
        """Whether this role runs the stage: a sensor what talks to its segment (the
        producers, and enrichers marked ``segment``), a hub everything else."""
        on_segment = spec.kind is Kind.PRODUCER or spec.segment
        return self.role == "all" or (on_segment if self.sensor else not on_segment)

    def spec(self, spec: StageSpec) -> StageSpec:
        """The stage as this process binds it: a sensor's stages consume their site's
        subjects only (its streams hold nothing else)."""
        if not self.sensor or not spec.consumes:
            return spec
        mine = tuple(site_subject(self.site, p) for p in spec.consumes if site_of_subject(p) == "")
        return dataclasses.replace(spec, consumes=mine)

    def sources(self, stream: StreamSpec) -> list[StreamSource]:
        """What ``stream`` copies from another JetStream domain (over a leaf node link)."""
        if self.sensor:
            if stream.name != subj.sensor_stream_name(subj.REQUESTS, self.site):
                return []
            # Its site's probe requests and presence checks (one copy each: a source has one filter).
            return [StreamSource(name=subj.REQUESTS.name, filter_subject=site_subject(self.site, wanted),
                                 external=ExternalStream(api=f"$JS.{self.hub_domain}.API",
                                                         deliver=requests_prefix(self.site)))
                    for wanted in SITE_REQUESTS]
        if stream not in _FROM_SENSORS:
            return []
        return [StreamSource(name=subj.sensor_stream_name(stream, site), external=ExternalStream(
                    api=f"$JS.{site_domain(site)}.API", deliver=sourced_prefix(site)))
                for site in self.sites]


# What a sensor copies from the hub's requests, for its own site.
SITE_REQUESTS = (subj.PROBE_REQUESTED, subj.HOST_CHECK)


def sensor_stream_names(site: str) -> tuple[str, ...]:
    """The streams of a site's sensor the hub copies from (its leaf node may serve them)."""
    return tuple(subj.sensor_stream_name(stream, site) for stream in _FROM_SENSORS)


STANDALONE = Layout()

__all__ = ["SITE_REQUESTS", "STANDALONE", "Layout", "requests_prefix", "sensor_stream_names",
           "sourced_prefix"]
