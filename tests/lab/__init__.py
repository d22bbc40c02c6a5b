"""A virtual LAN of Linux network namespaces with real servers, for tests and benchmarks.

    from tests.lab import Lab
    lab = Lab.from_env(); lab.up(); lab.enter_scanner()

See README.md for the topology and `python -m tests.lab --help` for the CLI.
"""

from .lab import Lab
from .netns import LabError
from .services import SERVED, Served
from .topology import LabHost

__all__ = ["SERVED", "Lab", "LabError", "LabHost", "Served"]
