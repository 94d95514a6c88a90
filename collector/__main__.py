"""``python -m journeykit.collector``: the same command line as ``journeykit``."""

import sys

from journeykit.collector._cli import main

sys.exit(main())
