"""Producers: stages that say "I saw this host" (HostSeen). They never import nats."""
