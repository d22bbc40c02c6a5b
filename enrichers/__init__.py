"""Enrichers: stages that add knowledge to a sighting (ports, names, vendors, guests)."""
