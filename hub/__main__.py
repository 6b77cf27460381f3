"""``python -m hub``: the same as the ``edge-hub`` console script."""

import sys

from hub.cli import main

sys.exit(main())
