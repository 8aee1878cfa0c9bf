"""``python -m lda_monitor``: the same as the ``lda-monitor`` console script."""

import sys

from .cli import main

sys.exit(main())
