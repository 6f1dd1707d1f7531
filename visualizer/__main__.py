"""``python -m visualizer``: the demo, until the command-line interface exists."""

import sys

from visualizer._demo import main

sys.exit(main())
