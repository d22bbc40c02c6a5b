"""findings: security findings opened and resolved from rules kept as data (rules.yaml)."""

from .rules import Rule, RulesError, parse_rules, port_holds, version_tuple
from .stage import Config, Findings, build

__all__ = ["Config", "Findings", "Rule", "RulesError", "build", "parse_rules", "port_holds", "version_tuple"]
