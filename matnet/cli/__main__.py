"""``python -m matnet.cli``: the same as the ``matnet`` command."""

import sys

from matnet.cli import main

if __name__ == "__main__":  # not when a tool imports every module of the package
    sys.exit(main())
