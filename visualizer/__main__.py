"""``python -m visualizer``: the command-line interface (see ``visualizer.cli``)."""

import sys

from visualizer.cli import main

sys.exit(main())
