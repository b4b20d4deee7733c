"""``python -m fetcher``: the same as the ``fetcher`` command."""

import sys

from fetcher.cli import main

sys.exit(main())
