"""``python -m lanscope``."""

import sys

from lanscope.cli import main

sys.exit(main())
