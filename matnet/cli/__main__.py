"""``python -m matnet.cli``: the same as the ``matnet`` command."""

import sys

from matnet.cli import main

sys.exit(main())
